"""Reading DICOM series: find them under a file or folder, stack their slices in the patient, CT in HU, PET in SUV.

:func:`read_dicom` finds the image series at a path (a file, a series
folder, a study folder with sub-folders; DICOMDIR, reports and other
files are skipped), reads each and says in one line why any could not be
read, so that one bad series does not keep the others from opening.
Headers are read without pixel data to group, sort and check the slices;
the pixels are a dask array of one chunk per slice, decoded when asked for.

Slices are stacked by ascending position along their normal (never by
file name or InstanceNumber) and placed by :mod:`napari_lightfusion.geometry`
(spacing from the positions, sagittal and coronal series laid out axially
by ``canonical``). Enhanced multi-frame files and NM / RT Dose multi-frame
volumes are read too. Values are stored x RescaleSlope + RescaleIntercept,
slice by slice, in float32: CT in HU, PET in SUV (body weight,
:func:`suv_factor`) when its tags allow, else Bq/ml with the reason, MR as
stored. No Qt or napari here; errors are ``ValueError`` of one line, naming the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .dicom_tags import date_time, first_item, floats, number, text
from .geometry import Geometry, canonical, slice_offsets, uniform_spacing
from .messages import first_line
from .suv import PET_UNITS, suv_factor

#: Where a DICOM file's magic word "DICM" lies, after its 128-byte preamble.
MAGIC_AT = 128

#: :func:`holds_dicom` looks at this many files of a folder before saying it holds none.
LOOK = 200

#: The tags that identify a series' patient, study and series, copied as text to ``clinical["dicom"]``.
IDENTITY_TAGS = (
    "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "Modality", "SeriesDescription",
    "SeriesNumber", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
    "StudyTime", "AccessionNumber", "ReferringPhysicianName", "Manufacturer",
)

#: Slices whose positions step off their normal by more than this angle (degrees) were taken with a tilted gantry.
TILT_TOLERANCE_DEG = 0.2

#: ImageOrientationPatient cosines of two slices of one stack agree to this.
ORIENTATION_TOLERANCE = 1e-4


def is_dicom(path) -> bool:
    """Whether ``path`` is a DICOM file, from its first bytes.

    "DICM" after the 128-byte preamble, else (old files written without the
    part-10 header) a first element in group 0008 with an explicit VR or a
    short length. Reads 132 bytes; never raises.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(MAGIC_AT + 4)
    except OSError:
        return False
    if head[MAGIC_AT:] == b"DICM":
        return True
    if len(head) < 8 or head[:2] != b"\x08\x00" or int.from_bytes(head[2:4], "little") > 0x0020:
        return False
    return (head[4:6].isalpha() and head[4:6].isupper()) or int.from_bytes(head[4:8], "little") < 1024


def _walk(folder):
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        yield from (Path(root, name) for name in sorted(names) if not name.startswith("."))


def dicom_files(path) -> list[Path]:
    """The DICOM files at ``path``: the file itself, or every one under a folder (sub-folders too), sorted."""
    path = Path(path)
    if path.is_dir():
        return [p for p in _walk(path) if is_dicom(p)]
    return [path] if is_dicom(path) else []


def holds_dicom(folder, look: int = LOOK) -> bool:
    """Whether one of the first ``look`` files under ``folder`` is DICOM (a quick test, for napari's reader choice)."""
    for i, path in enumerate(_walk(folder)):
        if i >= look:
            return False
        if is_dicom(path):
            return True
    return False


@dataclass(frozen=True)
class _Header:
    """One file's header, read without the pixel data, and where its pixel data starts."""

    path: str
    ds: object
    pixels_at: int
    size: int


@dataclass(frozen=True)
class _Frame:
    """One slice of a stack: its file (and frame, in a multi-frame file), placement and rescale."""

    path: str
    index: int | None
    position: tuple | None
    orientation: tuple | None
    spacing: tuple | None
    slope: float
    intercept: float
    acquired: datetime | None


def _header(path) -> _Header | None:
    """The header of an image file; ``None`` for a DICOM file that is no image (DICOMDIR, a report, a plan)."""
    import pydicom
    from pydicom.uid import UID

    with open(path, "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        at = f.tell()
    if "Rows" not in ds or "Columns" not in ds:
        if "Image Storage" in UID(text(ds.get("SOPClassUID"))).name:
            raise ValueError("its header is incomplete: the file is cut short")
        return None  # DICOMDIR, a report, a plan: no image
    return _Header(str(path), ds, at, os.path.getsize(path))


def _frame_count(ds) -> int:
    return int(number(ds.get("NumberOfFrames"), 1))


def find_series(paths) -> tuple[list[list[_Header]], list[str]]:
    """The image series at ``paths`` (files or folders) as lists of headers, and a line per unreadable file.

    Files are grouped by SeriesInstanceUID; a multi-frame file is a series of
    its own. Series come in SeriesNumber order.
    """
    groups, problems = {}, []
    for path in (p for given in paths for p in dicom_files(given)):
        try:
            header = _header(path)
        except Exception as exc:  # noqa: BLE001 - a damaged header is that file's problem only
            problems.append(f"cannot read {path}: {first_line(exc)}")
            continue
        if header is None:
            continue
        ds = header.ds
        uid = text(ds.get("SeriesInstanceUID")) or str(path.parent)
        alone = _frame_count(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds
        groups.setdefault((uid, str(path) if alone else ""), []).append(header)
    return sorted(groups.values(), key=lambda g: (number(g[0].ds.get("SeriesNumber"), math.inf), g[0].path)), problems


def _rescale(ds) -> tuple[float, float]:
    slope = number(ds.get("RescaleSlope"), None)
    if slope is None:
        slope = number(ds.get("DoseGridScaling"), 1.0)  # RT Dose: stored x DoseGridScaling = Gy
    return slope, number(ds.get("RescaleIntercept"), 0.0)


def _acquired(ds) -> datetime | None:
    return date_time(ds.get("AcquisitionDateTime")) or date_time(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))


def _single(header: _Header) -> _Frame:
    ds = header.ds
    place = [floats(ds.get(k)) for k in ("ImagePositionPatient", "ImageOrientationPatient")]
    spacing = floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))
    return _Frame(header.path, None, *place, spacing, *_rescale(ds), _acquired(ds))


def _functional(ds, item, shared, sequence: str, keyword: str):
    """A tag of an enhanced file: in the frame's functional group, else the shared one, else at the top level."""
    for group in (item, shared):
        inner = first_item(group.get(sequence)) if group is not None else None
        if inner is not None and inner.get(keyword) is not None:
            return inner.get(keyword)
    return ds.get(keyword)


def _enhanced(header: _Header) -> list[_Frame]:
    """The frames of an enhanced multi-frame file, placed by their PlanePositionSequence."""
    ds = header.ds
    shared, n = first_item(ds.get("SharedFunctionalGroupsSequence")), _frame_count(ds)
    if len(ds.PerFrameFunctionalGroupsSequence) < n:
        raise ValueError(f"{header.path} describes fewer frames than its {n} (PerFrameFunctionalGroupsSequence)")
    frames = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence[:n]):
        def tag(sequence, keyword, item=item):
            return _functional(ds, item, shared, sequence, keyword)

        content = tag("FrameContentSequence", "FrameAcquisitionDateTime")
        frames.append(_Frame(
            header.path, i, floats(tag("PlanePositionSequence", "ImagePositionPatient")),
            floats(tag("PlaneOrientationSequence", "ImageOrientationPatient")),
            floats(tag("PixelMeasuresSequence", "PixelSpacing")),
            number(tag("PixelValueTransformationSequence", "RescaleSlope"), 1.0),
            number(tag("PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
            date_time(content) if content else _acquired(ds),
        ))
    return frames


def _stacked(header: _Header) -> list[_Frame]:
    """The frames of an NM (SPECT) or RT Dose volume: one position, offsets along the normal."""
    ds = header.ds
    n, detector = _frame_count(ds), first_item(ds.get("DetectorInformationSequence")) or {}
    origin = floats(ds.get("ImagePositionPatient") or detector.get("ImagePositionPatient"))
    orientation = floats(ds.get("ImageOrientationPatient") or detector.get("ImageOrientationPatient"))
    if ds.get("GridFrameOffsetVector"):  # RT Dose: relative offsets, or absolute ones starting at the position
        offsets = np.asarray(ds.GridFrameOffsetVector, float)
        offsets = offsets - offsets[0]
    else:
        offsets = np.arange(n) * number(ds.get("SpacingBetweenSlices"), math.nan)
    if origin is None or orientation is None or len(offsets) != n or not np.isfinite(offsets).all():
        raise ValueError(f"{header.path} holds {n} frames without their positions (a cine loop?), not a volume")
    normal = np.cross(orientation[:3], orientation[3:])
    spacing = floats(ds.get("PixelSpacing"))
    return [_Frame(header.path, i, tuple(np.asarray(origin) + d * normal), orientation, spacing, *_rescale(ds),
                   _acquired(ds)) for i, d in enumerate(offsets)]


def _frames(headers: list[_Header]) -> list[_Frame]:
    ds = headers[0].ds
    if len(headers) == 1 and "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(headers[0])
    if len(headers) == 1 and _frame_count(ds) > 1:
        return _stacked(headers[0])
    return [_single(h) for h in headers]


def _transfer_syntax(ds):
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    uid = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if uid:
        return UID(str(uid))
    implicit, little = ds.original_encoding
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _image_size(ds) -> tuple[int, int, int]:
    return int(ds.Rows), int(ds.Columns), int(number(ds.get("SamplesPerPixel"), 1))


def _check_pixels(headers: list[_Header]) -> None:
    """``ValueError`` naming the file for slices of another size, an undecodable transfer syntax, a file cut short."""
    from pydicom.pixels import get_decoder

    size, decoders = _image_size(headers[0].ds), {}
    for header in headers:
        ds = header.ds
        if _image_size(ds) != size:
            raise ValueError(
                f"its slices differ in size: {header.path} is {_image_size(ds)[:2]}, {headers[0].path} {size[:2]}"
            )
        syntax = _transfer_syntax(ds)
        if syntax not in decoders:
            try:
                decoders[syntax] = get_decoder(syntax)
            except NotImplementedError:
                raise ValueError(f"{header.path}: its transfer syntax {syntax.name} is not supported") from None
        decoder = decoders[syntax]
        if not decoder.is_available:
            raise ValueError(f"{header.path}: its pixel data is {syntax.name}, and no decoder for it is installed "
                             f"({'; '.join(decoder.missing_dependencies)})")
        if syntax.is_encapsulated or syntax.is_deflated:
            continue
        bits = int(number(ds.get("BitsAllocated"), 16))
        count = math.prod(size) * _frame_count(ds)
        expected = math.ceil(count / 8) if bits == 1 else count * (bits // 8)
        available = header.size - header.pixels_at - (8 if syntax.is_implicit_VR else 12)
        if available < expected:
            raise ValueError(f"{header.path} is cut short: {max(available, 0)} of its {expected} bytes of pixel data")


def _place(frames: list[_Frame], ds) -> tuple[np.ndarray, Geometry]:
    """The slices' order (ascending along the normal) and the stack's geometry; ``ValueError`` if they make none."""
    n = len(frames)
    spacing = frames[0].spacing or (1.0, 1.0)
    if any(f.position is None or f.orientation is None for f in frames):
        if n > 1:
            raise ValueError(f"{frames[0].path} has no ImagePositionPatient / ImageOrientationPatient, so the "
                             f"order of the series' {n} slices in the patient is unknown")
        return np.zeros(1, int), Geometry.from_dicom((1, 0, 0, 0, 1, 0), (0, 0, 0), spacing, 1.0)
    orientations = np.array([f.orientation for f in frames])
    off = np.flatnonzero(np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOLERANCE)
    if off.size:
        raise ValueError(f"its slices lie in different planes ({frames[0].path} and {frames[off[0]].path})")
    positions = np.array([f.position for f in frames])
    order, offsets = slice_offsets(orientations[0], positions)
    between = number(ds.get("SpacingBetweenSlices"), 0.0) or number(ds.get("SliceThickness"), 0.0) or 1.0
    if n > 1:
        along_row, down_column = orientations[0][:3], orientations[0][3:]
        normal = np.cross(along_row, down_column) / np.linalg.norm(np.cross(along_row, down_column))
        step = positions[order[-1]] - positions[order[0]]
        tilt = math.degrees(math.atan2(np.linalg.norm(step - (step @ normal) * normal), abs(step @ normal)))
        if tilt > TILT_TOLERANCE_DEG:
            raise ValueError(f"gantry tilt of {tilt:.1f}\u00b0 is not supported: resample the series first "
                             f"({frames[order[0]].path})")
        try:
            between = uniform_spacing(offsets)
        except ValueError as exc:
            steps = np.diff(offsets)
            i = int(np.argmax(np.abs(steps - np.median(steps))))
            raise ValueError(f"{exc} ({frames[order[i]].path} and {frames[order[i + 1]].path})") from None
    return order, Geometry.from_dicom(orientations[0], positions[order[0]], spacing, between)


def _units(ds, modality: str, frames: list[_Frame]) -> tuple[str, dict | None, float, tuple[str, ...]]:
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


def read_series(headers: list[_Header]) -> DicomImage:
    """One series (headers from :func:`find_series`) read lazily; ``ValueError`` (one line) when it makes no image."""
    import dask.array as da
    from dask.base import tokenize

    ds = headers[0].ds
    frames = _frames(headers)
    _check_pixels(headers)
    order, geometry = _place(frames, ds)
    frames = [frames[i] for i in order]
    modality = text(ds.get("Modality")).upper()
    unit, suv, factor, notes = _units(ds, modality, frames)
    rows, columns, samples = _image_size(ds)
    if samples not in (1, 3) or (samples == 3 and int(number(ds.get("BitsAllocated"), 8)) != 8):
        raise ValueError(f"{headers[0].path}: images of {samples} samples per pixel are not supported")
    rgb = samples == 3
    reader = _Slices(frames, (len(frames), rows, columns) + ((3,) if rgb else ()), rgb, factor)
    files = list(dict.fromkeys(f.path for f in frames))
    token = tokenize([(f.path, f.index, f.slope, f.intercept) for f in frames], factor,
                     [os.stat(p).st_mtime_ns for p in files])
    data = da.from_array(reader, chunks=(1, *reader.shape[1:]), asarray=True, fancy=False, name=f"dicom-{token}")
    if len(frames) == 1:
        data = data[0]
    else:
        data, geometry = canonical(data, geometry, rgb)
    clinical = {"modality": modality, "unit": unit, "source": "dicom", "files": files,
                "geometry": geometry.affine.tolist()}
    if modality == "PT":
        clinical["suv"] = suv
    clinical["dicom"] = {key: text(ds.get(key)) for key in IDENTITY_TAGS}
    return DicomImage(data, geometry, rgb, clinical, notes)


def _describe(headers: list[_Header], problem: str) -> str:
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
