"""Finding DICOM files under a file or folder and grouping their headers into series.

:func:`is_dicom` tells a DICOM file from its first bytes; :func:`holds_dicom`
is the quick test of a folder for napari's reader choice;
:func:`find_series` reads every header under the paths given (without the
pixel data), skips DICOMDIR, reports and other files that hold no image,
and groups the rest by series, with a line for each file it could not read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from .dicom_tags import number, text
from .messages import first_line

#: Where a DICOM file's magic word "DICM" lies, after its 128-byte preamble.
MAGIC_AT = 128

#: :func:`holds_dicom` looks at this many files of a folder before saying it holds none.
LOOK = 200


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
class Header:
    """One file's header, read without the pixel data, and where its pixel data starts."""

    path: str
    ds: object
    pixels_at: int
    size: int


def read_header(path) -> Header | None:
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
    return Header(str(path), ds, at, os.path.getsize(path))


def frame_count(ds) -> int:
    return int(number(ds.get("NumberOfFrames"), 1))


def find_series(paths) -> tuple[list[list[Header]], list[str]]:
    """The image series at ``paths`` (files or folders) as lists of headers, and a line per unreadable file.

    Files are grouped by SeriesInstanceUID; a multi-frame file is a series of
    its own. Series come in SeriesNumber order.
    """
    groups, problems = {}, []
    for path in (p for given in paths for p in dicom_files(given)):
        try:
            header = read_header(path)
        except Exception as exc:  # noqa: BLE001 - a damaged header is that file's problem only
            problems.append(f"cannot read {path}: {first_line(exc)}")
            continue
        if header is None:
            continue
        ds = header.ds
        uid = text(ds.get("SeriesInstanceUID")) or str(path.parent)
        alone = frame_count(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds
        groups.setdefault((uid, str(path) if alone else ""), []).append(header)
    return sorted(groups.values(), key=lambda g: (number(g[0].ds.get("SeriesNumber"), math.inf), g[0].path)), problems
