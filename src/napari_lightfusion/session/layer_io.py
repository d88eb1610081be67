"""The napari-layer side of the dock's inputs: naming, checking, reading.

Functions take napari layers (or, for the pure ones, numpy
arrays) and never modify an input layer. Output layers (see
:mod:`napari_lightfusion.session.outputs`) are marked with
``metadata["lightfusion"]`` so that the pickers can leave them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..displayed import needs_resampling
from ..resample import data_to_world, full_resolution

#: Key in ``layer.metadata`` that marks a layer this plugin wrote.
MARK = "lightfusion"


def is_output(layer) -> bool:
    """Whether ``layer`` was written by this plugin (fused, maps, baselines)."""
    return MARK in getattr(layer, "metadata", {})


def is_colour(layer) -> bool:
    """Whether an image layer shows colour (RGB/RGBA data)."""
    return bool(getattr(layer, "rgb", False))


#: DICOM Modality (0008,0060) -> the word a result's name uses for it.
MODALITY_WORDS = {"MR": "MRI", "CT": "CT", "PT": "PET", "NM": "SPECT"}


def _file(layer) -> Path | None:
    """The file ``layer`` was opened from while it is still named after it (``"23"``, ``"23 [1]"``), else None."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        return None
    path = Path(str(path))
    return path if layer.name.split(" [")[0] == path.stem and path.parent.name else None


def _reader_parts(layer) -> tuple[str, str] | None:
    """``(modality word, series)`` of a layer the project's reader named ``"MR · T1 MPRAGE"``, else None."""
    modality = str(((getattr(layer, "metadata", None) or {}).get("clinical") or {}).get("modality", ""))
    head, sep, series = layer.name.partition(" · ")
    return (MODALITY_WORDS[modality], series) if sep and head == modality and modality in MODALITY_WORDS else None


def display_name(layer) -> str:
    """The short name that says which image a layer is, for naming results.

    A layer the project's reader named ``"<modality> · <series>"`` is
    called by its modality's word (``"PT · PET AC FDG brain (SUV)"`` ->
    ``"PET"``); a layer opened from a file and still named after it, whose
    file name has no letter (``"23"``, ``"23 [1]"``), by its folder and file
    stem (``"MRI 23"``), so that two files named ``23.png`` give two
    different names; any other layer by its own name.
    """
    parts = _reader_parts(layer)
    if parts is not None:
        return parts[0]
    path = _file(layer)
    if path is not None and not any(c.isalpha() for c in path.stem):
        return f"{path.parent.name} {path.stem}"
    return layer.name


def display_names(a, b) -> tuple[str, str]:
    """The names of a pair's two inputs for its results: :func:`display_name` of each, told apart.

    Two files of one name in different folders are called by folder and
    name (``"MRI scan"``, ``"PET scan"``); two series of one modality by
    their series (``"T1 MPRAGE"``, ``"T2 FLAIR"``); otherwise two layers
    that would share a name keep their own names.
    """
    files = _file(a), _file(b)
    if all(files) and files[0].stem == files[1].stem and files[0].parent.name != files[1].parent.name:
        return tuple(f"{f.parent.name} {f.stem}" for f in files)
    names = display_name(a), display_name(b)
    if names[0] != names[1] or a is b:
        return names
    series = _reader_parts(a), _reader_parts(b)
    if all(series) and series[0][1] != series[1][1]:
        return series[0][1], series[1][1]
    return a.name, b.name


def spatial_shape(layer) -> tuple[int, ...]:
    """Shape of a layer's data without the colour axis."""
    shape = tuple(layer.data.shape)
    return shape[:-1] if is_colour(layer) else shape


def check_pair(a, b) -> tuple[str, str] | None:
    """``("dims", message)`` when two layers cannot be fused (an image and a stack), else None.

    Layers of other shapes or grids can: the fusion resamples the functional
    layer onto the anatomical grid in world coordinates (:func:`grid_note`).
    """
    sa, sb = spatial_shape(a), spatial_shape(b)
    if len(sa) != len(sb):
        return "dims", (
            f"'{a.name}' is {len(sa)}D {sa} and '{b.name}' is {len(sb)}D {sb}: "
            "fuse an image with an image or a stack with a stack"
        )
    return None


def grid_note(a, b) -> str | None:
    """What the fusion does when the functional layer ``b`` lies on another grid than ``a`` (else None)."""
    if needs_resampling(fusion_inputs(a, b)):
        return (
            f"'{b.name}' {spatial_shape(b)} lies on another grid than '{a.name}' {spatial_shape(a)}: "
            f"Fuse resamples it onto the grid of '{a.name}' (world coordinates); "
            "'Resample' adds it as a layer"
        )
    return None


def colour_table(layer) -> np.ndarray | None:
    """The ``(256, 3)`` colour table of a grey layer shown in colour (None for a grey colormap or RGB data)."""
    if is_colour(layer):
        return None
    table = np.asarray(layer.colormap.map(np.linspace(0.0, 1.0, 256)), np.float32)[:, :3]
    return None if np.ptp(table, axis=1).max() < 1e-3 else table


def fusion_inputs(a, b) -> dict:
    """What the worker needs from two layers: data, contrast limits, colour flags, placement, colour table.

    What is fused is what is seen: grey layers pass their contrast limits,
    colour layers none (their values are shown as they are); each layer's
    data-to-world matrix and the functional layer's colour table (a scalar
    PET shown in colour) go along for :func:`napari_lightfusion.displayed.as_displayed`.
    """
    out = {}
    for key, layer in (("a", a), ("b", b)):
        colour = is_colour(layer)
        # the worker thread turns lazy (dask, zarr) data into numpy, not the GUI thread
        out[key] = full_resolution(layer)
        out[f"{key}_limits"] = None if colour else tuple(float(v) for v in layer.contrast_limits)
        out[f"{key}_rgb"] = colour
        out[f"{key}_matrix"] = data_to_world(layer)
    out["b_lut"] = colour_table(b)
    return out


def data_index(layer, point) -> int:
    """Index along the first (slice) axis of ``layer``'s data at world ``point``."""
    z = layer.world_to_data(point)[0]
    return int(np.clip(round(float(z)), 0, layer.data.shape[0] - 1))


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid
