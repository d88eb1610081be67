""" "Export fused volume…": write a (lazy or eager) fused layer to OME-Zarr, NIfTI or DICOM off the GUI thread.

The slices are computed (a lazy layer fuses them now) and written one at a
time in a napari worker, its progress in the dock's
:class:`~napari_lightfusion._qt.progress.JobProgress` (the bar every job of
the dock shows); ``worker.quit()`` stops it between slices. The format follows the save
dialog (:func:`ask_and_export`): its filter, or the name (``.zarr``,
``.nii`` / ``.nii.gz``; a DICOM series goes to a new folder).

* OME-Zarr (:class:`napari_lightfusion.ome_zarr_output.OmeZarrOutput`): every
  slice written is complete, and exporting the same layer to the same folder
  again writes only the slices still missing; the anatomical geometry goes
  to its record, so napari reopens it in place (``napari_lightfusion.zarr_reader``).
* NIfTI and DICOM (:mod:`napari_lightfusion.clinical_export`): written where
  the anatomical layer lies (its data-to-world transform), a DICOM series
  into the anatomical series' study and patient when the layer came from
  DICOM (``metadata["clinical"]["dicom"]``). A stopped or failed export
  leaves nothing behind.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from ..clinical_export import output_format
from ..dicom_series_writer import DicomSeriesWriter
from ..geometry import Geometry
from ..messages import first_line
from ..ngff_units import ngff_unit
from ..nifti_writer import NiftiWriter
from ..ome_zarr_output import OmeZarrOutput
from ..resample import data_to_world, full_resolution

#: The save dialog's filters and the format each one asks for.
FILTERS = {
    "OME-Zarr folder (*.zarr)": "ome-zarr",
    "NIfTI file (*.nii.gz *.nii)": "nifti",
    "DICOM series folder (*)": "dicom",
}


def _stack_of(layer):
    """(data ``(Z, Y, X[, C])``, rgb, voxel size, unit) of an image layer; ``ValueError`` if unusable."""
    data = full_resolution(layer)
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


def layer_geometry(layer) -> Geometry:
    """Where a 2D or 3D image layer's voxels lie: its data-to-world transform as a ``(z, y, x)`` geometry."""
    matrix = data_to_world(layer)
    if matrix.shape == (3, 3):  # one slice: z is a 1 mm step at world z = 0
        matrix = np.block([[np.eye(1), np.zeros((1, 3))], [np.zeros((3, 1)), matrix]])
    if matrix.shape != (4, 4):
        raise ValueError(f"{layer.name} is not a 2D image or a 3D stack; it cannot place a volume")
    return Geometry(matrix)


def _output_for(path: Path, layer, data, rgb: bool, voxel, unit) -> OmeZarrOutput:
    """A new output, or the unfinished export of the same layer data at ``path`` (resumed)."""
    identity = {
        "layer": layer.name,
        "shape": list(data.shape),
        "rgb": rgb,
        "data": getattr(data, "name", None),
    }  # a dask array's name says how it is computed
    output = OmeZarrOutput(path)
    if path.exists():
        side = output.read_sidecar()
        if side is None or side.get("settings") != identity:
            raise ValueError(f"{path} exists and holds something else; choose another folder")
        return output
    geometry = layer_geometry(layer)
    output = OmeZarrOutput.create(
        path, tuple(data.shape[:3]), rgb, voxel, unit, name=layer.name, translation=geometry.origin
    )
    output.write_sidecar(
        {
            "settings": identity,
            "metadata": _json_safe(layer.metadata),
            "voxel_size": list(voxel),
            "geometry": {"affine": geometry.affine.tolist()},
        }
    )
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


def _write_in_order(data, writer, rgb: bool):
    """Worker body: compute each slice and hand it to a NIfTI or DICOM writer, yielding after each one."""
    with writer:
        for z in range(writer.shape[0]):
            image = np.asarray(data[z])  # float in [0, 1], or uint8: the writers take both
            writer.write(image[..., :3] if rgb else image)
            yield z
    return writer.shape[0]


def _clinical_writer(kind: str, path: Path, layer, data, rgb: bool, anatomical):
    """A NIfTI or DICOM writer for ``layer``'s data, placed (and, for DICOM, filed) like ``anatomical``."""
    like = anatomical if anatomical is not None else layer
    spatial = tuple(full_resolution(like).shape)
    spatial = spatial[: len(spatial) - bool(getattr(like, "rgb", False))]
    if tuple(data.shape[3 - len(spatial) : 3]) != spatial:
        raise ValueError(
            f"{layer.name} {tuple(data.shape[:3])} is not on the grid of {like.name} {spatial}; "
            "export a result fused on it"
        )
    geometry = layer_geometry(like)
    if kind == "nifti":
        return NiftiWriter(path, tuple(data.shape[:3]), rgb, geometry, description=f"LightFusion {layer.name}")
    clinical = getattr(like, "metadata", {}).get("clinical") or {}
    return DicomSeriesWriter(
        path,
        tuple(data.shape[:3]),
        rgb,
        geometry,
        source=clinical.get("dicom"),
        description=f"LightFusion {layer.name}"[:64],
    )


def export_fused(viewer, layer, path, *, anatomical=None, fmt: str = "auto", progress=None):
    """Write ``layer`` (a fused image layer, lazy or not) to ``path`` as OME-Zarr, NIfTI or a DICOM series.

    ``fmt`` (``auto``, ``ome-zarr``, ``nifti``, ``dicom``) with the name of
    ``path`` gives the format (:func:`~napari_lightfusion.clinical_export.output_format`);
    ``anatomical`` is the layer the result was fused on: its place in the
    patient (and DICOM identity) go to NIfTI and DICOM. Returns the started
    napari worker: ``worker.quit()`` cancels between slices; ``viewer`` (the
    napari viewer, or the widget's parent) shows the outcome in its status
    bar, with a napari notification. A layer that cannot be written or a
    ``path`` that cannot take it is a ``ValueError`` (one line) raised at
    once, before anything is written. OME-Zarr values are float32, resumed
    by exporting the same layer to the same ``path`` again. ``progress``: a
    :class:`~napari_lightfusion._qt.progress.JobProgress` that shows the
    slices written (None: no progress shown, as from a script).
    """
    path = Path(path)
    kind = output_format(path, fmt)
    data, rgb, voxel, unit = _stack_of(layer)
    if kind == "ome-zarr":
        output = _output_for(path, layer, data, rgb, voxel, unit)
        missing = output.missing()
        work, args, total = _write_slices, (data, output, missing, rgb), len(missing)
    else:
        writer = _clinical_writer(kind, path, layer, data, rgb, anatomical)
        work, args, total = _write_in_order, (data, writer, rgb), writer.shape[0]
    worker = create_worker(work, *args, _start_thread=False, _ignore_errors=True)
    if progress is not None:
        done = itertools.count(1)
        progress.start(total, f"Exporting {layer.name}")
        worker.yielded.connect(lambda _: progress.step(next(done)))
        worker.finished.connect(progress.stop)

    def status(message: str) -> None:
        if hasattr(viewer, "status"):
            viewer.status = message

    def finished(count):
        status(f"wrote {path}")
        show_info(f"{layer.name}: wrote {count} slices to {path}")

    def stopped():
        status(f"export of {layer.name} stopped")
        if kind == "ome-zarr":
            left = len(output.missing(clean=False))
            show_info(f"export stopped with {left} slices to go; export to {path.name} again to finish it")
        else:
            writer.discard()
            show_info(f"export of {layer.name} stopped; nothing was written to {path.name}")

    def failed(exc):
        show_error(f"export of {layer.name} failed: {first_line(exc)}")

    worker.returned.connect(finished)
    worker.aborted.connect(stopped)
    worker.errored.connect(failed)
    worker.start()
    return worker


def ask_and_export(parent, viewer, layer, anatomical=None, progress=None):
    """The "Export fused volume…" dialog: pick a file or folder and a format, then :func:`export_fused`.

    Returns the worker, or ``None`` when the dialog was cancelled; a choice
    that cannot be written is :func:`export_fused`'s ``ValueError``, for the
    caller to notify.
    """
    path, chosen = QFileDialog.getSaveFileName(
        parent, "Export fused volume", f"{layer.name}.ome.zarr", ";;".join(FILTERS)
    )
    if not path:
        return None
    return export_fused(viewer, layer, path, anatomical=anatomical, fmt=FILTERS.get(chosen, "auto"), progress=progress)
