"""The two images of a registration checked, cut to their common field of view and read as float32.

:func:`prepare_pair` is what every fit of :mod:`napari_lightfusion.align`
starts with: each image's type, shape and data-to-world matrix checked
(``ValueError``, one line, naming the anatomical or functional image),
nothing read until both are cut to where they overlap plus
:data:`MARGIN_MM`, then read as finite float32 (the luminance of RGB).
"""

from __future__ import annotations

import numpy as np

from .colour import luminance

#: How far beyond the other image's field of view an image is kept (mm): more than any misalignment looked for.
MARGIN_MM = 30.0


def _check(image, matrix, name: str, rgb: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """``image``'s matrix and spatial shape, checked with its type (nothing is read yet)."""
    shape = tuple(image.shape)
    if rgb and (len(shape) not in (3, 4) or shape[-1] not in (3, 4)):
        raise ValueError(f"the {name} image is not RGB(A) with the colour last: shape {shape}")
    spatial = shape[:-1] if rgb else shape
    if len(spatial) not in (2, 3):
        raise ValueError(f"the {name} image must be 2D (Y, X) or 3D (Z, Y, X), not shape {shape}")
    if np.dtype(image.dtype).kind not in "biuf":
        raise ValueError(f"the {name} image holds {image.dtype} values, not numbers")
    if min(spatial) == 0:
        raise ValueError(f"the {name} image is empty: shape {shape}")
    if min(spatial) < 4:
        raise ValueError(f"the {name} image is too small to align: {spatial}, at least 4 pixels along each axis")
    m = np.asarray(matrix, dtype=float)
    n = len(spatial)
    if m.shape != (n + 1, n + 1) or not np.isfinite(m).all() or abs(np.linalg.det(m[:n, :n])) < 1e-12:
        raise ValueError(f"the {name} image's data-to-world must be an invertible {n + 1}x{n + 1} matrix")
    return m, spatial


def _values(image, name: str, rgb: bool) -> np.ndarray:
    """``image`` read as finite float32 (the luminance of RGB; NaN as its lowest value); ``ValueError`` if flat."""
    data = np.asarray(image)
    data = (luminance(data.astype(np.float64)) if rgb else data).astype(np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        raise ValueError(f"the {name} image has no finite values (all NaN or infinite)")
    if not finite.all():
        data = np.where(finite, data, data[finite].min())
    if data.max() == data.min():
        raise ValueError(f"the {name} image is constant where the two overlap: there is nothing to align on")
    return data


def bounds(shape, matrix) -> tuple[np.ndarray, np.ndarray]:
    """The world box that an image's voxel centres span."""
    n = len(shape)
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in shape], indexing="ij")).reshape(n, -1)
    world = matrix[:n, :n] @ corners + matrix[:n, n:]
    return world.min(axis=1), world.max(axis=1)


def _crop(image, matrix, spatial, box):
    """The part of ``image`` within :data:`MARGIN_MM` of the world ``box``, and its matrix (a view: nothing read)."""
    n = len(spatial)
    corners = np.array(np.meshgrid(*zip(box[0] - MARGIN_MM, box[1] + MARGIN_MM), indexing="ij")).reshape(n, -1)
    index = np.linalg.solve(matrix[:n, :n], corners - matrix[:n, n:])
    start = np.clip(np.floor(index.min(axis=1)).astype(int), 0, spatial)
    stop = np.clip(np.ceil(index.max(axis=1)).astype(int) + 1, 0, spatial)
    if np.any(stop - start < 4):
        return image, matrix
    shifted = matrix.copy()
    shifted[:n, n] += matrix[:n, :n] @ start
    return image[tuple(slice(a, b) for a, b in zip(start, stop))], shifted


def prepare_pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving: bool):
    """Both images checked, cut to their common field of view (plus a margin) and read as float32."""
    fixed_matrix, fixed_shape = _check(fixed, fixed_matrix, "anatomical", False)
    moving_matrix, moving_shape = _check(moving, moving_matrix, "functional", rgb_moving)
    if len(fixed_shape) != len(moving_shape):
        raise ValueError(f"cannot align a {len(moving_shape)}D functional image with {len(fixed_shape)}D anatomy")
    fixed_box, moving_box = bounds(fixed_shape, fixed_matrix), bounds(moving_shape, moving_matrix)
    if np.any(np.maximum(fixed_box[0], moving_box[0]) > np.minimum(fixed_box[1], moving_box[1])):
        raise ValueError("the two images do not overlap in the world: check their scale and translate")
    fixed, fixed_matrix = _crop(fixed, fixed_matrix, fixed_shape, moving_box)
    moving, moving_matrix = _crop(moving, moving_matrix, moving_shape, fixed_box)
    return _values(fixed, "anatomical", False), fixed_matrix, _values(moving, "functional", rgb_moving), moving_matrix


def matrix_spacing(matrix) -> np.ndarray:
    n = len(matrix) - 1
    return np.linalg.norm(np.asarray(matrix)[:n, :n], axis=0)
