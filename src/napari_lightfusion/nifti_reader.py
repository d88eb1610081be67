"""NIfTI volumes (``.nii``, ``.nii.gz``) read in canonical orientation, one axial slice at a time.

:class:`NiftiVolume` lays any file's voxels out as :data:`DISPLAY_AXES`
(axial slices, anterior up, the patient's right on the left) whatever
their order on disk, and keeps where they lie in the patient and how to go
back to the file (:class:`Space`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .ngff_units import ngff_unit
from .slice_readers import SliceReader

#: Where NIfTI volumes are read to: nibabel's closest canonical orientation, RAS+.
CANONICAL = "RAS"

#: The canonical volume as (slices, rows, columns): toward superior, posterior and the
#: patient's left, so an axial slice shows anterior up and the patient's right on the
#: left, as radiologists read it (nibabel axis codes; the same axes as DICOM's LPS).
DISPLAY_AXES = ("S", "P", "L")

#: A NIfTI slice across the file's fastest axis is read in slabs of at most this many bytes.
SLAB_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Space:
    """Where a NIfTI volume's voxels lie in the patient, and how to go back to the file.

    ``input_affine`` maps the file's voxel indices ``(i, j, k, 1)`` to RAS+
    millimetres (the sform or qform, as nibabel reads it); ``affine`` maps
    the volume's indices as read, ``(z, y, x, 1)``, to the same millimetres.
    """

    input_affine: tuple
    input_axcodes: str
    affine: tuple
    shape: tuple[int, int, int]

    def record(self) -> dict:
        """The orientation as an output's sidecar keeps it (plain JSON)."""
        return {
            "canonical": CANONICAL + "+",
            "axes": dict(zip("zyx", DISPLAY_AXES, strict=True)),
            "zyx_to_ras": [list(row) for row in self.affine],
            "input_axcodes": self.input_axcodes,
            "input_affine": [list(row) for row in self.input_affine],
        }


@lru_cache(maxsize=8)
def _nifti(path: str, mtime_ns: int):
    """The image, loaded once per process with its file kept open (sequential reads of a .nii.gz)."""
    import nibabel

    return nibabel.load(path, keep_file_open=True)


class NiftiVolume(SliceReader):
    """A 3D NIfTI volume in canonical orientation, read one axial slice at a time.

    The file's voxel axes are matched to the patient's by its affine
    (nibabel's ``io_orientation``: the closest canonical RAS+ orientation)
    and laid out as :data:`DISPLAY_AXES` says: slices go from inferior to
    superior, rows from anterior to posterior, columns from the patient's
    right to left (the radiological view of axial slices). Only the slice
    asked for is read: a file whose axial axis is its first (fastest) one
    is read in slabs of at most :data:`SLAB_BYTES`, since one slice across
    it spans the whole file.
    """

    def __init__(self, path: str):
        from nibabel.orientations import aff2axcodes, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        self.path = path
        image = self._image()
        shape = image.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise ValueError(f"cannot read {path}: a 3D NIfTI volume is needed, this one has shape {shape}")
        self.file_shape = tuple(int(n) for n in shape)
        affine = np.asarray(image.affine, dtype=float)
        _check_affine(path, affine)
        #: file axis i -> (display axis, +1 same direction / -1 reversed), a nibabel orientation
        self.ornt = ornt_transform(io_orientation(affine), axcodes2ornt(DISPLAY_AXES))
        axes = [int(a) for a in self.ornt[:, 0]]
        self.shape = tuple(self.file_shape[axes.index(d)] for d in range(3))
        self.slice_axis = axes.index(0)
        self.itemsize = np.dtype(image.get_data_dtype()).itemsize
        self.dtype = self.read(0).dtype
        zooms = [float(v) for v in image.header.get_zooms()[:3]]
        self.voxel_size = tuple(zooms[axes.index(d)] for d in range(3))
        self.unit = ngff_unit(image.header.get_xyzt_units()[0])
        self.space = Space(
            input_affine=_rows(affine),
            input_axcodes="".join(aff2axcodes(affine)),
            affine=_rows(affine @ inv_ornt_aff(self.ornt, self.file_shape)),
            shape=self.shape,
        )
        if image.get_data_dtype().names:  # RGB24 (what write_nifti writes for colour): channels last
            self.shape += (len(image.get_data_dtype().names),)

    def _image(self):
        return _nifti(self.path, os.stat(self.path).st_mtime_ns)

    def read(self, z: int) -> np.ndarray:
        from nibabel.orientations import apply_orientation

        a = self.slice_axis
        k = z if self.ornt[a, 1] > 0 else self.file_shape[a] - 1 - z
        plane = np.expand_dims(self._plane(a, k), a)  # the file's 3D layout, one voxel thick along a
        image = np.ascontiguousarray(apply_orientation(plane, self.ornt)[0])
        return np.stack([image[c] for c in image.dtype.names], -1) if image.dtype.names else image

    def _plane(self, a: int, k: int) -> np.ndarray:
        """Voxels ``k`` along file axis ``a``: the other two file axes, in file order."""
        proxy = self._image().dataobj
        extra = (0,) if len(proxy.shape) == 4 else ()
        if a != 0:
            index = [slice(None)] * 3
            index[a] = k
            return np.asarray(proxy[tuple(index) + extra])
        n0, n1, n2 = self.file_shape
        step = max(1, SLAB_BYTES // (n0 * n1 * self.itemsize))
        out = None
        for s in range(0, n2, step):  # each slab is a view of the whole slab read: copy out, let it go
            part = np.asarray(proxy[(k, slice(None), slice(s, s + step)) + extra])
            out = np.empty((n1, n2), part.dtype) if out is None else out
            out[:, s : s + step] = part
        return out


def _rows(matrix: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in matrix)


def _check_affine(path: str, affine: np.ndarray) -> None:
    """``ValueError`` (one line) for an affine that does not place voxels in the patient (singular)."""
    linear = affine[:3, :3]
    norms = np.linalg.norm(linear, axis=0) if np.isfinite(affine).all() else np.zeros(3)
    if norms.min() == 0 or abs(np.linalg.det(linear)) < 1e-6 * np.prod(norms):
        raise ValueError(
            f"cannot read {path}: its affine (sform/qform) is degenerate, not invertible; fix its header first"
        )
