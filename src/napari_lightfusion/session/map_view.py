"""How the dock shows a surprise or attention map: inside the object only, with its contrast from there.

Three things made the maps hard to read (issue 23):

* the background: outside the head the maps are flat but not low (the
  features of a black background are the network's biases), so a map's
  brightest part could be the background, and contrast limits taken over
  the whole image spanned it. :func:`object_mask` keeps the anatomical
  image's object (above :data:`OBJECT_LEVEL`, the metrics' "inside the
  head" rule, with its holes filled) and :func:`masked` makes every other
  pixel NaN, which napari draws transparent: the map shows over the grey
  anatomy inside the object only, and :func:`map_limits` (robust
  percentiles of what is shown) spends the colour map on it;
* the edges: within :attr:`~napari_lightfusion.model.LightFusionNet.maps_radius`
  pixels of the image's edge the convolutions' zero padding reaches the
  maps, a stripe of high surprise along every edge. The network, its
  weights and its fused image stay as they are (it was trained with that
  padding); the maps are not shown in that band;
* the colour bar over the image's corner: :func:`make_room` narrows it and
  fits the view so that the image ends left of it.

A map layer's data is the network's map with NaN where it is not shown.
Every channel's maps of the slice on view are kept (:class:`ChannelMaps`),
so that the Map channel switches without running the network again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_fill_holes

from ..colour import LUMA_WEIGHTS
from ..fusion import FusionPlan
from ..inputs import to_unit
from ..metrics import HOT_SPOT_MRI

#: Anatomical value (0..1) above which a pixel belongs to the object: the metrics' "inside the head" rule.
OBJECT_LEVEL = HOT_SPOT_MRI / 255.0
#: Smallest share of a slice an object must cover; a fainter image shows its maps everywhere (off the edges).
MIN_OBJECT = 0.01
#: Most values of a map looked at for its contrast limits (larger maps, e.g. stacks, are sampled evenly).
LIMIT_SAMPLES = 1_000_000
#: Percentiles of the shown values that bound a map's contrast.
LIMIT_PERCENTILES = (1.0, 99.5)
#: A map's colour bar: width and height, tick length and font size (canvas pixels, points).
COLORBAR = {"size": (14.0, 120.0), "tick_length": 4.0, "font_size": 8.0}
#: Room the colour bar takes at the canvas's right edge (bar, ticks, labels and napari's padding), pixels.
COLORBAR_ROOM = 72.0


def object_mask(anatomical: np.ndarray, band: int) -> np.ndarray:
    """Where the maps of a slice are shown: ``(H, W)`` bool, inside the object and off the edge band.

    ``anatomical`` is the slice as the network saw the anatomical input
    (``(H, W)`` in [0, 1]); ``band`` the pixels along each edge that the
    padding reaches (:attr:`~napari_lightfusion.model.LightFusionNet.maps_radius`).
    An image too small for the band keeps its edges; an object under
    :data:`MIN_OBJECT` of the slice (a faint or empty image) gives way to
    the whole slice.
    """
    inside = binary_fill_holes(np.asarray(anatomical) > OBJECT_LEVEL)
    off_edges = np.ones(inside.shape, bool)
    if band and min(inside.shape) > 2 * band:
        off_edges[:] = False
        off_edges[band:-band, band:-band] = True
    shown = inside & off_edges
    return shown if shown.mean() >= MIN_OBJECT else off_edges


def masked(maps, mask):
    """``maps`` ``(2, ..., H, W)`` (numpy or dask) with NaN where ``mask`` ``(..., H, W)`` is False, float32."""
    nan = np.float32(np.nan)
    if type(maps).__module__.split(".")[0] == "dask":
        import dask.array as da

        return da.where(mask[None], maps, nan).astype(np.float32)
    return np.where(mask[None], maps, nan).astype(np.float32, copy=False)


def given_first(plan) -> np.ndarray:
    """The normalised grey stream ``(Z, H, W)`` of the first image given (the anatomical picker's), as fused."""
    return plan.pair.functional if plan.pair.swapped else plan.pair.anatomical


def shown(result, plan, index: int):
    """Slice ``index``'s 2D ``result`` with its surprise and attention maps as the widget shows them.

    NaN outside the first input's object and in the band along the edges
    that the padding reaches (:func:`object_mask`); the fused image and
    the mix weight are left as they are. ``plan`` is the
    :class:`~napari_lightfusion.fusion.FusionPlan` that made it.
    """
    if result.attention is None:
        return result
    mask = object_mask(given_first(plan)[index], plan.model.maps_radius)
    result.attention = masked(result.attention, mask)
    if result.surprise is not None:
        result.surprise = masked(result.surprise, mask)
    return result


def lazy_object_mask(a, limits, rgb: bool, band: int):
    """:func:`object_mask` of every slice of a lazy anatomical input ``a``, as a dask array (computed per slice).

    ``a`` is the layer's data (a stack, or one image; RGB on the last axis
    when ``rgb``), ``limits`` its contrast limits (None: as
    :func:`~napari_lightfusion.inputs.to_unit` finds them).
    """
    import dask.array as da

    x = a if isinstance(a, da.Array) else da.from_array(a)
    stacked = x.ndim - rgb == 3
    x = x if stacked else x[None]
    x = x.rechunk((1, *(-1,) * (x.ndim - 1)))
    mask = x.map_blocks(
        _mask_block, limits, rgb, band, drop_axis=[3] if rgb else [], dtype=bool, meta=np.empty((0, 0, 0), bool)
    )
    return mask if stacked else mask[0]


def _mask_block(block: np.ndarray, limits, rgb: bool, band: int) -> np.ndarray:
    """The ``(1, H, W)`` mask of one ``(1, H, W[, C])`` block (a slice with nothing finite shows everywhere)."""
    image = block[0, ..., :3] if rgb else block[0]
    try:
        unit = to_unit(image, limits)
    except ValueError:
        return object_mask(np.zeros(image.shape[:2], np.float32), band)[None]
    return object_mask(unit @ LUMA_WEIGHTS.astype(np.float32) if rgb else unit, band)[None]


def map_limits(maps) -> tuple[float, float]:
    """Contrast limits for a map: the 1st to 99.5th percentile of its shown (finite) values, never empty."""
    values = np.asarray(maps, dtype=np.float32).ravel()
    values = values[:: max(1, values.size // LIMIT_SAMPLES)]
    values = values[np.isfinite(values)]
    lo, hi = np.percentile(values, LIMIT_PERCENTILES) if values.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def all_map_limits(result, index: int | None = None) -> dict[str, tuple[float, float]]:
    """``{"surprise:0": (lo, hi), ...}`` of a result's maps (of slice ``index`` of a stack, when given)."""
    out = {}
    for kind in ("surprise", "attention"):
        maps = getattr(result, kind)
        for stream in range(2 if maps is not None else 0):
            data = maps[stream] if index is None else maps[stream][index]
            out[f"{kind}:{stream}"] = map_limits(np.asarray(data))
    return out


#: Largest slice (pixels) whose every-channel maps a result keeps (16 channels x 2 maps x 2 inputs, float32:
#: 256 bytes a pixel, 64 MiB at this size); larger ones re-run the network when the Map channel changes.
CHANNEL_MAP_PIXELS = 512 * 512


@dataclass
class ChannelMaps:
    """Every channel's maps of slice ``index`` (None: a 2D result): ``(2, C, H, W)`` each, inputs in order."""

    index: int | None
    surprise: np.ndarray | None
    attention: np.ndarray
    mask: np.ndarray | None = None  # (H, W): where the maps are shown (:func:`object_mask`)

    def pick(self, channel: int | None) -> dict[str, np.ndarray]:
        """``{"surprise:0": (H, W), ...}``: the mean over channels (``None``) or one channel's maps, as shown."""
        out = {}
        for kind in ("surprise", "attention"):
            maps = getattr(self, kind)
            for stream in range(2 if maps is not None else 0):
                data = maps[stream].mean(axis=0) if channel is None else maps[stream, channel]
                out[f"{kind}:{stream}"] = data if self.mask is None else masked(data[None], self.mask)[0]
        return out


def channel_maps_of(plan: FusionPlan, index: int | None) -> ChannelMaps | None:
    """Every channel's maps of slice ``index`` of ``plan`` (None for a slice too large to keep, or no maps)."""
    from ..engine import channel_maps

    pair = plan.pair
    if not plan.maps or pair.anatomical[0].size > CHANNEL_MAP_PIXELS:
        return None
    k = 0 if index is None else index
    surprise, attention = channel_maps(plan.model, pair.anatomical[k], pair.functional[k], plan.device, plan.balance)
    if pair.swapped:  # the network saw them the other way round: back to the order given
        surprise = None if surprise is None else surprise[::-1]
        attention = attention[::-1]
    return ChannelMaps(index, surprise, attention, object_mask(given_first(plan)[k], plan.model.maps_radius))


def make_room(viewer, layer) -> bool:
    """Give ``layer``'s colour bar its small size and fit the view so that the image ends left of it.

    Only when the whole image is in view (a view zoomed into a detail is
    the user's: it stays) in one 2D canvas (no grid): the image is then
    shrunk and moved just enough to end :data:`COLORBAR_ROOM` pixels short
    of the canvas's right edge. Returns whether the view moved.
    """
    bar = layer.colorbar
    for name, value in COLORBAR.items():
        if getattr(bar, name) != value:
            setattr(bar, name, value)
    height, width = (float(v) for v in viewer.canvas.size)
    grid = getattr(viewer.canvas, "grid", None)
    if viewer.dims.ndisplay != 2 or width <= 2 * COLORBAR_ROOM or (grid is not None and grid.enabled):
        return False
    axes = [axis - (viewer.dims.ndim - layer.ndim) for axis in viewer.dims.displayed]  # the layer's own axes
    if min(axes) < 0:
        return False  # the view shows an axis the layer does not have
    world = np.asarray(layer.extent.world)[:, axes]
    half = np.asarray(layer.extent.step)[axes] / 2.0
    (y0, x0), (y1, x1) = world[0] - half, world[1] + half
    camera = getattr(viewer, "scene", viewer).camera  # viewer.scene from napari 0.9
    cy, cx = camera.center[-2:]
    zoom = camera.zoom
    left, right = width / 2 + (x0 - cx) * zoom, width / 2 + (x1 - cx) * zoom
    top, bottom = height / 2 + (y0 - cy) * zoom, height / 2 + (y1 - cy) * zoom
    if left < -1 or top < -1 or right > width + 1 or bottom > height + 1:
        return False  # zoomed in: the user's view
    bar_bottom = bar.size[1] + 3 * bar.font_size + 10.0  # napari's padding above, half a label below
    if right <= width - COLORBAR_ROOM or top >= bar_bottom:
        return False  # already clear of the bar
    pad = 4.0
    zoom = min(zoom, (width - COLORBAR_ROOM - pad) / max(x1 - x0, 1e-9))
    camera.zoom = zoom
    camera.center = (*camera.center[:-1], x1 - (width / 2 - COLORBAR_ROOM) / zoom)
    return True
