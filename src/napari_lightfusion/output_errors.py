"""What the command line says when an output cannot be written: one line, never a traceback.

:func:`check_output_place` refuses, before any work, an output under a
file (where a folder is needed) or in a folder it may not write in.
:func:`output_errors` turns an ``OSError`` raised while writing into a
one-line ``ValueError``; a full disk (or quota) is a :class:`DiskFull`
that says how far the volume got, from the slices a :class:`SliceCount`
saw reach the disk, and that a rerun resumes (an OME-Zarr output and the
working copy of a NIfTI or DICOM one keep every slice written).
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

#: errno values that mean the disk (or the user's quota) is full.
FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(ValueError):
    """The disk filled up while an output was written (one line: where, how far, what to do)."""


class SliceCount:
    """The slices of a volume known to be on disk: a ``progress(done, total)`` callback that remembers."""

    def __init__(self):
        self.done: int | None = None
        self.total: int | None = None

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


def check_output_place(out) -> None:
    """``ValueError`` (one line) when ``out`` cannot be made: a file where a folder is needed, no permission."""
    out = Path(out)
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {out}: no permission to write in {parent}")


def _line(exc: OSError, target: Path, slices: SliceCount | None, resumable: bool) -> ValueError:
    if exc.errno in FULL:
        again = "free space and run again" + (" to resume" if resumable else "")
        if slices is not None and slices.total:
            return DiskFull(f"disk full after {slices.done} of {slices.total} slices in {target}; {again}")
        return DiskFull(f"disk full while writing {target}; {again}")
    beside = exc.filename and Path(exc.filename).absolute().parent in (target.absolute(), target.absolute().parent)
    where = f" ({exc.filename})" if exc.filename and not beside else ""  # not its own temporary files
    return ValueError(f"cannot write {target}: {exc.strerror or exc}{where}")


@contextmanager
def output_errors(target, slices: SliceCount | None = None, resumable: bool = False):
    """Turn an ``OSError`` raised inside into one line naming ``target`` (:class:`DiskFull` for a full disk).

    ``slices``: the progress seen so far, for "disk full after N of M
    slices"; ``resumable``: a rerun picks up where this one stopped (it
    says so). A writer's own one-line "disk full ..." ``ValueError`` (the
    NIfTI and DICOM writers, :class:`napari_lightfusion.slice_writer.SliceWriter`)
    becomes a :class:`DiskFull` with the same advice.
    """
    target = Path(target)
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        raise _line(exc, target, slices, resumable) from None
    except ValueError as exc:
        if str(exc).startswith("disk full"):
            raise DiskFull(f"{exc}; free space and run again" + (" to resume" if resumable else "")) from None
        raise
