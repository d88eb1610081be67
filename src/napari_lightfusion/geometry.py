"""Where a volume's voxels lie in the patient: one convention for every reader, fusion and writer.

A layer's world axes are ``(z, y, x)`` in millimetres in the DICOM patient
system (LPS) read backwards: **z toward the head (S), y toward the back (P),
x toward the patient's left (L)**. An axial slice then shows anterior up and
the patient's right on the left of the screen, as radiologists read it, and
the same world holds a DICOM series, a NIfTI file (RAS+, whose first two axes
are flipped on the way in) and what the plugin writes back out.

:class:`Geometry` is the homogeneous ``4 x 4`` matrix from voxel index
``(z, y, x, 1)`` to that world. Readers build it (:meth:`Geometry.from_dicom`,
:meth:`Geometry.from_ras`), :func:`canonical` lays a volume out so its axes
follow the world's as closely as they can (a sagittal or coronal series
becomes an axial stack; only a truly oblique one keeps a rotation), and
:meth:`Geometry.layer_kwargs` gives napari ``scale``/``translate`` (or an
``affine`` when oblique). Writers go back with :meth:`Geometry.to_ras` and
:meth:`Geometry.dicom_plane`. No Qt, napari or file format here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The world axes of a layer, as patient directions (nibabel's axis codes).
WORLD_AXES = ("S", "P", "L")

#: RAS+ millimetres (x, y, z, 1) -> world (S, P, L, 1): NIfTI's axes to the layer's.
RAS_TO_WORLD = np.array([[0.0, 0, 1, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]])

#: DICOM LPS millimetres (x, y, z, 1) -> world (S, P, L, 1).
LPS_TO_WORLD = np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])

#: A direction whose cosines differ from a world axis by less than this is not oblique
#: (about 0.06 degrees; scanners write cosines to 5-6 decimals).
AXIS_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class Geometry:
    """A volume's voxel index ``(z, y, x, 1)`` -> world ``(S, P, L, 1)`` millimetres (see the module)."""

    affine: np.ndarray

    def __post_init__(self):
        matrix = np.array(self.affine, dtype=float)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
            raise ValueError("a volume's geometry must be an invertible 4x4 matrix")
        matrix.setflags(write=False)
        object.__setattr__(self, "affine", matrix)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The voxel size along the index axes ``(z, y, x)``, in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """The world position of voxel ``(0, 0, 0)``'s centre, in mm."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """The unit world direction of each index axis, as columns."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def oblique(self) -> bool:
        """Whether the index axes are not the world's (so napari needs an ``affine``, not a ``scale``)."""
        return not np.allclose(self.direction, np.eye(3), atol=AXIS_TOLERANCE)

    def layer_kwargs(self) -> dict:
        """napari placement for ``add_image``: ``scale`` and ``translate`` in mm, or ``affine`` when oblique."""
        if self.oblique:
            return {"affine": self.affine.copy(), "units": ("mm",) * 3}
        return {"scale": self.spacing, "translate": self.origin, "units": ("mm",) * 3}

    @classmethod
    def from_ras(cls, affine) -> Geometry:
        """From a NIfTI-style affine: voxel index ``(z, y, x, 1)`` -> RAS+ mm."""
        return cls(RAS_TO_WORLD @ np.asarray(affine, dtype=float))

    def to_ras(self) -> np.ndarray:
        """The NIfTI-style affine: voxel index ``(z, y, x, 1)`` -> RAS+ mm."""
        return np.linalg.inv(RAS_TO_WORLD) @ self.affine

    @classmethod
    def from_dicom(cls, orientation, position, pixel_spacing, slice_spacing: float) -> Geometry:
        """From a DICOM series: voxel ``(slice, row, column)`` -> world.

        ``orientation`` is ImageOrientationPatient (the direction along a
        row, then down a column, LPS cosines); ``position`` the first
        slice's ImagePositionPatient; ``pixel_spacing`` PixelSpacing
        (between rows, between columns); ``slice_spacing`` the distance
        between slices along the normal (from :func:`slice_offsets`, never
        SliceThickness).
        """
        along_row, down_column, normal = _dicom_axes(orientation)
        row_mm, column_mm = (float(v) for v in pixel_spacing)
        lps = np.eye(4)
        lps[:3, 0] = normal * float(slice_spacing)
        lps[:3, 1] = down_column * row_mm
        lps[:3, 2] = along_row * column_mm
        lps[:3, 3] = np.asarray(position, dtype=float)
        return cls(LPS_TO_WORLD @ lps)

    def dicom_plane(self) -> tuple[list[float], list[float], float]:
        """Back to DICOM: ``(ImageOrientationPatient, PixelSpacing, slice spacing)``.

        Needs a geometry whose index ``y``/``x`` axes are a slice's rows and
        columns (every geometry made here is); :meth:`slice_position` gives
        each slice's ImagePositionPatient.
        """
        lps = np.linalg.inv(LPS_TO_WORLD) @ self.affine
        dz, dy, dx = self.spacing
        orientation = [float(v) for v in (*(lps[:3, 2] / dx), *(lps[:3, 1] / dy))]
        return orientation, [float(dy), float(dx)], float(dz)

    def slice_position(self, z: int) -> list[float]:
        """ImagePositionPatient (LPS mm) of slice ``z``'s first voxel."""
        lps = np.linalg.inv(LPS_TO_WORLD) @ self.affine
        return [float(v) for v in lps[:3, 3] + z * lps[:3, 0]]


def _dicom_axes(orientation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cosines = np.asarray(orientation, dtype=float).reshape(2, 3)
    along_row = cosines[0] / np.linalg.norm(cosines[0])
    down_column = cosines[1] / np.linalg.norm(cosines[1])
    if abs(float(along_row @ down_column)) > 1e-3:
        raise ValueError("ImageOrientationPatient's two directions are not perpendicular")
    return along_row, down_column, np.cross(along_row, down_column)


def slice_offsets(orientation, positions) -> tuple[np.ndarray, np.ndarray]:
    """How to stack DICOM slices: ``(order, offsets)``.

    ``positions`` are the slices' ImagePositionPatient (N x 3, LPS mm);
    each is projected on the slice normal (the cross product of
    ImageOrientationPatient's two directions). ``order`` sorts the slices
    by ascending position along the normal (never by file name or
    InstanceNumber); ``offsets`` are the sorted positions, in mm.
    """
    *_, normal = _dicom_axes(orientation)
    along = np.asarray(positions, dtype=float).reshape(-1, 3) @ normal
    order = np.argsort(along, kind="stable")
    return order, along[order]


def uniform_spacing(offsets, tolerance: float = 0.05) -> float:
    """The slice spacing of sorted ``offsets``; ``ValueError`` when the slices are not evenly spaced.

    ``tolerance`` is relative to the median spacing: a missing slice (a gap
    of twice the spacing), two slices at one position, or a series of mixed
    spacings is refused with the place where it happens.
    """
    steps = np.diff(np.asarray(offsets, dtype=float))
    if steps.size == 0:
        return 1.0
    spacing = float(np.median(steps))
    if spacing <= 0:
        raise ValueError("several slices lie at the same position along the slice normal")
    bad = np.flatnonzero(np.abs(steps - spacing) > tolerance * spacing)
    if bad.size:
        i = int(bad[0])
        what = "missing slice" if steps[i] > 1.5 * spacing else "uneven spacing"
        raise ValueError(
            f"{what}: slices {i} and {i + 1} are {steps[i]:.3g} mm apart, the series' spacing is {spacing:.3g} mm"
        )
    return spacing


def canonical(data, geometry: Geometry, rgb: bool = False) -> tuple[object, Geometry]:
    """``data`` laid out so its index axes follow the world's ``(z, y, x)`` as closely as they can.

    Each index axis goes to the world axis it points along most, flipped when
    it points the other way: a sagittal or coronal series becomes an axial
    stack that napari slices as a radiologist expects, without resampling.
    Only a residual rotation (a truly oblique series) stays in the returned
    geometry. Works on numpy and dask arrays (a view: nothing is read);
    ``rgb``: ``data`` has a colour axis last.
    """
    direction = geometry.direction
    target = [int(np.argmax(np.abs(direction[:, a]))) for a in range(3)]
    if sorted(target) != [0, 1, 2]:  # 45-degree ties: keep the layout, the affine carries it all
        return data, geometry
    shape = data.shape[:3]
    perm = np.zeros((4, 4))  # new index -> old index
    perm[3, 3] = 1.0
    flips = []
    order = [target.index(w) for w in range(3)]  # old axis that becomes new axis w
    for w, a in enumerate(order):
        sign = 1.0 if direction[w, a] > 0 else -1.0
        perm[a, w] = sign
        if sign < 0:
            perm[a, 3] = shape[a] - 1
            flips.append(w)
    out = data.transpose(tuple(order) + ((3,) if rgb else ()))
    if flips:
        out = out[tuple(slice(None, None, -1) if w in flips else slice(None) for w in range(3))]
    return out, Geometry(geometry.affine @ perm)
