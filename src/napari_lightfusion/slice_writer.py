"""Writing a fused volume slice by slice into a temporary path, renamed onto the target at the end.

:class:`SliceWriter` is what the NIfTI and DICOM writers share
(:mod:`napari_lightfusion.nifti_writer`,
:mod:`napari_lightfusion.dicom_series_writer`): slices written in order,
checked against the volume's shape, an ``OSError`` (a full disk) turned into
a one-line ``ValueError`` that discards the partial output, and the rename
that finishes it, so an error, a cancel or a full disk leaves no half file or
half series. The fused volume comes as the project keeps it: float32 in
``[0, 1]``, grey ``(Z, Y, X)`` or colour ``(Z, Y, X, 3)``; numpy, dask or
zarr, read one slice at a time (:func:`write_all`), so memory stays at a slice.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def fused_layout(volume) -> tuple[tuple[int, int, int], bool]:
    """(``(Z, Y, X)``, rgb) of a fused volume; ``ValueError`` for any other shape."""
    shape = tuple(int(n) for n in volume.shape)
    if (len(shape) == 3 or (len(shape) == 4 and shape[3] == 3)) and min(shape) > 0:
        return shape[:3], len(shape) == 4
    raise ValueError(f"a fused volume is (Z, Y, X) grey or (Z, Y, X, 3) colour, not shape {shape}")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A slice as 8-bit values: uint8 as it is, floats in [0, 1] scaled by 255 (clipped, rounded)."""
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"slices must be float in [0, 1] or uint8, not {image.dtype}")
    return np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255).astype(np.uint8)


class SliceWriter:
    """Slices written in order into a temporary path beside ``target``, renamed onto it at the end.

    A context manager: leaving it normally finishes the output, an error
    discards it. ``discard`` may also be called from another thread once
    the writing thread has stopped (a cancelled export). Each writer
    defines ``_write(z, image)``, ``_commit()`` (close, rename) and
    ``_cleanup()`` (remove the temporary output).
    """

    def __init__(self, target, shape: tuple[int, int, int], rgb: bool):
        self.target, self.shape, self.rgb = Path(target), tuple(shape), rgb
        self.written = 0
        self.temp = self.target.with_name(f".{self.target.name}.partial-{uuid.uuid4().hex[:8]}")

    def write(self, image) -> None:
        """Write the next slice: ``(Y, X)`` grey or ``(Y, X, 3)`` colour, float in [0, 1] (or uint8)."""
        image = np.asarray(image)
        if self.written == self.shape[0]:
            raise ValueError(f"all {self.shape[0]} slices of {self.target} are written already")
        want = self.shape[1:] + ((3,) if self.rgb else ())
        if image.shape != want:
            self.discard()
            raise ValueError(f"slice {self.written} has shape {image.shape}, the volume's slices {want}")
        with self._disk():
            self._write(self.written, image)
        self.written += 1

    def finish(self) -> Path:
        """Close and rename the output onto the target, once every slice is written."""
        if self.written != self.shape[0]:
            self.discard()
            raise ValueError(f"only {self.written} of {self.shape[0]} slices were written to {self.target}")
        with self._disk():
            self._commit()
        return self.target

    def discard(self) -> None:
        """Remove what was written (idempotent); the target is left as it was."""
        self._cleanup()

    @contextmanager
    def _disk(self):
        """An ``OSError`` inside discards the output and becomes a one-line ``ValueError``."""
        try:
            yield
        except OSError as exc:
            self.discard()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ValueError(f"disk full after {self.written} of {self.shape[0]} slices in {self.target}") from None
            raise ValueError(f"cannot write {self.target}: {exc.strerror or exc}") from None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.finish()
        else:
            self.discard()


def write_all(writer: SliceWriter, volume, progress: Callable[[int, int], None] | None) -> Path:
    with writer:
        for z in range(writer.shape[0]):
            writer.write(np.asarray(volume[z]))
            if progress is not None:
                progress(z + 1, writer.shape[0])
    return writer.target
