"""napari's File > Open for DICOM series and NIfTI volumes: the plugin's npe2 reader.

:func:`get_reader` answers napari for a DICOM file (found by its "DICM"
magic, with or without an extension), a folder that holds DICOM files (a
series or a whole study) and a ``.nii`` / ``.nii.gz`` file, and says
``None`` quickly for anything else, so that other readers get their turn.
Each series becomes an image layer placed in millimetres in the patient
(:mod:`napari_lightfusion.geometry`), with the display a clinical viewer
starts with: CT in a soft-tissue window, PET and SPECT in the PET
colormap (black, red, yellow) from 0 added over the anatomy, MR at percentile limits. A series
that cannot be read is reported as a notification naming it and its file,
and the others open; when none can, the reader raises a ``ValueError`` of
one line, which napari shows. napari is imported inside the functions only
(the package's runtime imports without it), Qt never.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .colour import PET
from .dicom_files import holds_dicom, is_dicom
from .dicom_reader import read_dicom
from .geometry import Geometry
from .volume_reader import open_volume

#: CT's soft-tissue window, W 400 / L 40, as contrast limits (HU).
SOFT_TISSUE = (-160.0, 240.0)

#: Contrast limits of MR (and of anything without a window of its own): these percentiles of the values.
PERCENTILES = (0.5, 99.5)

#: The top of a PET / SPECT display: this percentile of the uptake, and at least MIN_SUV_TOP when in SUV.
UPTAKE_PERCENTILE = 99.5
MIN_SUV_TOP = 3.0

#: Contrast limits are computed from this many slices, evenly spread (reading them all would be slow).
SAMPLE_SLICES = 16

#: Modalities shown as uptake (colour, added over the anatomy) and placed above it in a study.
FUNCTIONAL = ("PT", "NM")

#: A series or volume up to this size (as read) is read into memory when opened, so that the widget fuses it
#: with metrics, Compare and the alignment check; a larger one stays lazy (napari reads the slices it shows).
IN_MEMORY_BYTES = 512 * 2**20

#: Uptake layers: how they are blended over the anatomy beneath them.
UPTAKE_BLENDING = {"blending": "additive", "opacity": 0.6}

NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: Words of a NIfTI file's name that say its modality.
MODALITY_WORDS = {
    "pet": "PT",
    "pt": "PT",
    "suv": "PT",
    "spect": "NM",
    "ct": "CT",
    "mr": "MR",
    "mri": "MR",
    "t1": "MR",
    "t1w": "MR",
    "t2": "MR",
    "t2w": "MR",
    "flair": "MR",
}


def _zarr(folder: Path) -> bool:
    return folder.name.lower().endswith(".zarr") or any(
        (folder / name).exists() for name in (".zgroup", ".zarray", "zarr.json")
    )


def get_reader(path):
    """npe2 ``get_reader``: the reader for a DICOM file, folder or list of files, or a NIfTI file; else ``None``."""
    if isinstance(path, list | tuple):
        paths = [Path(p) for p in path]
        return read_dicom_layers if paths and all(p.is_file() and is_dicom(p) for p in paths) else None
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return read_nifti_layers if path.is_file() else None
    if path.is_dir():
        return read_dicom_layers if not _zarr(path) and holds_dicom(path) else None
    return read_dicom_layers if path.is_file() and is_dicom(path) else None


def _sample(data, rgb: bool = False) -> np.ndarray:
    """The finite values of up to :data:`SAMPLE_SLICES` evenly spread slices (all of a 2D image)."""
    if data.ndim - rgb == 3 and data.shape[0] > SAMPLE_SLICES:
        data = data[np.unique(np.linspace(0, data.shape[0] - 1, SAMPLE_SLICES).round().astype(int))]
    values = np.asarray(data, dtype=np.float32)
    return values[np.isfinite(values)]


def _pet():
    """The PET ramp (:data:`napari_lightfusion.colour.PET`, black to yellow) as a napari colormap."""
    from napari.utils.colormaps import Colormap

    return Colormap(PET[:, 1:], controls=PET[:, 0], name="PET (black-red-yellow)")


def _in_memory(data):
    """``data`` read now when it is small enough (:data:`IN_MEMORY_BYTES`), else as it is (lazy)."""
    size = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    return np.asarray(data) if size <= IN_MEMORY_BYTES else data


def display(modality: str, unit: str, data, rgb: bool = False) -> dict:
    """The layer's first display: colormap, contrast limits (and blending, for uptake) for its modality and unit."""
    if rgb:
        return {}
    if modality == "CT":
        return {"colormap": "gray", "contrast_limits": SOFT_TISSUE}
    values = _sample(data)
    if values.size == 0:
        return {"colormap": "gray"}
    if modality in FUNCTIONAL:
        top = float(np.percentile(values, UPTAKE_PERCENTILE))
        top = max(top, MIN_SUV_TOP) if unit == "SUV" else top
        return {"colormap": _pet(), "contrast_limits": (0.0, top if top > 0 else 1.0), **UPTAKE_BLENDING}
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    return {"colormap": "gray", "contrast_limits": (low, high if high > low else low + 1.0)}


def read_dicom_layers(path) -> list[tuple]:
    """npe2 reader: one image layer per DICOM series at ``path``; notifications for those that failed.

    Anatomy comes first and uptake (PET, SPECT) last, so that it is drawn
    over the anatomy. ``ValueError`` (one line) when no series can be read.
    """
    from napari.utils import notifications

    images, problems = read_dicom(path)
    layers, notes = [], []
    for image in images:
        clinical = image.clinical
        try:  # the first pixels are read here: a series whose pixels cannot be decoded fails now, not on display
            shown = display(clinical["modality"], clinical["unit"], image.data, image.rgb)
        except ValueError as exc:
            problems.append(f"{image.name}: {exc}")
            continue
        notes.extend(f"{image.name}: {note}" for note in image.notes)
        kwargs = {
            "name": image.name,
            "metadata": {"clinical": clinical},
            "rgb": image.rgb,
            **image.layer_kwargs(),
            **shown,
        }
        layers.append((_in_memory(image.data), kwargs, "image"))
    if not layers:
        raise ValueError(problems[0] + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""))
    for problem in problems:
        notifications.show_warning(f"Not opened: {problem}")
    for note in notes:
        notifications.show_info(note)
    frames = {layer[1]["metadata"]["clinical"]["dicom"]["FrameOfReferenceUID"] for layer in layers}
    if len(frames) > 1:
        notifications.show_info(
            f"These {len(layers)} series lie in {len(frames)} frames of reference: "
            "their positions only agree once registered"
        )
    return sorted(layers, key=lambda layer: layer[1]["metadata"]["clinical"]["modality"] in FUNCTIONAL)


def guess_modality(name: str) -> str:
    """The DICOM modality a file name's words say (``pet_suv.nii.gz`` -> "PT", ``sub-01_T1w`` -> "MR"), else ""."""
    for word in re.split(r"[^a-z0-9]+", name.lower()):
        if word in MODALITY_WORDS:
            return MODALITY_WORDS[word]
    return ""


def read_nifti_layers(path) -> list[tuple]:
    """npe2 reader: a NIfTI volume, read lazily by :func:`~napari_lightfusion.volume_reader.open_volume`.

    The volume comes in the canonical display axes (S, P, L); its
    ``space.affine`` (indices to RAS mm) becomes the layer's placement
    through :meth:`Geometry.from_ras`, as for the command line's
    fuse-volume; an RGB24 file is a colour layer. ``ValueError`` (one line)
    for a file it cannot read (a 4D file of several volumes among them).
    """
    volume = open_volume(path)
    geometry = Geometry.from_ras(volume.space.affine)
    data, rgb = volume.data, volume.rgb  # RGB24 comes with its channels last
    name = Path(path).name
    modality = guess_modality(name)
    clinical = {
        "modality": modality,
        "unit": "",
        "source": "nifti",
        "geometry": geometry.affine.tolist(),
        "nifti": {"path": str(path), "affine_ras": [list(row) for row in volume.space.affine]},
    }
    kwargs = {
        "name": re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE),
        "metadata": {"clinical": clinical},
        "rgb": rgb,
        **geometry.layer_kwargs(),
        **display(modality, "", data, rgb),
    }
    return [(_in_memory(data), kwargs, "image")]
