""""Export fused volume…": write a (lazy or eager) fused layer to OME-Zarr off the GUI thread.

The slices are computed (a lazy layer fuses them now) and written one at a
time by :class:`napari_lightfusion.volume_io.OmeZarrOutput` in a napari
worker, with a progress bar in napari's activity panel. ``worker.quit()``
stops it between slices; every slice written is complete, and exporting the
same layer to the same folder again writes only the slices still missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from ..volume_io import OmeZarrOutput, ngff_unit


def _stack_of(layer):
    """(data ``(Z, Y, X[, C])``, rgb, voxel size, unit) of an image layer; ``ValueError`` if unusable."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    rgb = bool(getattr(layer, "rgb", False))
    spatial = data.ndim - rgb
    if spatial not in (2, 3):
        raise ValueError(f"{layer.name} has {spatial} dimensions; a 2D image or a 3D stack can be exported")
    if rgb and data.shape[-1] not in (3, 4):
        raise ValueError(f"{layer.name} is colour with {data.shape[-1]} channels; RGB or RGBA can be exported")
    if spatial == 2:
        data = data[None]
    scale = tuple(float(v) for v in layer.scale[-spatial:])
    units = getattr(layer, "units", None)
    unit = ngff_unit(str(units[-1])) if units else None
    return data, rgb, ((1.0,) * (3 - spatial)) + scale, unit


def _output_for(path: Path, layer, data, rgb: bool, voxel, unit) -> OmeZarrOutput:
    """A new output, or the unfinished export of the same layer data at ``path`` (resumed)."""
    identity = {"layer": layer.name, "shape": list(data.shape), "rgb": rgb,
                "data": getattr(data, "name", None)}  # a dask array's name says how it is computed
    output = OmeZarrOutput(path)
    if path.exists():
        side = output.read_sidecar()
        if side is None or side.get("settings") != identity:
            raise ValueError(f"{path} exists and holds something else; choose another folder")
        return output
    output = OmeZarrOutput.create(path, tuple(data.shape[:3]), rgb, voxel, unit, name=layer.name)
    output.write_sidecar({"settings": identity, "metadata": _json_safe(layer.metadata), "voxel_size": list(voxel)})
    return output


def _json_safe(metadata: dict) -> dict:
    """The entries of a layer's metadata that are plain numbers, strings or flags."""
    return {str(k): v for k, v in metadata.items() if isinstance(v, str | int | float | bool) or v is None}


def _write_slices(data, output: OmeZarrOutput, missing: list[int], rgb: bool):
    """Worker body: compute and write each missing slice, yielding after each one."""
    array = output.array()
    for z in missing:
        image = np.asarray(data[z], np.float32)
        output.write(z, image[..., :3] if rgb else image, array)
        yield z
    return len(missing)


def export_fused(viewer, layer, path):
    """Write ``layer`` (a fused image layer, lazy or not) to the OME-Zarr folder ``path``.

    Returns the started napari worker: ``worker.quit()`` cancels between
    slices; ``viewer`` (the napari viewer, or the widget's parent) shows the
    outcome in its status bar, with a napari notification. Exporting the
    same layer to the same ``path`` again resumes. A layer that cannot be
    written or a ``path`` holding something else is a ``ValueError`` (one
    line) raised at once, before anything is written. Values are written as
    float32; the layer's scale is the voxel size.
    """
    path = Path(path)
    data, rgb, voxel, unit = _stack_of(layer)
    output = _output_for(path, layer, data, rgb, voxel, unit)
    missing = output.missing()
    worker = create_worker(
        _write_slices, data, output, missing, rgb,
        _progress={"total": len(missing), "desc": f"Exporting {layer.name}"}, _start_thread=False,
        _ignore_errors=True,
    )

    def status(message: str) -> None:
        if hasattr(viewer, "status"):
            viewer.status = message

    def finished(count):
        status(f"wrote {path}")
        show_info(f"{layer.name}: wrote {count} slices to {path}")

    def stopped():
        left = len(output.missing(clean=False))
        status(f"export of {layer.name} stopped")
        show_info(f"export stopped with {left} slices to go; export to {path.name} again to finish it")

    def failed(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        show_error(f"export of {layer.name} failed: {first}")

    worker.returned.connect(finished)
    worker.aborted.connect(stopped)
    worker.errored.connect(failed)
    worker.start()
    return worker
