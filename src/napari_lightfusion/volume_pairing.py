"""How the command line puts a functional volume with an anatomical one: grid, colour, register.

The command-line counterpart of what the widget does with two layers
(:mod:`~napari_lightfusion.displayed`): two volumes that know where they
lie in the patient (NIfTI, DICOM: :attr:`Volume.geometry`) are fused on
the anatomical grid, the functional one resampled in world coordinates;
a grey PET or SPECT volume is fused through the PET colour table so that its
uptake shows in the fused colour; the pair is checked for misregistration
(:func:`napari_lightfusion.align.estimate_misalignment`) and, when asked,
registered rigidly (:func:`~napari_lightfusion.align.register_rigid`) with
the transform put on the functional volume's placement, never on its
voxels. :func:`place_pair` decides all that once, before anything is
fused; :meth:`Placement.inputs` gives ``fuse_lazy`` its lazy inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colour import colour_table
from .displayed import as_displayed, same_grid
from .volume_reader import Volume

#: ``--colormap`` choices: ``auto`` (the PET table, :data:`napari_lightfusion.colour.PET`, for a grey
#: functional volume fused with a PET or SPECT preset or read from a PET/SPECT series), ``pet``, ``none``
#: (fuse it grey).
COLORMAPS = ("auto", "pet", "none")

#: Presets whose networks were trained on colour functional images.
COLOUR_PRESETS = ("PET-MRI", "SPECT-MRI")


@dataclass(frozen=True)
class Placement:
    """The functional volume's place and colour for the fusion, and what was found on the way."""

    b_matrix: np.ndarray  # its data-to-world matrix after any registration
    colormap: str | None  # the colour table it is fused through, or None (grey or colour as it is)
    resampled: bool  # it lies on another grid than the anatomical volume
    misalignment: object | None = None  # align.Misalignment, when it was checked
    registration: object | None = None  # align.Registration, with --align

    def record(self) -> dict:
        """What the output's record keeps of it (plain JSON; part of the settings a rerun must match)."""
        return {
            "colormap": self.colormap,
            "resampled_onto_anatomical_grid": self.resampled,
            "alignment": None if self.registration is None else self.registration.record(),
        }

    def inputs(self, va: Volume, vb: Volume, limits) -> dict:
        """``fuse_lazy``'s keyword arguments: the functional volume on the anatomical grid, in its colours."""
        return as_displayed(
            {
                "a": va.data,
                "b": vb.data,
                "a_limits": limits[0],
                "b_limits": limits[1],
                "a_rgb": va.rgb,
                "b_rgb": vb.rgb,
                "a_matrix": va.matrix(),
                "b_matrix": self.b_matrix,
                "b_lut": colour_table() if self.colormap == "pet" else None,
            }
        )


def _colormap(choice: str, vb: Volume, preset: str | None) -> str | None:
    if choice not in COLORMAPS:
        raise ValueError(f"--colormap must be one of {', '.join(COLORMAPS)}, not {choice!r}")
    if vb.rgb or choice == "none":
        return None
    if choice == "pet":
        return "pet"
    modality = (vb.clinical or {}).get("modality", "")
    return "pet" if preset in COLOUR_PRESETS or modality in ("PT", "NM") else None


def _check_overlap(va: Volume, b_matrix: np.ndarray, vb: Volume) -> None:
    """``ValueError`` when the functional volume covers none of the anatomical one (nothing to fuse)."""
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in vb.data.shape[:3]], indexing="ij")).reshape(3, -1)
    world = b_matrix[:3, :3] @ corners + b_matrix[:3, 3:]
    index = np.linalg.solve(va.matrix()[:3, :3], world - va.matrix()[:3, 3:])
    low, high = index.min(axis=1), index.max(axis=1)
    if np.any(high < 0) or np.any(low > np.array(va.data.shape[:3]) - 1):
        raise ValueError(
            f"{Path(vb.path).name} and {Path(va.path).name} do not overlap in the patient (their grids lie apart); "
            "register one onto the other first"
        )


def place_pair(
    va: Volume,
    vb: Volume,
    *,
    preset: str | None,
    colormap: str = "auto",
    align: bool = False,
    say: Callable[[str], None] | None = None,
) -> Placement:
    """Decide how ``vb`` (functional) is fused with ``va`` (anatomical); ``ValueError`` (one line) when it can't be.

    Both placed in the patient (NIfTI, DICOM): on another grid, ``vb`` is
    resampled onto ``va``'s; the pair is checked for misregistration (a
    line through ``say`` when it exceeds about a voxel) and registered when
    ``align``. Otherwise the volumes are fused voxel by voxel and must
    have one shape. ``say`` gets the lines a user should read.
    """
    say = say or (lambda line: None)
    for volume in (va, vb):
        if volume.space is not None:
            say(
                f"{Path(volume.path).name}: file axes {volume.space.input_axcodes}, read as axial slices from "
                "inferior to superior, anterior up and the patient's right on the left (RAS+ shown as S, P, L)"
            )
    table = _colormap(colormap, vb, preset)
    if table:
        say(
            f"{Path(vb.path).name} is grey: fused through the {table.upper()} colour table, so the uptake shows "
            "in colour (--colormap none fuses it grey)"
        )
    placed = va.geometry is not None and vb.geometry is not None
    if not placed:
        if va.data.shape[:3] != vb.data.shape[:3]:
            raise ValueError(
                f"the volumes differ in shape: {va.data.shape[:3]} and {vb.data.shape[:3]}; resample one onto the other"
            )
        return Placement(va.matrix(), table, False)
    b_matrix = vb.matrix()
    _check_overlap(va, b_matrix, vb)
    resampled = not same_grid(va.data.shape[:3], va.matrix(), vb.data.shape[:3], b_matrix)
    if resampled:
        say(
            f"{Path(vb.path).name} lies on another grid: resampled onto the grid of {Path(va.path).name} "
            "(world coordinates)"
        )
    from . import align as registration

    fixed, moving = va.data, vb.data  # lazy: the registration reads only their common field of view
    try:
        found = registration.estimate_misalignment(fixed, va.matrix(), moving, b_matrix, rgb_moving=vb.rgb)
    except ValueError:
        found = None
    if found is not None and found.exceeds and not align:
        say(found.message(Path(va.path).name, Path(vb.path).name) + "; run again with --align to register it")
    done = None
    if align:
        done = registration.register_rigid(fixed, va.matrix(), moving, b_matrix, rgb_moving=vb.rgb)
        b_matrix = done.world_transform @ b_matrix
        shift = float(np.linalg.norm(done.shift_mm))
        say(
            f"aligned {Path(vb.path).name}: moved {shift:.1f} mm, turned {done.rotation_deg:.1f} deg "
            f"({done.method}); the transform is in the output's record"
        )
    return Placement(b_matrix, table, resampled or done is not None, found, done)
