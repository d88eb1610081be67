"""The napari-layer side of the widget: reading inputs, writing outputs, resampling.

No Qt here. Functions take napari layers (or, for the pure ones, numpy
arrays) and never modify an input layer: outputs always go to layers of
their own, marked with ``metadata["lightfusion"]`` so that the widget's
pickers can leave them out.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image
from skimage.transform import resize

#: Name of the fused output layer.
FUSED = "LightFusion fused"
#: Key in ``layer.metadata`` that marks a layer this plugin wrote.
MARK = "lightfusion"
#: Colour maps of the per-input maps.
MAP_COLORMAPS = {"surprise": "magma", "attention": "viridis"}
#: Spatial properties copied from the first input to every output layer.
SPATIAL = ("scale", "translate", "rotate", "shear", "units", "axis_labels")


def is_output(layer) -> bool:
    """Whether ``layer`` was written by this plugin (fused, maps, baselines)."""
    return MARK in getattr(layer, "metadata", {})


def is_colour(layer) -> bool:
    """Whether an image layer shows colour (RGB/RGBA data)."""
    return bool(getattr(layer, "rgb", False))


def image_layers(layers) -> list:
    """The image layers a user can fuse: napari Image layers not written by us."""
    return [ly for ly in layers if isinstance(ly, Image) and not is_output(ly)]


def default_pair(layers) -> tuple:
    """Sensible (anatomical, functional) defaults among ``layers``.

    Anatomical: the first grey layer (else the first layer). Functional: a
    colour layer when there is one, else another grey layer; layers of the
    anatomical layer's shape first, then of its dimensionality.
    """
    cands = image_layers(layers)
    if not cands:
        return None, None
    first = next((ly for ly in cands if not is_colour(ly)), cands[0])
    shape = spatial_shape(first)

    def rank(ly):
        other = spatial_shape(ly)
        return (other != shape, len(other) != len(shape), not is_colour(ly))

    others = sorted((ly for ly in cands if ly is not first), key=rank)
    return first, (others[0] if others else None)


def guess_preset(anatomical, functional) -> str:
    """The preset that fits a pair: colour functional -> PET-MRI (SPECT when named so), grey -> CT-MRI."""
    names = " ".join(ly.name.lower() for ly in (anatomical, functional) if ly is not None)
    if "spect" in names:
        return "SPECT-MRI"
    if any(ly is not None and is_colour(ly) for ly in (anatomical, functional)):
        return "PET-MRI"
    return "CT-MRI"


def spatial_shape(layer) -> tuple[int, ...]:
    """Shape of a layer's data without the colour axis."""
    shape = tuple(layer.data.shape)
    return shape[:-1] if is_colour(layer) else shape


def check_pair(a, b) -> tuple[str, str] | None:
    """``("dims"|"shape", message)`` when two layers cannot be fused as they are, else None."""
    sa, sb = spatial_shape(a), spatial_shape(b)
    if len(sa) != len(sb):
        return "dims", (
            f"'{a.name}' is {len(sa)}D {sa} and '{b.name}' is {len(sb)}D {sb}: "
            "fuse an image with an image or a stack with a stack"
        )
    if sa != sb:
        return "shape", (
            f"'{a.name}' {sa} and '{b.name}' {sb} differ in shape: "
            f"use 'Resample' to put '{b.name}' onto the grid of '{a.name}'"
        )
    return None


def fusion_inputs(a, b) -> dict:
    """What ``plan_fusion`` needs from two layers: data, contrast limits, colour flags.

    What is fused is what is seen: grey layers pass their contrast limits,
    colour layers none (their values are shown as they are).
    """
    out = {}
    for key, layer in (("a", a), ("b", b)):
        colour = is_colour(layer)
        # the worker thread turns lazy (dask, zarr) data into numpy, not the GUI thread
        out[key] = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        out[f"{key}_limits"] = None if colour else tuple(float(v) for v in layer.contrast_limits)
        out[f"{key}_rgb"] = colour
    return out


def data_index(layer, point) -> int:
    """Index along the first (slice) axis of ``layer``'s data at world ``point``."""
    z = layer.world_to_data(point)[0]
    return int(np.clip(round(float(z)), 0, layer.data.shape[0] - 1))


def spatial_kwargs(layer) -> dict:
    """The spatial metadata of ``layer`` as keyword arguments for a new layer."""
    kwargs = {name: getattr(layer, name) for name in SPATIAL if hasattr(layer, name)}
    kwargs["affine"] = layer.affine.affine_matrix
    if "units" in kwargs:
        kwargs["units"] = tuple(str(u) for u in layer.units)
    return kwargs


def resample(data: np.ndarray, shape: tuple[int, ...], rgb: bool = False) -> np.ndarray:
    """``data`` resampled (linear, anti-aliased when shrinking) to spatial ``shape``.

    The colour axis of an RGB image is kept; the dtype is kept (integers are
    rounded and clipped to their range). Pure: ``data`` is not modified.
    """
    data = np.asarray(data)
    target = tuple(shape) + ((data.shape[-1],) if rgb else ())
    if len(target) != data.ndim:
        raise ValueError(f"cannot resample shape {data.shape} to {tuple(shape)}")
    shrinking = any(t < s for t, s in zip(target, data.shape))
    out = resize(
        data.astype(np.float64), target, order=0 if data.dtype == bool else 1,
        preserve_range=True, anti_aliasing=shrinking and data.dtype != bool,
    )
    if data.dtype == bool:
        return out > 0.5
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(data.dtype)
    return out.astype(data.dtype)


def add_resampled(viewer, target, layer):
    """Add ``layer`` resampled onto ``target``'s grid as a NEW layer "<name> resampled"."""
    data = resample(layer.data, spatial_shape(target), is_colour(layer))
    kwargs = dict(name=f"{layer.name} resampled", rgb=is_colour(layer), opacity=layer.opacity,
                  blending=layer.blending, **spatial_kwargs(target))
    if not is_colour(layer):
        kwargs.update(colormap=layer.colormap, contrast_limits=layer.contrast_limits)
    return viewer.add_image(data, **kwargs)


def find_output(viewer, role: str):
    """The layer this plugin wrote for ``role`` (e.g. "fused", "attention:0"), or None."""
    for layer in viewer.layers:
        if getattr(layer, "metadata", {}).get(MARK) == role:
            return layer
    return None


def upsert_image(viewer, role: str, name: str, data: np.ndarray, like, rgb: bool = False, **kwargs):
    """Show ``data`` as the output ``role``: update its layer in place, or add one.

    Outputs are found by their metadata mark, not their name, so re-running
    never piles up "fused [1]" layers. A layer whose colour-ness or
    dimensionality no longer fits is replaced (napari cannot change ``rgb``
    of a layer). New layers copy ``like``'s spatial metadata.
    """
    layer = find_output(viewer, role)
    if layer is not None:
        if is_colour(layer) == rgb and layer.data.ndim == data.ndim:
            layer.data = data
            layer.name = name
            if not rgb and "contrast_limits" in kwargs:
                layer.contrast_limits = kwargs["contrast_limits"]
            return layer
        viewer.layers.remove(layer)
    return viewer.add_image(data, name=name, rgb=rgb, metadata={MARK: role},
                            **spatial_kwargs(like), **kwargs)


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def order_for_grid(viewer, roles: list[str]) -> None:
    """Put the layers of ``roles`` just above the fused layer, so grid mode shows them next to it."""
    fused = find_output(viewer, "fused")
    if fused is None:
        return
    for offset, role in enumerate(roles, start=1):
        layer = find_output(viewer, role)
        if layer is not None:
            # napari's move lands at ``dest`` going down the list, at ``dest - 1`` going up
            src, dest = viewer.layers.index(layer), viewer.layers.index(fused) + offset
            if src != dest:
                viewer.layers.move(src, dest)


def write_slice(layer, index: int, data: np.ndarray, limits: tuple[float, float] | None = None) -> None:
    """Write one complete slice into an already complete stack layer and redraw it."""
    layer.data[index] = data
    if limits is not None:
        layer.contrast_limits = limits
    layer.refresh()


def map_outputs(a_name: str, b_name: str, with_surprise: bool = True) -> list[tuple[str, str, str, int]]:
    """``(role, layer name, kind, stream)`` of the overlay layers of an input pair."""
    kinds = ("surprise", "attention") if with_surprise else ("attention",)
    return [(f"{k}:{i}", f"{n} {k}", k, i) for k in kinds for i, n in enumerate((a_name, b_name))]


def output_specs(result, names: tuple[str, str], compare: dict, overlays_visible: bool) -> list:
    """``(role, layer name, data, style)`` of every output layer of a fusion result.

    The fused image (grey colour map, limits 0..1), the surprise and
    attention map of each input (``"<input name> surprise"``, magma /
    viridis, half opacity, additive over the fused image) and the
    baselines' results of a comparison (``"<method> baseline"``).
    """
    fused_style = dict(colormap="gray", contrast_limits=(0.0, 1.0))
    specs = [("fused", FUSED, result.fused, fused_style)]
    for role, name, kind, stream in map_outputs(*names, result.surprise is not None):
        data = getattr(result, kind)[stream]
        style = dict(colormap=MAP_COLORMAPS[kind], opacity=0.5, blending="additive",
                     visible=overlays_visible, contrast_limits=map_limits(data))
        specs.append((role, name, data, style))
    for method, data in compare.items():
        specs.append((f"baseline:{method}", f"{method} baseline", data, fused_style))
    return specs


def show_outputs(viewer, specs: list, like, grey_ndim: int, index: int | None = None, slices: int = 1) -> None:
    """Write output ``specs`` to the viewer; data with more than ``grey_ndim`` axes is RGB.

    ``index=None``: each spec is the whole result and replaces its layer's
    data (or adds the layer). Otherwise each spec is slice ``index`` of a
    stack of ``slices``: it is written into a full-size layer, allocated
    (zeros) once, so the user can scroll through what Live has fused.
    """
    for role, name, data, style in specs:
        rgb = data.ndim > grey_ndim
        if index is None:
            upsert_image(viewer, role, name, data, like, rgb=rgb, **style)
            continue
        full = (slices, *data.shape)
        layer = find_output(viewer, role)
        if layer is None or layer.data.shape != full:
            layer = upsert_image(viewer, role, name, np.zeros(full, np.float32), like, rgb=rgb, **style)
        write_slice(layer, index, data, None if rgb else style["contrast_limits"])


def map_limits(maps: np.ndarray) -> tuple[float, float]:
    """Contrast limits for a map: its 1st to 99.5th percentile (never empty)."""
    lo, hi = np.percentile(maps, [1.0, 99.5]) if maps.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1e-6)
