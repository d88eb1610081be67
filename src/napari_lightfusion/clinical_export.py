"""Fused volumes back out as radiologists need them: ``lightfusion fuse-volume`` to NIfTI or a DICOM derived series.

:func:`output_format` tells the format from an output's name (and
``--format``); :func:`fuse_volume_as` fuses into a working OME-Zarr and
converts it slice by slice, where the anatomical volume lay in the patient,
with the writers of :mod:`napari_lightfusion.nifti_writer` and
:mod:`napari_lightfusion.dicom_series_writer`. Both write into a temporary
path beside the target and rename it at the end: an error, a cancel or a
full disk leaves no half file or half series (``ValueError``, one line).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .dicom_series_writer import check_empty, read_dicom_source, write_dicom_series
from .geometry import Geometry
from .ngff_units import METRES
from .nifti_writer import write_nifti

#: The formats a fused volume is written in (``lightfusion fuse-volume --format``).
FORMATS = ("auto", "ome-zarr", "nifti", "dicom")


def output_format(path, requested: str = "auto") -> str:
    """``"ome-zarr"``, ``"nifti"`` or ``"dicom"`` for an output ``path``; ``ValueError`` when they disagree.

    A name ending in ``.nii`` / ``.nii.gz`` is NIfTI; a DICOM series is
    asked for by name (``requested="dicom"``); anything else is OME-Zarr.
    """
    name = Path(path).name.lower()
    if requested not in FORMATS:
        raise ValueError(f"unknown format {requested!r}; choose {', '.join(FORMATS)}")
    nifti = name.endswith((".nii", ".nii.gz"))
    if requested == "nifti" and not nifti:
        raise ValueError(f"a NIfTI file's name ends with .nii or .nii.gz, not {Path(path).name}")
    if nifti and requested not in ("auto", "nifti"):
        raise ValueError(f"{Path(path).name} is a NIfTI file name; choose another name for {requested}")
    if requested == "dicom" and name.endswith(".zarr"):
        raise ValueError(f"{Path(path).name} is an OME-Zarr name; choose another name for the DICOM folder")
    return "nifti" if nifti else "dicom" if requested == "dicom" else "ome-zarr"


def volume_geometry(volume) -> Geometry:
    """Where a :class:`~napari_lightfusion.volume_reader.Volume` lies: its place in the patient (NIfTI, DICOM),
    else its voxel size in mm."""
    if volume.geometry is not None:
        return volume.geometry
    to_mm = METRES.get(volume.unit, 1e-3) / 1e-3
    return Geometry(np.diag([*(v * to_mm for v in (volume.voxel_size or (1.0, 1.0, 1.0))), 1.0]))


def _is_dicom_input(path) -> bool:
    from .dicom_files import holds_dicom, is_dicom

    path = Path(path)
    return holds_dicom(path) if path.is_dir() else path.is_file() and is_dicom(path)


def fuse_volume_as(a, b, out, *, fmt: str = "auto", dicom_source=None, **options):
    """``lightfusion fuse-volume`` to any format: :func:`~napari_lightfusion.volumes.fuse_volume` for OME-Zarr.

    NIfTI and DICOM are fused into a working OME-Zarr beside ``out``
    (``.NAME.zarr``: resumed by a rerun after an interruption, as any
    output), converted slice by slice where the anatomical volume lies, and
    the working copy removed; its record goes to the sidecar ``OUT.json``.
    ``dicom_source``: a DICOM file (or folder) of the anatomical series whose
    study and patient the DICOM series joins (:func:`read_dicom_source`;
    by default the anatomical input itself, when it is a DICOM series).
    ``options`` go to ``fuse_volume``; returns its report, for ``out``.
    """
    import json

    from .ome_zarr_output import OmeZarrOutput
    from .volume_reader import open_volume
    from .volumes import fuse_volume

    out = Path(out)
    kind = output_format(out, fmt)
    if dicom_source is not None and kind != "dicom":
        raise ValueError("--dicom-source is for --format dicom (a DICOM series' study and patient)")
    if kind == "ome-zarr":
        return fuse_volume(a, b, out, **options)
    if any(Path(given).resolve() == out.resolve() for given in (a, b)):
        raise ValueError(f"--out {out} would overwrite an input; choose another --out")
    if kind == "dicom":
        check_empty(out)
    if dicom_source is None and kind == "dicom" and _is_dicom_input(a):
        dicom_source = a  # the fused series joins the anatomical series' study and patient
    source = read_dicom_source(dicom_source) if dicom_source is not None else None
    work = OmeZarrOutput(out.with_name(f".{out.name}.zarr"))
    report = fuse_volume(a, b, work.path, **options)
    record = work.read_sidecar()
    fused = open_volume(work.path)
    geometry = Geometry(record["geometry"]["affine"]) if "geometry" in record else volume_geometry(fused)
    description = f"LightFusion {Path(record['settings']['preset']).stem}"[:64]
    if kind == "nifti":
        write_nifti(out, fused.data, geometry, description=description)
    else:
        write_dicom_series(out, fused.data, geometry, source=source, description=description)
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps({**record, "format": kind, "output": str(out.resolve())}, indent=2) + "\n")
    shutil.rmtree(work.path)
    work.sidecar.unlink(missing_ok=True)
    report.out = out
    return report
