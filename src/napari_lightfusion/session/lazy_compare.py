"""The metric table and Compare for a lazy volume: the current slice now, everything else lazily.

:func:`~napari_lightfusion.session.jobs.run_lazy` fuses a lazy
(dask, zarr, memory-mapped) pair with :func:`napari_lightfusion.lazy.fuse_lazy`:
napari computes the slices it shows. The metric table needs one slice at
once: :func:`slice_plan` prepares the current slice with the contrast
limits the lazy fusion uses, and :func:`slice_result` takes that slice's
fused image from the lazy result, which leaves it in the lazy fusion's
cache (napari then shows it without running the network again). Compare's
baselines stay lazy (:func:`lazy_baseline`), one slice at a time, so that
the grid follows the slider like the fused image.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..baselines import fuse_baseline
from ..fusion import FusionOptions, FusionPlan, FusionResult, plan_pair
from ..inputs import ImageView, prepare_pair
from .map_view import lazy_object_mask, masked


def _readable(image, limits) -> np.ndarray:
    """One slice as numpy; a float slice with nothing finite becomes its low limit, as the lazy fusion reads it."""
    image = np.asarray(image)
    if image.dtype.kind == "f" and not np.isfinite(image).any():
        return np.full(image.shape, 0.0 if limits is None else limits[0], np.float64)
    return image


def slice_plan(a, b, options: FusionOptions, views: tuple[ImageView, ImageView], index: int | None) -> FusionPlan:
    """A plan of slice ``index`` (None: a single image) of a displayed lazy pair (``as_displayed``) seen as ``views``.

    It normalises the slice with the layers' contrast limits, as the lazy
    fusion does (a colour layer, which has none, by its type or its own
    range).
    """
    pick = (lambda x: x) if index is None else (lambda x: x[index])  # noqa: E731
    a_view, b_view = views
    return plan_pair(_readable(pick(a), a_view.limits), _readable(pick(b), b_view.limits), options, a_view, b_view)


def slice_result(result: FusionResult, index: int | None) -> FusionResult:
    """Slice ``index`` of a lazy result's fused image, computed now (its time is the slice's fusion)."""
    start = time.perf_counter()
    fused = np.asarray(result.fused if index is None else result.fused[index])
    return FusionResult(fused, None, None, time.perf_counter() - start, result.device, result.preset)


def shown_lazily(result: FusionResult, a, a_view: ImageView, band: int) -> FusionResult:
    """A lazy result whose surprise and attention maps are NaN off the object of its first input ``a`` (still lazy)."""
    if result.attention is None:
        return result
    mask = lazy_object_mask(a, a_view.limits, bool(a_view.rgb), band)
    surprise = None if result.surprise is None else masked(result.surprise, mask)
    return replace(result, surprise=surprise, attention=masked(result.attention, mask))


def pair_baseline(pair, name: str, pick) -> np.ndarray:
    """Baseline ``name`` of the slices ``pick`` (an index or a slice) of a prepared pair's normalised streams."""
    second = pair.colour if pair.colour is not None else pair.functional
    return fuse_baseline(name, pair.anatomical[pick], second[pick], a_rgb=False, b_rgb=pair.colour is not None)


def _slices(x, rgb: bool):
    """``(Z, Y, X, C)`` one slice per chunk: C is 1 for grey, 3 for colour (alpha dropped)."""
    import dask.array as da

    x = x if isinstance(x, da.Array) else da.from_array(x)
    x = x[..., :3] if rgb else x[..., None]
    return x.rechunk((1, -1, -1, -1))


def _baseline_block(a_block, b_block, method: str, views: tuple[ImageView, ImageView]) -> np.ndarray:
    """Baseline ``method`` of one slice (two ``(1, Y, X, C)`` blocks): ``(1, Y, X[, 3])`` float32."""
    a_view, b_view = views
    a = _readable(a_block[0] if a_view.rgb else a_block[0, ..., 0], a_view.limits)
    b = _readable(b_block[0] if b_view.rgb else b_block[0, ..., 0], b_view.limits)
    pair = prepare_pair(a, b, a_view.limits, b_view.limits, a_view.rgb, b_view.rgb)
    return np.asarray(pair_baseline(pair, method, 0), np.float32)[None]


def lazy_baseline(a, b, views: tuple[ImageView, ImageView], method: str):
    """Baseline ``method`` of a displayed lazy stack pair seen as ``views``: a dask array computed per slice.

    Each slice is normalised as the network's is (:func:`slice_plan`) and
    fused as :func:`~napari_lightfusion.session.jobs.baseline_fused` fuses it:
    grey ``(Z, Y, X)``, or ``(Z, Y, X, 3)`` when either input is colour.
    """
    import dask.array as da

    views = tuple(replace(view, rgb=bool(view.rgb)) for view in views)
    colour = views[0].rgb or views[1].rgb
    return da.blockwise(
        _baseline_block,
        "zyxc" if colour else "zyx",
        _slices(a, views[0].rgb),
        "zyxa",
        _slices(b, views[1].rgb),
        "zyxb",
        new_axes={"c": 3} if colour else None,
        dtype=np.float32,
        concatenate=True,
        meta=np.empty((0,) * (4 if colour else 3), np.float32),
        method=method,
        views=views,
    )
