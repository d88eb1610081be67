"""Compare: the inputs, the fused image and the baselines side by side, labelled, and as one figure.

:func:`show_grid` puts a result's layers next to each other in
napari's grid and labels every tile with its layer name (``layer.name_overlay``).
:func:`tiles` renders what each tile shows (the current slice, through the
layer's contrast limits and colour map) for the exported figure.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..resample import full_resolution
from .layer_io import data_index, display_name, grid_of, is_colour, spatial_shape


def grid_layers(inputs: tuple, written: dict) -> list:
    """The layers of a comparison, in tile order: the inputs, the fused image, the baselines."""
    out = [ly for ly in inputs if ly is not None]
    out += [written[role] for role in written if role == "fused"]
    out += [written[role] for role in written if role.startswith("baseline:")]
    return out


def show_grid(viewer, layers: list) -> None:
    """Show ``layers`` (and only them) as labelled tiles of napari's grid.

    The caller resets the view once the canvas has laid out the grid's
    viewboxes (napari fits the view to them).

    Every other visible layer is hidden (maps, the backdrop, other results,
    other pairs' inputs: each would be an unlabelled tile); the layers that
    are not the plugin's are shown again when the grid is switched off.
    An input of ``layers`` keeps its visibility, so a hidden input simply
    leaves no tile. The inputs' tiles come in the order given (the
    anatomical one first, as in the exported figure): an anatomical layer
    above the functional one in the layer list is moved just below it.
    """
    from .outputs import info

    keep = {id(ly) for ly in layers}
    others = []
    for layer in viewer.layers:
        if id(layer) not in keep and layer.visible:
            layer.visible = False
            if info(layer) is None:
                others.append(layer)
    # the grid reads the list bottom-up: the inputs in order, then our tiles at the top in order
    inputs = [ly for ly in layers if info(ly) is None]
    for first, second in zip(inputs, inputs[1:]):
        at, below = viewer.layers.index(first), viewer.layers.index(second)
        if at > below:
            viewer.layers.move(at, below)
    for layer in layers:
        if info(layer) is not None:
            viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    for layer in layers:
        if info(layer) is not None:
            layer.visible = True
        layer.name_overlay.visible = True
    grid = grid_of(viewer)
    grid.stride = 1
    grid.enabled = True
    unlabel_when_grid_ends(viewer, layers, others)


#: Font size (points) of a tile label when its name fits the tile; smallest size a label gets to fit.
LABEL_SIZE, SMALLEST_LABEL = 10.0, 6.0
#: How much wider napari's canvas draws a label than Qt measures it at the same point size.
CANVAS_TEXT_SCALE = 1.5


def fit_labels(layers: list, tile_width: float, text_width) -> float:
    """Shrink the tile labels so that the longest layer name fits a tile ``tile_width`` pixels wide.

    ``text_width(text, points)`` measures a text in pixels (Qt's font
    metrics). Returns the font size given to every label: :data:`LABEL_SIZE`
    when the names fit, else smaller, never below :data:`SMALLEST_LABEL`.
    """
    widest = max((text_width(ly.name, LABEL_SIZE) for ly in layers), default=0.0) * CANVAS_TEXT_SCALE
    room = 0.92 * tile_width  # the label starts a little in from the tile's edge
    size = LABEL_SIZE if widest <= room else max(SMALLEST_LABEL, LABEL_SIZE * room / widest)
    for layer in layers:
        layer.name_overlay.font_size = size
    return size


def unlabel_when_grid_ends(viewer, layers: list, hidden: list = ()) -> None:
    """Once napari's grid is switched off: hide the tile labels of ``layers`` (they would pile up)
    and show the ``hidden`` layers again."""
    grid = grid_of(viewer)
    labelled = [weakref.ref(layer) for layer in layers]
    to_show = [weakref.ref(layer) for layer in hidden]

    def on_enabled(event=None):
        if not grid.enabled:
            grid.events.enabled.disconnect(on_enabled)
            for ref in labelled:
                if (layer := ref()) is not None:
                    layer.name_overlay.visible = False
                    layer.name_overlay.font_size = LABEL_SIZE
            for ref in to_show:
                if (layer := ref()) is not None:
                    layer.visible = True

    grid.events.enabled.connect(on_enabled)


def tile_image(layer, point) -> np.ndarray:
    """What ``layer`` shows at world ``point``: an RGB uint8 image of its current 2D slice.

    Grey data goes through the layer's contrast limits and colour map;
    colour data is shown as it is (floats in [0, 1], integers by their
    range). The layer is not modified.
    """
    data = full_resolution(layer)
    if len(spatial_shape(layer)) == 3:
        data = data[data_index(layer, point)]
    data = np.asarray(data)
    if is_colour(layer):
        rgb = data[..., :3].astype(np.float64)
        if data.dtype.kind in "iu":
            rgb = rgb / np.iinfo(data.dtype).max
        return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    lo, hi = layer.contrast_limits
    scaled = np.clip((data.astype(np.float64) - lo) / ((hi - lo) or 1.0), 0, 1)
    rgba = layer.colormap.map(scaled.ravel()).reshape(*scaled.shape, 4)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def tile_label(layer) -> str:
    """A short label for a figure tile: the input's name, "LightFusionNet · <preset>" or the baseline's method."""
    from .jobs import NETWORK
    from .outputs import info

    meta = info(layer)
    if meta is None:
        return display_name(layer)
    kind, _, method = meta["role"].partition(":")
    if kind == "baseline":
        return method
    preset = meta["key"][2] if meta.get("key") else None
    return f"{NETWORK} · {preset}" if kind == "fused" and preset else layer.name


def tiles(viewer, layers: list) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB image)`` of each tile of a comparison, as :func:`tile_image` renders it."""
    point = viewer.dims.point
    return [(layer.name, tile_image(layer, point)) for layer in layers]
