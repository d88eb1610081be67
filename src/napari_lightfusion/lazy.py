"""Lazy fusion of volumes that do not fit (or need not be) in memory.

:func:`fuse_lazy` turns two stacks backed by dask, zarr or memory-mapped
arrays into a :class:`~napari_lightfusion.fusion.FusionResult` whose
``fused``, ``surprise``, ``attention`` (and ``weight``) are dask arrays with one chunk per
slice. Nothing is fused until a slice is asked for (napari asks for the
slice it shows; :mod:`napari_lightfusion.volumes` writes every slice to
disk); each block reads one slice of each input, normalises it with limits
that hold for the whole volume and runs the network on it through
:func:`napari_lightfusion.fusion.plan_pair`, so a lazily fused slice equals
the same slice of :func:`napari_lightfusion.fuse` on the whole stack (given the
same limits).

The graph holds only plain, picklable values (the
:class:`~napari_lightfusion.fusion.FusionOptions` with the preset name or
weight path, each input's :class:`~napari_lightfusion.inputs.ImageView` with
its limits, the input arrays), so it runs unchanged on dask's
threaded, process or distributed schedulers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .balance_search import AUTO, BalanceChoice
from .fusion import FusionOptions, FusionResult, keyword_options, plan_pair
from .inputs import ImageView, check_shape, default_limits, is_rgb

#: Slices looked at to estimate contrast limits when none are given.
LIMIT_SAMPLES = 8
#: Evenly spaced slices of a lazy stack among which ``balance="auto"`` looks for its hot spots.
AUTO_SAMPLES = 20

#: Fused slices kept so that the fused image and its maps of one slice
#: cost one network run (napari asks for each layer separately).
CACHED_SLICES = 4


def is_lazy(array) -> bool:
    """Whether ``array`` is a dask array, a zarr array or a memory-mapped numpy array."""
    if isinstance(array, np.memmap):
        return True
    module = type(array).__module__ or ""
    return module.split(".")[0] in ("dask", "zarr")


@dataclass(frozen=True)
class SliceSpec:
    """Everything a block needs to fuse one slice: plain values only (it travels to workers).

    ``a_name`` and ``b_name`` are the inputs' dask names; ``options`` name
    the network by preset or by the weight file's resolved path; the views
    hold limits that apply to the whole volume and say whether each input
    is colour.
    """

    a_name: str
    b_name: str
    options: FusionOptions
    a_view: ImageView
    b_view: ImageView


def _as_dask(array, name: str):
    """``array`` as a dask array; a non-array is a ``ValueError`` naming it."""
    import dask.array as da

    if isinstance(array, da.Array):
        return array
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise ValueError(f"{name} is not an array (got {type(array).__name__})")
    return da.from_array(array, chunks=(1,) + tuple(array.shape[1:]) if array.ndim >= 3 else array.shape)


def _as_slices(x, rgb: bool, name: str):
    """``(Z, Y, X, C)`` chunked one slice per block: C is 1 for grey, 3 for colour (alpha dropped)."""
    check_shape(x, name, rgb)
    spatial = x.ndim - (1 if rgb else 0)
    x = x[..., :3] if rgb else x[..., None]
    if spatial == 2:
        x = x[None]
    return x.rechunk((1, -1, -1, -1))


def _finite_range(block: np.ndarray) -> np.ndarray:
    """``(1, 2)``: the finite minimum and maximum of one slice (``inf, -inf`` if none)."""
    values = block[np.isfinite(block)] if block.dtype.kind == "f" else block
    if values.size == 0:
        return np.array([[np.inf, -np.inf]])
    return np.array([[values.min(), values.max()]], dtype=np.float64)


def volume_limits(x, sample: int | None = LIMIT_SAMPLES, name: str = "image") -> tuple[float, float]:
    """The limits :func:`napari_lightfusion.inputs.to_unit` would use for the whole of ``x``.

    ``x`` is a ``(Z, Y, X, C)`` dask array one slice per chunk (as
    :func:`fuse_lazy` makes it). ``sample=None`` scans every slice (exact,
    one slice in memory per dask worker); an integer looks at that many
    evenly spaced slices only (an estimate: a slice outside it that is
    brighter or darker is clipped). bool and uint8 need no scan.
    """
    import dask.array as da

    if x.dtype == bool or x.dtype == np.uint8:
        return default_limits(x.dtype, 0, 0)
    z = x.shape[0]
    if sample is not None and sample < z:
        x = x[np.unique(np.linspace(0, z - 1, max(1, sample)).round().astype(int))]
    ranges = da.map_blocks(
        _finite_range, x, chunks=(1, 2), drop_axis=[2, 3], dtype=np.float64, meta=np.empty((0, 0))
    ).compute()
    low, high = float(ranges[:, 0].min()), float(ranges[:, 1].max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} has no finite values (all NaN or infinite)")
    return default_limits(x.dtype, low, high)


def _slice_image(block: np.ndarray, rgb: bool, limits: tuple[float, float]) -> np.ndarray:
    """One input slice from its ``(1, Y, X, C)`` block; a slice with nothing finite becomes the low limit."""
    image = block[0] if rgb else block[0, ..., 0]
    if image.dtype.kind == "f" and not np.isfinite(image).any():
        image = np.full(image.shape, limits[0], np.float64)
    return image


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def fuse_slice(spec: SliceSpec, z: int, a_block: np.ndarray, b_block: np.ndarray) -> FusionResult:
    """Fuse slice ``z`` (its two ``(1, Y, X, C)`` blocks) as ``spec`` says; the result is 2D.

    When the maps are wanted the last few results are kept, so the fused
    slice and its maps cost one run of the network.
    """
    key = (spec, int(z))
    if spec.options.maps:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    a_view, b_view = spec.a_view, spec.b_view
    a, b = _slice_image(a_block, a_view.rgb, a_view.limits), _slice_image(b_block, b_view.rgb, b_view.limits)
    result = plan_pair(a, b, spec.options, a_view, b_view).run_slice(0)
    if spec.options.maps:
        with _cache_lock:
            _cache[key] = result
            while len(_cache) > CACHED_SLICES:
                _cache.popitem(last=False)
    return result


def _fused_block(z, a_block, b_block, spec: SliceSpec) -> np.ndarray:
    return fuse_slice(spec, z[0], a_block, b_block).fused[None]


def _map_block(z, a_block, b_block, spec: SliceSpec, which: str) -> np.ndarray:
    return getattr(fuse_slice(spec, z[0], a_block, b_block), which)[:, None]


def _weight_block(z, a_block, b_block, spec: SliceSpec) -> np.ndarray:
    return fuse_slice(spec, z[0], a_block, b_block).weight[None]


def fuse_lazy(
    a, b, preset: str | None = "PET-MRI", device: str = "auto", *, sample: int | None = LIMIT_SAMPLES, **kwargs
) -> FusionResult:
    """Fuse two stacks lazily: the result's arrays are dask arrays, one chunk per slice.

    ``a`` and ``b``: dask, zarr or memory-mapped arrays (numpy works too) of
    the same spatial shape ``(Z, Y, X)`` (or ``(Y, X)``), grey or RGB(A) on
    the last axis, as :func:`napari_lightfusion.fuse` takes them, and
    its keyword arguments (``weights``, ``channel``, ``balance``, ``maps``,
    ``a_rgb``/``b_rgb``, ...) but ``sample``.
    ``fused`` is ``(Z, Y, X)`` float32, or ``(Z, Y, X, 3)`` when either
    input is colour; ``surprise`` and ``attention`` are ``(2, Z, Y, X)`` in
    the order the inputs were given, ``weight`` (the mix weight of a blend
    or mix head, see :class:`~napari_lightfusion.fusion.FusionResult`)
    ``(Z, Y, X)`` (``None`` unless ``maps=True``; ``surprise`` and
    ``weight`` are ``None`` too for networks without them).

    Contrast limits: ``a_limits``/``b_limits`` when given (the widget passes
    each layer's contrast limits); otherwise each input's range as
    :func:`napari_lightfusion.inputs.to_unit` defines it, *estimated* from
    ``sample`` evenly spaced slices (``sample=None``: every slice, exact,
    read one slice at a time). ``threads``: ONNX Runtime threads per
    slice (1 when dask runs several slices at once). Only slice 0 is read
    here, to check the pair, preset, device and channel (``ValueError``,
    one line, as :func:`napari_lightfusion.fuse` raises them).
    """
    return fuse_pair_lazy(a, b, *keyword_options(preset, device, **kwargs), sample=sample)


def fuse_pair_lazy(
    a, b, options: FusionOptions, a_view: ImageView, b_view: ImageView, sample: int | None = LIMIT_SAMPLES
) -> FusionResult:
    """:func:`fuse_lazy` with its arguments as the options and the two images' views."""
    import dask.array as da
    from dask.base import tokenize

    start = time.perf_counter()
    a, b = _as_dask(a, "first image"), _as_dask(b, "second image")
    rgb = (is_rgb(a, a_view.rgb), is_rgb(b, b_view.rgb))
    xa, xb = _as_slices(a, rgb[0], "first image"), _as_slices(b, rgb[1], "second image")
    stacked = a.ndim - rgb[0] == 3
    if (b.ndim - rgb[1] == 3) != stacked:
        raise ValueError(
            f"the images differ in dimensionality: {a.shape} and {b.shape}; "
            "fuse an image with an image or a stack with a stack"
        )
    if xa.shape[:3] != xb.shape[:3]:
        shape_a, shape_b = xa.shape[1 - stacked : 3], xb.shape[1 - stacked : 3]
        raise ValueError(f"the images differ in shape: {shape_a} and {shape_b}; resample one onto the other")
    given = ((a_view, xa, "first image"), (b_view, xb, "second image"))
    limits = [view.limits if view.limits is not None else volume_limits(x, sample, name) for view, x, name in given]
    views = [ImageView(tuple(float(v) for v in lim), colour) for lim, colour in zip(limits, rgb)]
    choice = None
    if options.balance == AUTO:
        choice = _auto_balance(xa, xb, rgb, views, options)
        options = replace(options, balance=choice.balance)
    check = plan_pair(
        _slice_image(np.asarray(xa[:1]), rgb[0], views[0].limits),
        _slice_image(np.asarray(xb[:1]), rgb[1], views[1].limits),
        options,
        *views,
    )
    weights = None if options.weights is None else Path(options.weights).resolve()
    named = replace(options, preset=None if weights is not None else options.preset, weights=weights)
    plain = replace(named, device=str(options.device), maps=bool(options.maps), threads=options.threads or None)
    spec = SliceSpec(xa.name, xb.name, plain, *views)
    maps = plain.maps
    token = tokenize(spec)
    zs = da.arange(xa.shape[0], chunks=1)
    blocks = (zs, "z", xa, "zyxa", xb, "zyxb")  # the slice numbers and both inputs, a block a slice
    colour = rgb[0] or rgb[1]
    fused = da.blockwise(
        _fused_block,
        "zyxc" if colour else "zyx",
        *blocks,
        new_axes={"c": 3} if colour else None,
        name=f"lightfusion-fused-{token}",
        dtype=np.float32,
        meta=np.empty((0,) * (4 if colour else 3), np.float32),
        concatenate=True,
        spec=spec,
    )

    def a_map(which: str):
        return da.blockwise(
            _map_block,
            "mzyx",
            *blocks,
            new_axes={"m": 2},
            name=f"lightfusion-{which}-{token}",
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), np.float32),
            concatenate=True,
            spec=spec,
            which=which,
        )

    surprise = a_map("surprise") if maps and check.model.config.attention == "pca" else None
    attention = a_map("attention") if maps else None
    weight = None
    if maps and check.model.has_weight:
        weight = da.blockwise(
            _weight_block,
            "zyx",
            *blocks,
            name=f"lightfusion-weight-{token}",
            dtype=np.float32,
            meta=np.empty((0, 0, 0), np.float32),
            concatenate=True,
            spec=spec,
        )
    if not stacked:
        fused = fused[0]
        surprise = None if surprise is None else surprise[:, 0]
        attention = None if attention is None else attention[:, 0]
        weight = None if weight is None else weight[0]
    return FusionResult(
        fused=fused,
        surprise=surprise,
        attention=attention,
        seconds=time.perf_counter() - start,
        device=str(check.device),
        preset=check.preset,
        weight=weight,
        balance_choice=choice,
    )


def _auto_balance(xa, xb, rgb, views, options: FusionOptions) -> BalanceChoice:
    """``balance="auto"`` for a lazy stack: chosen on :data:`AUTO_SAMPLES` evenly spaced slices, read once.

    :func:`~napari_lightfusion.balance_search.choose_balance` then fuses
    the ones among them with the largest hot spots, so the whole stack is
    never read for it.
    """
    import dask

    z = xa.shape[0]
    picks = np.unique(np.linspace(0, z - 1, min(z, AUTO_SAMPLES)).round().astype(int))
    blocks_a, blocks_b = dask.compute(xa[picks], xb[picks])
    a = np.stack([_slice_image(blocks_a[i : i + 1], rgb[0], views[0].limits) for i in range(len(picks))])
    b = np.stack([_slice_image(blocks_b[i : i + 1], rgb[1], views[1].limits) for i in range(len(picks))])
    choice = plan_pair(a, b, options, *views).choice
    return replace(choice, slices=tuple(int(picks[k]) for k in choice.slices))
