"""Reading DICOM series: find them under a file or folder, stack their slices in the patient, CT in HU, PET in SUV.

:func:`read_dicom` finds the image series at a path (a file, a series
folder, a study folder with sub-folders; DICOMDIR, reports and other
files are skipped: :mod:`napari_lightfusion.dicom_files`), reads each and
says in one line why any could not be read, so that one bad series does not
keep the others from opening. Headers are read without pixel data to group,
sort and check the slices (:mod:`napari_lightfusion.dicom_frames`); the
pixels are a dask array of one chunk per slice, decoded when asked for.

Slices are stacked by ascending position along their normal (never by
file name or InstanceNumber) and placed by :mod:`napari_lightfusion.geometry`
(spacing from the positions, sagittal and coronal series laid out axially
by ``canonical``). Enhanced multi-frame files and NM / RT Dose multi-frame
volumes are read too. Values are stored x RescaleSlope + RescaleIntercept,
slice by slice, in float32: CT in HU, PET in SUV (body weight,
:func:`~napari_lightfusion.suv.suv_factor`) when its tags allow, else Bq/ml
with the reason, MR as stored. No Qt or napari here; errors are
``ValueError`` of one line, naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dicom_files import Header, find_series
from .dicom_frames import Frame, check_pixels, image_size, place_frames, series_frames
from .dicom_tags import number, text
from .geometry import Geometry, canonical
from .messages import first_line
from .suv import PET_UNITS, suv_factor

#: The tags that identify a series' patient, study and series, copied as text to ``clinical["dicom"]``.
IDENTITY_TAGS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "SOPClassUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "Manufacturer",
)


def _units(ds, modality: str, frames: list[Frame]) -> tuple[str, dict | None, float, tuple[str, ...]]:
    """``(unit, suv record, factor applied to the values, notes)`` of a series."""
    if modality == "CT":
        return "HU", None, 1.0, ()
    if modality == "RTDOSE":
        return ("Gy" if text(ds.get("DoseUnits")).upper() == "GY" else ""), None, 1.0, ()
    if modality != "PT":
        return "", None, 1.0, ()
    suv = suv_factor(ds, [f.acquired for f in frames if f.acquired is not None])
    if "factor" in suv:
        return "SUV", suv, suv["factor"], ()
    stored = text(ds.get("Units")).upper()
    unit = PET_UNITS.get(stored, stored.lower())
    return unit, suv, 1.0, (f"SUV not computed: {suv['reason']}; values in {unit or 'the stored units'}",)


class _Slices:
    """A stack's pixels, one frame a read: stored x slope + intercept (x the SUV factor) in float32; colour as is.

    Array-like for ``da.from_array`` (basic slicing); small and picklable, it
    opens the files only when a slice is asked for.
    """

    def __init__(self, frames, shape: tuple, rgb: bool, factor: float):
        self.frames, self.shape, self.rgb, self.factor = tuple(frames), shape, rgb, factor
        self.dtype = np.dtype(np.uint8 if rgb else np.float32)
        self.ndim = len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        images = [self.read(z) for z in range(self.shape[0])[key[0]]]
        out = np.stack(images) if images else np.empty((0, *self.shape[1:]), self.dtype)
        return out[(slice(None), *key[1:])]

    def read(self, z: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        frame = self.frames[z]
        try:
            image = pixel_array(frame.path, index=frame.index)
        except Exception as exc:  # noqa: BLE001 - a decoder's or a file's failure: this slice's problem, in one line
            raise ValueError(f"cannot read the pixels of {frame.path}: {first_line(exc)}") from None
        if image.shape != self.shape[1:]:
            raise ValueError(f"{frame.path} holds an image of shape {image.shape}, not {self.shape[1:]}")
        if self.rgb:
            return image.astype(self.dtype, copy=False)
        scaled = image.astype(np.float32) * np.float32(frame.slope * self.factor)
        return scaled + np.float32(frame.intercept * self.factor)


@dataclass(frozen=True)
class DicomImage:
    """One series as read: lazy ``data``, where it lies, and its record (``clinical``, plain JSON).

    ``data`` is float32 ``(z, y, x)`` in canonical layout (a single slice:
    ``(y, x)``; colour: a last axis of 3, uint8). ``geometry`` maps its
    indices to the world (for a single slice, ``(0, y, x)``). ``notes`` are
    lines to show the user (why SUV was not computed).
    """

    data: object
    geometry: Geometry
    rgb: bool
    clinical: dict
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``modality · SeriesDescription (unit)``; the series number when there is no description; no patient data."""
        tags, unit = self.clinical["dicom"], self.clinical["unit"]
        what = tags["SeriesDescription"].strip() or (f"series {tags['SeriesNumber']}" if tags["SeriesNumber"] else "")
        return f"{self.clinical['modality'] or 'DICOM'} \u00b7 {what or 'series'}" + (f" ({unit})" if unit else "")

    def layer_kwargs(self) -> dict:
        """napari placement: the geometry's for a volume; a single slice is 2D, at its pixel spacing."""
        if self.data.ndim - self.rgb == 3:
            return self.geometry.layer_kwargs()
        place = {"scale": self.geometry.spacing[1:], "units": ("mm", "mm")}
        return place if self.geometry.oblique else {**place, "translate": self.geometry.origin[1:]}


def read_series(headers: list[Header]) -> DicomImage:
    """One series (headers from :func:`find_series`) read lazily; ``ValueError`` (one line) when it makes no image."""
    import dask.array as da
    from dask.base import tokenize

    ds = headers[0].ds
    frames = series_frames(headers)
    check_pixels(headers)
    order, geometry = place_frames(frames, ds)
    frames = [frames[i] for i in order]
    modality = text(ds.get("Modality")).upper()
    unit, suv, factor, notes = _units(ds, modality, frames)
    rows, columns, samples = image_size(ds)
    if samples not in (1, 3) or (samples == 3 and int(number(ds.get("BitsAllocated"), 8)) != 8):
        raise ValueError(f"{headers[0].path}: images of {samples} samples per pixel are not supported")
    rgb = samples == 3
    reader = _Slices(frames, (len(frames), rows, columns) + ((3,) if rgb else ()), rgb, factor)
    files = list(dict.fromkeys(f.path for f in frames))
    token = tokenize(
        [(f.path, f.index, f.slope, f.intercept) for f in frames], factor, [os.stat(p).st_mtime_ns for p in files]
    )
    data = da.from_array(reader, chunks=(1, *reader.shape[1:]), asarray=True, fancy=False, name=f"dicom-{token}")
    if len(frames) == 1:
        data = data[0]
    else:
        data, geometry = canonical(data, geometry, rgb)
    clinical = {
        "modality": modality,
        "unit": unit,
        "source": "dicom",
        "files": files,
        "geometry": geometry.affine.tolist(),
    }
    if modality == "PT":
        clinical["suv"] = suv
    clinical["dicom"] = {key: text(ds.get(key)) for key in IDENTITY_TAGS}
    return DicomImage(data, geometry, rgb, clinical, notes)


def _describe(headers: list[Header], problem: str) -> str:
    """``problem`` after the series it is about (and where it is, when the problem does not say)."""
    ds = headers[0].ds
    where = headers[0].path if len(headers) == 1 else str(Path(headers[0].path).parent)
    what = " ".join(filter(None, [text(ds.get("Modality")), "series", text(ds.get("SeriesNumber"))]))
    description = text(ds.get("SeriesDescription")).strip()
    what += f" {description!r}" if description else ""
    return f"{what}: {problem}" if where in problem else f"{what} in {where}: {problem}"


def read_dicom(paths) -> tuple[list[DicomImage], list[str]]:
    """Every image series at ``paths`` (a file, a folder, or a list of them), and a line per one that failed.

    ``ValueError`` (one line) when no series could be read; the lines name
    the series and the file, for the caller to show.
    """
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    groups, problems = find_series(paths)
    images = []
    for headers in groups:
        try:
            images.append(read_series(headers))
        except Exception as exc:  # noqa: BLE001 - any failure is this series' own: report it, read the others
            problems.append(_describe(headers, first_line(exc)))
    if not images:
        if not problems:
            raise ValueError(f"no DICOM image series found in {', '.join(map(str, paths))}")
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more)
    return images, problems
