"""The slices of one DICOM series: frames, their order and place in the patient, and whether their pixels decode.

A series is single-frame files, an enhanced multi-frame file (placed by its
functional groups) or an NM / RT Dose multi-frame volume (one position and
offsets along the normal): :func:`series_frames` makes each slice a
:class:`Frame`. :func:`place_frames` stacks them by ascending position along
their normal (never by file name or InstanceNumber) and places the stack by
:mod:`napari_lightfusion.geometry`; :func:`check_pixels` finds slices of
another size, transfer syntaxes with no decoder and files cut short before a
pixel is read. Errors are ``ValueError`` of one line, naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .dicom_files import Header, frame_count
from .dicom_tags import date_time, first_item, floats, number
from .geometry import Geometry, slice_offsets, uniform_spacing

#: Slices whose positions step off their normal by more than this angle (degrees) were taken with a tilted gantry.
TILT_TOLERANCE_DEG = 0.2

#: ImageOrientationPatient cosines of two slices of one stack agree to this.
ORIENTATION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Frame:
    """One slice of a stack: its file (and frame, in a multi-frame file), placement and rescale."""

    path: str
    index: int | None
    position: tuple | None
    orientation: tuple | None
    spacing: tuple | None
    slope: float
    intercept: float
    acquired: datetime | None


def _rescale(ds) -> tuple[float, float]:
    slope = number(ds.get("RescaleSlope"), None)
    if slope is None:
        slope = number(ds.get("DoseGridScaling"), 1.0)  # RT Dose: stored x DoseGridScaling = Gy
    return slope, number(ds.get("RescaleIntercept"), 0.0)


def _acquired(ds) -> datetime | None:
    return date_time(ds.get("AcquisitionDateTime")) or date_time(ds.get("AcquisitionDate"), ds.get("AcquisitionTime"))


def _single(header: Header) -> Frame:
    ds = header.ds
    place = [floats(ds.get(k)) for k in ("ImagePositionPatient", "ImageOrientationPatient")]
    spacing = floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))
    return Frame(header.path, None, *place, spacing, *_rescale(ds), _acquired(ds))


def _functional(ds, item, shared, sequence: str, keyword: str):
    """A tag of an enhanced file: in the frame's functional group, else the shared one, else at the top level."""
    for group in (item, shared):
        inner = first_item(group.get(sequence)) if group is not None else None
        if inner is not None and inner.get(keyword) is not None:
            return inner.get(keyword)
    return ds.get(keyword)


def _enhanced(header: Header) -> list[Frame]:
    """The frames of an enhanced multi-frame file, placed by their PlanePositionSequence."""
    ds = header.ds
    shared, n = first_item(ds.get("SharedFunctionalGroupsSequence")), frame_count(ds)
    if len(ds.PerFrameFunctionalGroupsSequence) < n:
        raise ValueError(f"{header.path} describes fewer frames than its {n} (PerFrameFunctionalGroupsSequence)")
    frames = []
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence[:n]):

        def tag(sequence, keyword, item=item):
            return _functional(ds, item, shared, sequence, keyword)

        content = tag("FrameContentSequence", "FrameAcquisitionDateTime")
        frames.append(
            Frame(
                header.path,
                i,
                floats(tag("PlanePositionSequence", "ImagePositionPatient")),
                floats(tag("PlaneOrientationSequence", "ImageOrientationPatient")),
                floats(tag("PixelMeasuresSequence", "PixelSpacing")),
                number(tag("PixelValueTransformationSequence", "RescaleSlope"), 1.0),
                number(tag("PixelValueTransformationSequence", "RescaleIntercept"), 0.0),
                date_time(content) if content else _acquired(ds),
            )
        )
    return frames


def _stacked(header: Header) -> list[Frame]:
    """The frames of an NM (SPECT) or RT Dose volume: one position, offsets along the normal."""
    ds = header.ds
    n, detector = frame_count(ds), first_item(ds.get("DetectorInformationSequence")) or {}
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
    return [
        Frame(
            header.path, i, tuple(np.asarray(origin) + d * normal), orientation, spacing, *_rescale(ds), _acquired(ds)
        )
        for i, d in enumerate(offsets)
    ]


def series_frames(headers: list[Header]) -> list[Frame]:
    ds = headers[0].ds
    if len(headers) == 1 and "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced(headers[0])
    if len(headers) == 1 and frame_count(ds) > 1:
        return _stacked(headers[0])
    return [_single(h) for h in headers]


def _transfer_syntax(ds):
    from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    uid = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if uid:
        return UID(str(uid))
    implicit, little = ds.original_encoding
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def image_size(ds) -> tuple[int, int, int]:
    return int(ds.Rows), int(ds.Columns), int(number(ds.get("SamplesPerPixel"), 1))


def check_pixels(headers: list[Header]) -> None:
    """``ValueError`` naming the file for slices of another size, an undecodable transfer syntax, a file cut short."""
    from pydicom.pixels import get_decoder

    size, decoders = image_size(headers[0].ds), {}
    for header in headers:
        ds = header.ds
        if image_size(ds) != size:
            raise ValueError(
                f"its slices differ in size: {header.path} is {image_size(ds)[:2]}, {headers[0].path} {size[:2]}"
            )
        syntax = _transfer_syntax(ds)
        if syntax not in decoders:
            try:
                decoders[syntax] = get_decoder(syntax)
            except NotImplementedError:
                raise ValueError(f"{header.path}: its transfer syntax {syntax.name} is not supported") from None
        decoder = decoders[syntax]
        if not decoder.is_available:
            raise ValueError(
                f"{header.path}: its pixel data is {syntax.name}, and no decoder for it is installed "
                f"({'; '.join(decoder.missing_dependencies)})"
            )
        if syntax.is_encapsulated or syntax.is_deflated:
            continue
        bits = int(number(ds.get("BitsAllocated"), 16))
        count = math.prod(size) * frame_count(ds)
        expected = math.ceil(count / 8) if bits == 1 else count * (bits // 8)
        available = header.size - header.pixels_at - (8 if syntax.is_implicit_VR else 12)
        if available < expected:
            raise ValueError(f"{header.path} is cut short: {max(available, 0)} of its {expected} bytes of pixel data")


def place_frames(frames: list[Frame], ds) -> tuple[np.ndarray, Geometry]:
    """The slices' order (ascending along the normal) and the stack's geometry; ``ValueError`` if they make none."""
    n = len(frames)
    spacing = frames[0].spacing or (1.0, 1.0)
    if any(f.position is None or f.orientation is None for f in frames):
        if n > 1:
            raise ValueError(
                f"{frames[0].path} has no ImagePositionPatient / ImageOrientationPatient, so the "
                f"order of the series' {n} slices in the patient is unknown"
            )
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
            raise ValueError(
                f"gantry tilt of {tilt:.1f}\u00b0 is not supported: resample the series first ({frames[order[0]].path})"
            )
        try:
            between = uniform_spacing(offsets)
        except ValueError as exc:
            steps = np.diff(offsets)
            i = int(np.argmax(np.abs(steps - np.median(steps))))
            raise ValueError(f"{exc} ({frames[order[i]].path} and {frames[order[i + 1]].path})") from None
    return order, Geometry.from_dicom(orientations[0], positions[order[0]], spacing, between)
