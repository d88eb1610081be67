"""Image files on the command line: a pair read from disk, the preset that fits it, the fused image written.

``lightfusion fuse`` and the image rows of ``lightfusion batch`` fuse two
registered 2D images (or TIFF stacks) in memory with :func:`fuse_files`.
:func:`read_image` reads PNG, TIFF, JPEG and BMP files, and single DICOM
images in their unit (CT in HU, PET in SUV, through
:func:`napari_lightfusion.volume_reader.open_volume`); a volume (a DICOM series
folder, NIfTI, zarr, a folder of slices) is refused with a pointer to
``fuse-volume``. Two DICOM images know where they lie in the patient: the
functional one is put on the anatomical pixel grid in the anatomical
image's plane, checked for misregistration and, with ``align``, registered
rigidly (:mod:`napari_lightfusion.align`), as ``fuse-volume`` does with
volumes. A grey PET or SPECT DICOM image is fused through the PET colour
table, as the widget fuses such a layer; a grey PNG is fused grey.

:func:`choose_preset` is the widget's guess (:func:`napari_lightfusion.roles.guess_preset`)
made from files; :mod:`napari_lightfusion.output_errors` says what went
wrong when an output cannot be written.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .messages import first_line
from .modalities import LayerInfo
from .output_errors import check_output_place, output_errors
from .roles import guess_preset, preset_warning

if TYPE_CHECKING:  # the network's side (torch) is imported when a pair is fused, not with this module
    from .fusion import FusionOptions

#: Names a fused image may be written under (``lightfusion fuse --out``, a batch row's output).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

#: Names of volumes, which ``fuse-volume`` reads and writes.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".zarr")

#: What a refusal of a volume says to do instead.
USE_FUSE_VOLUME = "fuse volumes with lightfusion fuse-volume"

#: DICOM modalities whose grey images are fused through the PET colour table.
UPTAKE_MODALITIES = ("PT", "NM")


@dataclass(frozen=True)
class PresetChoice:
    """The preset a pair is fused with, why (one phrase), and a one-line warning or None."""

    preset: str
    reason: str
    warning: str | None = None

    @property
    def line(self) -> str:
        """What the command line prints: ``preset SPECT-MRI (folder name says SPECT)``."""
        return f"preset {self.preset} ({self.reason})"


def choose_preset(
    anatomical: LayerInfo, functional: LayerInfo, given: str | None = "auto", weights=None
) -> PresetChoice:
    """The preset for a pair described by two :class:`~napari_lightfusion.modalities.LayerInfo`.

    ``given`` other than ``"auto"`` (or empty) is used as it is, with
    :func:`~napari_lightfusion.roles.preset_warning` when the pair looks
    wrong for it. ``"auto"`` is the widget's guess: names (DICOM Modality,
    file and folder names), then the data (a colour image: PET-MRI, a grey
    pair: CT-MRI); a pair no preset was trained for (microscopy) gets the
    one its data fits, with the guess's warning. With ``weights`` the
    network is that file and the preset only decides how a grey PET is
    coloured (see :mod:`napari_lightfusion.volume_pairing`).
    """
    if given and given != "auto":
        choice = PresetChoice(given, "as given", preset_warning(given, anatomical, functional))
    else:
        guess = guess_preset(anatomical, functional)
        guess = replace(guess, reason=guess.reason.replace("layer name", "file name"))  # no layers here: its file
        if guess.preset is not None:
            choice = PresetChoice(guess.preset, guess.reason, guess.warning)
        else:
            colour = anatomical.colour or functional.colour
            preset = "PET-MRI" if colour else "CT-MRI"
            choice = PresetChoice(
                preset,
                f"{guess.reason}, none trained for it: {preset} fits a {'colour' if colour else 'grey'} pair",
                guess.warning,
            )
    if weights is not None:
        return replace(choice, reason=f"{choice.reason}; the network is --weights {weights}")
    return choice


def _name(path: Path) -> str:
    """A file's name as napari names its layer: without its extension (``pet.nii.gz`` -> ``pet``)."""
    name = path.name
    return Path(name[:-3] if name.lower().endswith(".gz") else name).stem or name


def volume_info(volume) -> LayerInfo:
    """A :class:`~napari_lightfusion.volume_reader.Volume` described for :func:`choose_preset` (never loaded).

    A grey PET or SPECT series counts as colour: it is fused through the PET colour table.
    """
    path = Path(volume.path)
    info = LayerInfo.from_array(_name(path), volume.data, str(path), volume.rgb)
    modality = str((volume.clinical or {}).get("modality", ""))
    return replace(info, dicom_modality=modality, tinted=not volume.rgb and modality in UPTAKE_MODALITIES)


def open_input(path):
    """:func:`~napari_lightfusion.volume_reader.open_volume`, refusing a 4D NIfTI of three volumes in one line.

    Some tools save a colour volume as three NIfTI volumes (``X, Y, Z, 3``);
    it is not read as colour: the line says how to make the RGB24 volume
    that is.
    """
    from .volume_reader import open_volume

    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")) and Path(path).is_file():
        import nibabel

        try:
            shape = nibabel.load(str(path)).shape
        except Exception:  # noqa: BLE001 - open_volume says in one line why it cannot be read
            shape = ()
        if len(shape) == 4 and shape[3] == 3:
            raise ValueError(
                f"cannot read {path}: a 4D NIfTI of 3 volumes {shape} is not read as colour; save it as one RGB24 "
                "volume (numpy: np.ascontiguousarray(data, 'u1').view([('R', 'u1'), ('G', 'u1'), ('B', 'u1')])"
                "[..., 0]) or as an RGB TIFF stack"
            )
    return open_volume(path)


def volume_preset(a, b, given: str | None = "auto", weights=None) -> tuple[PresetChoice, bool]:
    """The preset for two volume files (:func:`choose_preset`), and whether both are placed in the patient."""
    va, vb = open_input(a), open_input(b)
    placed = va.geometry is not None and vb.geometry is not None
    return choose_preset(volume_info(va), volume_info(vb), given, weights), placed


def check_network(preset: str | None, weights=None) -> None:
    """Load the network (it is cached) so that a file that is not a weight file is one line before any work."""
    from .weights import model_for

    model_for(preset, weights)  # a file torch cannot read is a one-line WeightError (a ValueError)


@dataclass(frozen=True)
class ImageFile:
    """One input of :func:`fuse_files`: its pixels, and its place in the patient when it is a DICOM image."""

    path: Path
    data: np.ndarray  # (Y, X), (Y, X, C) or a TIFF stack (Z, Y, X[, C])
    rgb: bool
    geometry: object = None  # geometry.Geometry of a DICOM image (one slice), else None
    modality: str = ""  # its DICOM Modality (MR, CT, PT, NM), else ""

    def info(self) -> LayerInfo:
        """The image described for :func:`choose_preset`."""
        info = LayerInfo.from_array(_name(self.path), self.data, str(self.path), self.rgb)
        tinted = not self.rgb and self.modality in UPTAKE_MODALITIES  # fused through the PET table, as shown
        return replace(info, dicom_modality=self.modality, tinted=tinted)


def _volume_kind(path: Path) -> str | None:
    """What kind of volume ``path`` is (``"a NIfTI volume"``, ...), or None for an image file."""
    from .dicom_files import holds_dicom

    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "a NIfTI volume"
    if name.endswith(".zarr") or (path / ".zgroup").exists() or (path / ".zarray").exists():
        return "a zarr volume"
    if path.is_dir():
        return "a DICOM series folder" if holds_dicom(path) else "a folder"
    return None


#: File endings that promise DICOM: such a file that is not one gets its own message, not the image reader's.
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def read_image(path) -> ImageFile:
    """An input of :func:`fuse_files`; ``ValueError`` (one line) for a missing, unreadable or volume file."""
    from .dicom_files import is_dicom
    from .inputs import is_rgb

    path = Path(path)
    if not path.exists():
        raise ValueError(f"no image file {path}")
    kind = _volume_kind(path)
    if kind is not None:
        raise ValueError(f"{path} is {kind}: {USE_FUSE_VOLUME}")
    if is_dicom(path):
        volume = open_input(path)
        if volume.data.shape[0] != 1:
            raise ValueError(f"{path} holds {volume.data.shape[0]} slices: {USE_FUSE_VOLUME}")
        modality = str((volume.clinical or {}).get("modality", ""))
        return ImageFile(path, np.asarray(volume.data[0]), volume.rgb, volume.geometry, modality)
    if path.suffix.lower() in DICOM_SUFFIXES:  # else the image reader's error names its own C++ source
        raise ValueError(
            f"cannot read {path}: named as DICOM, but it is not a DICOM file (no 'DICM' after the 128-byte "
            "preamble, nor a DICOM element at its start)"
        )
    from skimage.io import imread

    try:
        data = imread(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault: say so in one line
        raise ValueError(f"cannot read {path} as an image: {first_line(exc)}") from None
    return ImageFile(path, data, is_rgb(data))


def check_image_output(out, inputs=()) -> Path:
    """``out`` if a fused image can be written there, else ``ValueError`` (one line) saying why."""
    out = Path(out)
    name = out.name.lower()
    if name.endswith(VOLUME_SUFFIXES):
        raise ValueError(f"{out} names a volume; fuse writes an image ({', '.join(IMAGE_SUFFIXES)}): {USE_FUSE_VOLUME}")
    if not name.endswith(IMAGE_SUFFIXES):
        raise ValueError(f"cannot write {out}: give an image file name ending in {', '.join(IMAGE_SUFFIXES)}")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a folder; give an image file name")
    if any(out.resolve() == Path(given).resolve() for given in inputs):
        raise ValueError(f"{out} would overwrite an input image; choose another output")
    check_output_place(out)
    return out


def _plane_matrices(a: ImageFile, b: ImageFile, say) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-to-plane matrices (3 x 3, mm in ``a``'s plane) of two DICOM images; ``ValueError`` if at an angle."""
    big_a, big_b = a.geometry.affine, b.geometry.affine
    relative = np.linalg.solve(big_a, big_b)  # b's (z, y, x) index -> a's
    if not np.allclose(relative[0, 1:3], 0.0, atol=1e-3):
        raise ValueError(
            f"{b.path.name} and {a.path.name} lie in planes at an angle to each other; "
            f"fuse their series with lightfusion fuse-volume"
        )
    thickness = float(np.linalg.norm(big_a[:3, 0]))
    apart = abs(float(relative[0, 3])) * thickness
    if apart > thickness / 2:
        say(f"{b.path.name} lies {apart:.1f} mm from the plane of {a.path.name}: fused in that plane as it is")
    spacing = np.linalg.norm(big_a[:3, 1:3], axis=0)
    plane_a = np.diag([*spacing, 1.0])
    return plane_a, plane_a @ relative[np.ix_([1, 2, 3], [1, 2, 3])]


def _pair_inputs(a: ImageFile, b: ImageFile, preset: str, align: bool, say) -> dict:
    """A pair as the widget would fuse it, ``b`` on ``a``'s grid and in colour: the images and their views' keywords.

    The keys are ``a`` and ``b``, with ``a_limits``, ``b_limits``, ``a_rgb``
    and ``b_rgb`` where they are known (:func:`~napari_lightfusion.inputs.views_of`).
    """
    from .colour import colour_table
    from .displayed import as_displayed
    from .inputs import default_limits
    from .volume_pairing import COLOUR_PRESETS

    tinted = b.geometry is not None and not b.rgb and (b.modality in UPTAKE_MODALITIES or preset in COLOUR_PRESETS)
    placed = a.geometry is not None and b.geometry is not None
    if align and not placed:
        say(
            f"--align does not apply: {a.path.name} and {b.path.name} are not both placed in the patient "
            "(DICOM images); fused as they are"
        )
    if not (tinted or placed):
        return {"a": a.data, "b": b.data}
    inputs = {"a": a.data, "b": b.data, "a_limits": None, "b_limits": None, "a_rgb": a.rgb, "b_rgb": b.rgb}
    if tinted:
        say(f"{b.path.name} is grey: fused through the PET colour table, so the uptake shows in colour")
        inputs.update(b_lut=colour_table(), b_limits=default_limits(b.data.dtype, np.nanmin(b.data), np.nanmax(b.data)))
    if placed:
        inputs["a_matrix"], inputs["b_matrix"] = _plane_matrices(a, b, say)
        inputs["b_matrix"] = _register(a, b, inputs["a_matrix"], inputs["b_matrix"], align, say)
    return as_displayed(inputs)


def _register(a: ImageFile, b: ImageFile, matrix_a, matrix_b, align: bool, say) -> np.ndarray:
    """``b``'s matrix after the misregistration check (a line when it is off) and, with ``align``, registration."""
    from . import align as registration

    if not align:
        try:
            found = registration.estimate_misalignment(a.data, matrix_a, b.data, matrix_b, rgb_moving=b.rgb)
        except (ValueError, RuntimeError):  # images it cannot compare (SimpleITK raises RuntimeError): no advice
            return matrix_b
        if found.exceeds:
            say(found.message(a.path.name, b.path.name) + "; run again with --align to register it")
        return matrix_b
    done = registration.register_rigid(a.data, matrix_a, b.data, matrix_b, rgb_moving=b.rgb)
    say(
        f"aligned {b.path.name}: moved {float(np.linalg.norm(done.shift_mm)):.1f} mm, turned "
        f"{done.rotation_deg:.1f} deg ({done.method})"
    )
    return done.world_transform @ matrix_b


@dataclass(frozen=True)
class ImageReport:
    """What :func:`fuse_files` wrote: the image, its slices (1, or a TIFF stack's), the preset, time and device."""

    out: Path
    slices: int
    choice: PresetChoice
    seconds: float
    device: str


def _write(path: Path, image: np.ndarray) -> None:
    """Write ``image`` into a temporary file beside ``path`` and rename it: a failure leaves no half file."""
    from skimage.io import imsave

    temp = path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        imsave(temp, image, check_contrast=False)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def fuse_files(
    a, b, out, options: FusionOptions, *, maps=None, align: bool = False, say: Callable[[str], None] | None = None
) -> ImageReport:
    """Fuse the image files ``a`` (anatomical) and ``b`` (functional) into the image file ``out``.

    ``options``: the network (its preset may be ``"auto"``:
    :func:`choose_preset`), device and balance; ``maps``: a folder for the
    surprise and attention maps (and a mix network's weight) as float32 TIFFs. Two DICOM images are placed, checked and,
    with ``align``, registered as the module says. ``say`` gets the lines
    a user should read (the report has the preset and why). Raises ``ValueError``
    (one line) for anything it cannot fuse or write; the 8-bit image is
    written only once the fusion is done.
    """
    from .fusion import plan_pair
    from .inputs import views_of

    say = say or (lambda line: None)
    start = time.perf_counter()
    out = check_image_output(out, (a, b))
    if maps is not None and Path(maps).exists() and not Path(maps).is_dir():
        raise ValueError(f"--maps {maps} is a file; give a folder for the maps")
    first, second = read_image(a), read_image(b)
    if first.data.ndim - first.rgb == 3 and not out.name.lower().endswith((".tif", ".tiff")):
        raise ValueError(f"{a} is a stack of {first.data.shape[0]} slices: name the output .tif, or {USE_FUSE_VOLUME}")
    choice = choose_preset(first.info(), second.info(), options.preset, options.weights)
    check_network(choice.preset, options.weights)
    if choice.warning:
        say(f"warning: {choice.warning}")
    inputs = _pair_inputs(first, second, choice.preset, align, say)
    options = replace(options, preset=choice.preset, maps=maps is not None)
    result = plan_pair(inputs["a"], inputs["b"], options, *views_of(inputs)).run()
    if result.balance_choice is not None:
        say(result.balance_choice.describe())
    with output_errors(out):
        _write(out, (np.clip(result.fused, 0, 1) * 255).round().astype(np.uint8))
    if maps is not None:
        _write_maps(Path(maps), result)
    slices = first.data.shape[0] if first.data.ndim - first.rgb == 3 else 1
    return ImageReport(out, slices, choice, time.perf_counter() - start, result.device)


def _write_maps(folder: Path, result) -> None:
    """The surprise and attention maps (and the mix weight) of ``result`` as float32 TIFFs in ``folder``."""
    check_output_place(folder / "maps")
    with output_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for kind, pair in (("attention", result.attention), ("surprise", result.surprise)):
            for stream, image in zip(("anatomical", "functional"), pair if pair is not None else ()):
                _write(folder / f"{kind}_{stream}.tif", image.astype(np.float32))
        if result.weight is not None:  # 1: the value came from the anatomical image, 0: from the functional
            _write(folder / "mix_weight.tif", result.weight.astype(np.float32))
