"""Resampling the functional image onto the anatomical image's grid, in world coordinates.

Two images are registered when their *world* coordinates agree, not their
array indices: a PET volume with 4 mm voxels and an MRI with 1 mm voxels
line up through each layer's scale, translate, rotate, shear and affine.
Fusion needs both on one pixel grid, so the functional image is resampled
onto the anatomical grid: for every anatomical pixel, its world position is
looked up in the functional image (linear interpolation, zero outside).

Transforms are homogeneous ``(N + 1, N + 1)`` data-to-world matrices over
the N spatial axes (napari's order: ``affine @ (rotate @ shear @ scale +
translate)``, see :func:`data_to_world`). The work is cut into chunks along
the first axis (one slice, or a block of rows) so that a worker can report
progress and stop between chunks (:func:`iter_resample`); each chunk reads
only the part of the functional image it needs, so a lazy (dask, zarr)
functional volume is never loaded whole. There is no anti-aliasing: a
functional image finer than the anatomical grid is sampled, not averaged
(PET and SPECT are coarser than MRI, the usual case). No Qt and no napari
import here.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import affine_transform

from .generators import run_to_end

#: Most output pixels (per channel) computed in one chunk of :func:`iter_resample`.
CHUNK_PIXELS = 1 << 20

#: Layer properties that place an image in the world, copied to the resampled layer.
SPATIAL = ("scale", "translate", "rotate", "shear", "units", "axis_labels")


def _shear_matrix(shear, ndim: int) -> np.ndarray:
    """napari's shear (upper-triangular values, or a triangular matrix) as an (ndim, ndim) matrix."""
    shear = np.asarray(shear, dtype=float)
    if shear.ndim == 2:
        mat = shear
    else:
        n = int(round((1 + math.sqrt(1 + 8 * shear.size)) / 2))
        mat = np.eye(n)
        mat[np.triu_indices(n, 1)] = shear
    out = np.eye(ndim)
    out[ndim - len(mat) :, ndim - len(mat) :] = mat
    return out


def data_to_world(layer) -> np.ndarray:
    """The ``(N + 1, N + 1)`` data-to-world matrix of a napari layer, from its public properties.

    ``layer.affine.affine_matrix @ [rotate @ shear @ diag(scale) | translate]``,
    the composition napari documents for its layers. Read duck-typed:
    ``scale``, ``translate``, ``rotate`` (a matrix), ``shear`` (upper-triangular
    values or a matrix) and ``affine.affine_matrix``.
    """
    scale = np.asarray(layer.scale, dtype=float)
    n = scale.size
    linear = np.asarray(layer.rotate, dtype=float) @ _shear_matrix(layer.shear, n) @ np.diag(scale)
    physical = np.eye(n + 1)
    physical[:n, :n] = linear
    physical[:n, n] = np.asarray(layer.translate, dtype=float)
    return np.asarray(layer.affine.affine_matrix, dtype=float) @ physical


def _check_affine(matrix, ndim: int, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.shape != (ndim + 1, ndim + 1):
        raise ValueError(f"the {name} transform must be a {ndim + 1}x{ndim + 1} matrix, not shape {m.shape}")
    if not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:ndim, :ndim])) < 1e-12:
        raise ValueError(f"the {name} transform is not invertible")
    return m


def _chunk_rows(shape: tuple[int, ...], chunk_pixels: int) -> int:
    per_row = math.prod(shape[1:])
    return 1 if len(shape) == 3 else max(1, min(shape[0], chunk_pixels // max(per_row, 1)))


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "b":
        return values > 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def iter_resample(
    moving, moving_affine, fixed_shape, fixed_affine, *, rgb: bool = False, chunk_pixels: int = CHUNK_PIXELS
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Resample ``moving`` onto the grid of a fixed image, chunk by chunk.

    ``moving``: the functional image, ``(Y, X)`` or ``(Z, Y, X)`` with a
    colour axis last when ``rgb`` (numpy, or a lazy dask/zarr array of which
    only the needed region is read per chunk). ``moving_affine`` and
    ``fixed_affine``: homogeneous data-to-world matrices of the two images.
    ``fixed_shape``: the spatial shape of the fixed (anatomical) image.

    A generator: yields ``(done, total)`` counted along the first output
    axis after each chunk (a slice of a stack, a block of rows of an image),
    and returns the resampled array: spatial shape ``fixed_shape`` (plus the
    colour axis), ``moving``'s dtype (integers rounded and clipped, bool by
    nearest neighbour), linear interpolation, 0 outside the moving image.
    Stop iterating to cancel. Raises ``ValueError`` for shapes or matrices
    that do not fit. Inputs are never modified.
    """
    job = _Resampling.check(moving, moving_affine, fixed_shape, fixed_affine, rgb)
    shape = job.shape
    out = np.zeros(shape + ((job.channels,) if rgb else ()), dtype=job.dtype)
    rows = _chunk_rows(shape, chunk_pixels)
    total = shape[0]
    for start in range(0, total, rows):
        stop = min(total, start + rows)
        out[start:stop] = job.rows(moving, start, stop)
        yield stop, total
    return out


@dataclass(frozen=True)
class _Resampling:
    """A checked resampling of a moving image onto a fixed grid, computed rows at a time."""

    shape: tuple[int, ...]
    spatial: tuple[int, ...]
    to_moving: np.ndarray
    channels: int | None
    order: int
    dtype: np.dtype

    @classmethod
    def check(cls, moving, moving_affine, fixed_shape, fixed_affine, rgb: bool) -> _Resampling:
        """``ValueError`` (one line) for shapes, types or matrices that do not fit."""
        shape = tuple(int(s) for s in fixed_shape)
        ndim = len(shape)
        mshape = tuple(moving.shape)
        spatial = mshape[:-1] if rgb else mshape
        if len(spatial) != ndim or ndim not in (2, 3):
            raise ValueError(
                f"cannot resample a {len(spatial)}D image {spatial} onto a {ndim}D grid {shape}: "
                "give two images or two stacks"
            )
        if 0 in spatial or 0 in shape:
            raise ValueError(f"cannot resample empty shapes {spatial} -> {shape}")
        dtype = np.dtype(moving.dtype)
        if dtype.kind not in "biuf":
            raise ValueError(f"cannot resample data of type {dtype}")
        to_moving = np.linalg.inv(_check_affine(moving_affine, ndim, "functional")) @ _check_affine(
            fixed_affine, ndim, "anatomical"
        )
        return cls(shape, spatial, to_moving, mshape[-1] if rgb else None, 0 if dtype.kind == "b" else 1, dtype)

    def rows(self, moving, start: int, stop: int) -> np.ndarray:
        return _resample_rows(
            moving, self.to_moving, self.spatial, self.shape, start, stop, self.order, self.channels, self.dtype
        )


class ResampledView:
    """The moving image on the fixed grid as an array-like that resamples the slices asked for.

    What ``dask.array.from_array`` needs (``shape``, ``dtype``, ``ndim``,
    ``__getitem__``), so that a lazy volume on another grid is resampled as
    napari shows it, one slice at a time, reading only the part of the
    moving image each slice sees. Picklable (for dask workers).
    """

    def __init__(self, moving, moving_affine, fixed_shape, fixed_affine, rgb: bool = False):
        self.moving = moving
        self.job = _Resampling.check(moving, moving_affine, fixed_shape, fixed_affine, rgb)
        self.shape = self.job.shape + ((self.job.channels,) if rgb else ())
        self.dtype = self.job.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        import dask

        key = key if isinstance(key, tuple) else (key,)
        first, rest = (key[0] if key else slice(None)), key[1:]
        single = isinstance(first, int | np.integer)
        wanted = range(self.shape[0])[slice(first, first + 1 or None) if single else first]
        low, high = (min(wanted), max(wanted) + 1) if len(wanted) else (0, 0)
        with dask.config.set(scheduler="synchronous"):  # a lazy moving image is read inside this task
            rows = self.job.rows(self.moving, low, high)[[i - low for i in wanted]]
        return rows[(0, *rest)] if single else rows[(slice(None), *rest)]


def _resample_rows(moving, to_moving, spatial, shape, start, stop, order, channels, dtype) -> np.ndarray:
    """Output rows ``start:stop``, reading only the part of ``moving`` that those rows see."""
    ndim = len(shape)
    chunk_shape = (stop - start,) + shape[1:]
    out = np.zeros(chunk_shape + ((channels,) if channels else ()), dtype=dtype)
    # output chunk index -> moving index, as a homogeneous matrix
    offset = np.eye(ndim + 1)
    offset[0, ndim] = start
    matrix = to_moving @ offset
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in chunk_shape], indexing="ij")).reshape(ndim, -1)
    seen = matrix[:ndim, :ndim] @ corners + matrix[:ndim, ndim:]
    low = np.maximum(np.floor(seen.min(axis=1)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(seen.max(axis=1)).astype(int) + 2, spatial)
    if np.any(high <= low):
        return out  # the chunk sees nothing of the moving image: it stays 0
    region = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    shift = np.eye(ndim + 1)
    shift[:ndim, ndim] = -low
    local = shift @ matrix
    part = np.asarray(moving[region]).astype(np.float64)
    planes = [part] if channels is None else [part[..., c] for c in range(channels)]
    for c, plane in enumerate(planes):
        values = affine_transform(plane, local, output_shape=chunk_shape, order=order, mode="constant", cval=0.0)
        target = out if channels is None else out[..., c]
        target[...] = _cast(values, out.dtype)
    return out


def resample(moving, moving_affine, fixed_shape, fixed_affine, *, rgb: bool = False) -> np.ndarray:
    """:func:`iter_resample` run to the end: the resampled array, without progress."""
    return run_to_end(iter_resample(moving, moving_affine, fixed_shape, fixed_affine, rgb=rgb))


def spatial_kwargs(layer) -> dict:
    """A layer's placement in the world as keyword arguments for ``viewer.add_image``.

    ``scale``, ``translate``, ``rotate``, ``shear``, ``affine`` (as a
    matrix), and ``units`` / ``axis_labels`` when the layer has them (units
    as strings). Read duck-typed from a napari layer.
    """
    kwargs = {name: getattr(layer, name) for name in SPATIAL if hasattr(layer, name)}
    kwargs["affine"] = np.asarray(layer.affine.affine_matrix)
    if "units" in kwargs:
        kwargs["units"] = tuple(str(u) for u in kwargs["units"])
    if "axis_labels" in kwargs:
        kwargs["axis_labels"] = tuple(kwargs["axis_labels"])
    return kwargs


def full_resolution(layer):
    """A napari image layer's data at full resolution: the first level of a multiscale layer, else its data.

    Read duck-typed (``data``, ``multiscale``); lazy data stays lazy.
    """
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _spatial_shape(layer) -> tuple[int, ...]:
    shape = tuple(full_resolution(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def iter_resample_layer(functional, anatomical, *, chunk_pixels: int = CHUNK_PIXELS):
    """:func:`iter_resample` for two napari image layers (read duck-typed), for a worker.

    Yields ``(done, total)``; returns ``(data, kwargs)``: the functional
    layer's data on the anatomical grid (full resolution of a multiscale
    layer), and the anatomical layer's :func:`spatial_kwargs` plus ``rgb``
    for the new layer. Neither layer is modified.
    """
    rgb = bool(getattr(functional, "rgb", False))
    data = yield from iter_resample(
        full_resolution(functional),
        data_to_world(functional),
        _spatial_shape(anatomical),
        data_to_world(anatomical),
        rgb=rgb,
        chunk_pixels=chunk_pixels,
    )
    return data, {**spatial_kwargs(anatomical), "rgb": rgb}
