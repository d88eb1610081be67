"""The widget's output layers: named after their inputs, tracked by metadata, never lost.

A fusion writes one *set* of layers (fused image, the four maps,
the mix weight of a network with a blend or mix head, a grey backdrop for
the maps, baselines of a comparison). Every layer of a
set carries ``metadata["lightfusion"] = {"role", "set", "key", "name"}``:
``key`` says which inputs and settings made it (the inputs' napari
``unique_id``, the preset, the balance). Re-fusing with the same key
updates that set in place; any other key adds a new set, so an earlier
result is never overwritten. A layer the user renamed or whose data
someone else changed leaves its set for good (its key is dropped) and is
never written again.

Names follow one rule: what the layer is comes first, then which input
it is about, then the pair and how it was fused, the anatomical input
first: ``"attention · PET · MRI 23 + PET 23 · PET-MRI"``. napari's layer
list elides long names in the middle, so the words that tell two layers
of a set apart stay in view. The fused image is named by the set itself
(``"MRI 23 + PET 23 · PET-MRI"``), a baseline by its method and the pair
(``"laplacian · MRI 23 + PET 23"``), as the Compare tiles show them.
"""

from __future__ import annotations

import uuid
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..resample import spatial_kwargs
from .layer_io import MARK, is_colour

#: Colour maps of the maps: surprise and attention black at 0 (additive over grey); the mix
#: weight diverging, red at 0 (the second input, the functional one) through light grey (an
#: even mix) to blue at 1 (the first, anatomical, input).
MAP_COLORMAPS = {"surprise": "magma", "attention": "inferno", "weight": "RdBu"}
#: What a high value of each map means (tooltips of the "Show map" choice; the weight's names
#: its two inputs, :func:`weight_meaning`).
MAP_MEANING = {
    "surprise": "high = the network could not predict this input's features from their surroundings "
    "(unexpected detail: edges, lesions, uptake)",
    "attention": "high = the network boosts this input's features here, so the fused image takes "
    "more of this input there",
    "weight": "1 = this pixel's value comes from the anatomical image, 0 = from the functional one",
}
#: Opacity of the one map shown over the grey anatomical image.
MAP_OPACITY = 0.7
#: Opacity of the mix weight, drawn over the grey image (not added: its ends are colours, not black).
WEIGHT_OPACITY = 0.6

# whether this module is writing output layers right now (GUI thread only): data events are then ours
_writing = [False]


@dataclass(frozen=True)
class MapChoice:
    """One map to show: ``kind`` "surprise" or "attention" of input ``stream`` (0 anatomical, 1 functional),
    or the mix weight (``kind`` "weight", one map for both inputs: ``stream`` None)."""

    kind: str
    stream: int | None = None

    @property
    def role(self) -> str:
        return self.kind if self.stream is None else f"{self.kind}:{self.stream}"


#: Every choice of the "Show map" box that every result has (None: no map, the fused image).
MAP_CHOICES = (None, *(MapChoice(k, s) for k in ("surprise", "attention") for s in (0, 1)))
#: The choice a result of a network with a blend or mix head adds: its mix weight.
WEIGHT_CHOICE = MapChoice("weight")


def weight_meaning(names: tuple[str, str]) -> str:
    """The tooltip of the mix weight of a fusion of the layers ``names`` (anatomical, functional)."""
    return f"1 = this pixel's value comes from {names[0]}, 0 = from {names[1]} (in between: a mix of both)"


def set_label(a_name: str, b_name: str, preset: str | None, balance: float | str | None = None) -> str:
    """The name of a result: ``"MRI 23 + PET 23 · PET-MRI"`` (``" · b=0.70"`` when balanced, ``" · b=auto"``)."""
    label = f"{a_name} + {b_name} · {preset or 'custom weights'}"
    if balance is None:
        return label
    return f"{label} · b={balance}" if isinstance(balance, str) else f"{label} · b={balance:.2f}"


def stream_names(names: tuple[str, str]) -> tuple[str, str]:
    """What a layer's name calls each input: its name less the words both share (``"MRI 23"`` -> ``"MRI"``).

    The pair's names themselves when that leaves one empty or both alike.
    """
    words = [name.split() for name in names]
    shared = set(words[0]) & set(words[1])
    short = tuple(" ".join(w for w in ws if w not in shared) or name for ws, name in zip(words, names))
    return short if short[0] != short[1] else tuple(names)


def role_name(label: str, role: str, names: tuple[str, str]) -> str:
    """The layer name of ``role`` in the set ``label``: what it is, which input, the set (module docstring)."""
    if role == "fused":
        return label
    kind, _, rest = role.partition(":")
    a, b = stream_names(names)
    if kind == "weight":
        return f"mix weight · {a} 1, {b} 0 · {label}"
    if kind in MAP_COLORMAPS:
        return f"{kind} · {(a, b)[int(rest)]} · {label}"
    if kind == "baseline":  # short enough for a Compare tile; a baseline needs no preset
        return f"{rest} · {names[0]} + {names[1]}"
    return f"grey · {a} · {label}"  # the backdrop of the maps


def info(layer) -> dict | None:
    """The plugin's record of an output layer (None for any other layer)."""
    meta = getattr(layer, "metadata", {}).get(MARK)
    return meta if isinstance(meta, dict) else None


def is_untouched(layer) -> bool:
    """Whether ``layer`` still holds exactly what the plugin wrote, under the name it gave."""
    meta = info(layer)
    if meta is None or meta.get("key") is None:
        return False
    if layer.name != meta["name"] or meta.get("edited"):
        meta["key"] = None  # the user made it theirs: it leaves its set for good
        return False
    return True


def set_layers(viewer, key) -> dict:
    """``{role: layer}`` of the untouched layers of the set made with ``key``."""
    out = {}
    for layer in viewer.layers:
        meta = info(layer)
        if meta is not None and meta.get("key") == key and is_untouched(layer):
            out[meta["role"]] = layer
    return out


def _copy_spatial(layer, like) -> None:
    """Place ``layer`` where ``like`` is (scale, translate, rotate, shear, affine)."""
    for name in ("scale", "translate", "rotate", "shear"):
        if not np.array_equal(getattr(layer, name), getattr(like, name)):  # each change re-slices
            setattr(layer, name, getattr(like, name))
    if not np.array_equal(layer.affine.affine_matrix, like.affine.affine_matrix):
        layer.affine = like.affine.affine_matrix


@contextmanager
def writing():
    """Mark the data events of output layers as the plugin's own while the block runs."""
    before, _writing[0] = _writing[0], True
    try:
        yield
    finally:
        _writing[0] = before


def _watch_edits(layer) -> None:
    """Remember when anyone but this module replaces ``layer``'s data."""
    ref = weakref.ref(layer)

    def on_data(event=None):
        ly = ref()
        if ly is not None and not _writing[0] and info(ly) is not None:
            info(ly)["edited"] = True

    layer.events.data.connect(on_data)


def _add(viewer, key, set_id: str, role: str, name: str, data, like, rgb: bool, style: dict, multiscale=False):
    meta = {MARK: {"role": role, "set": set_id, "key": key, "name": name}}
    layer = viewer.add_image(
        data, name=name, rgb=rgb, metadata=meta, multiscale=multiscale, **spatial_kwargs(like), **style
    )
    meta[MARK]["name"] = layer.name  # napari may have made it unique ("... [1]")
    layer.metadata[MARK]["name"] = layer.name
    _watch_edits(layer)
    return layer


def write_set(
    viewer, key, label: str, names, specs: list, like, grey_ndim: int, index: int | None = None, slices: int = 1
) -> dict:
    """Write output ``specs`` ``(role, data, style)`` as the set ``key``; returns ``{role: layer}``.

    Data with more than ``grey_ndim`` axes is RGB. ``index=None``: each
    spec is the whole result; an untouched layer of the same key and role
    gets the data, name and ``like``'s spatial metadata in place (and the
    set's new ``label``, e.g. after a balance move), else a
    new layer is added. Otherwise each spec is slice ``index`` of a stack
    of ``slices`` (Live), written into a full-size layer allocated once.
    Specs whose role starts with "backdrop" are always whole.
    """
    with writing():
        return _write_set(viewer, key, label, names, specs, like, grey_ndim, index, slices)


def _write_set(viewer, key, label, names, specs, like, grey_ndim, index, slices) -> dict:
    existing = set_layers(viewer, key)
    set_id = next((info(ly)["set"] for ly in existing.values()), uuid.uuid4().hex)
    written = {}
    for role, data, style in specs:
        name = role_name(label, role, names)
        multiscale = bool(style.pop("multiscale", False))
        rgb = bool(style.pop("rgb", False)) if "rgb" in style else (data.ndim > grey_ndim)
        whole = index is None or role == "backdrop"
        layer = existing.get(role)
        shape = None if whole else (slices, *data.shape)
        fits = (
            layer is not None and is_colour(layer) == rgb and not multiscale and not getattr(layer, "multiscale", False)
        )
        if fits:
            fits = layer.data.ndim == (data.ndim if whole else data.ndim + 1) and (whole or layer.data.shape == shape)
        if layer is not None and not fits:
            viewer.layers.remove(layer)
            layer = None
        if layer is None:
            full = data if whole else np.zeros(shape, np.float32)
            layer = _add(viewer, key, set_id, role, name, full, like, rgb, dict(style), multiscale)
        elif whole:
            if layer.data is not data:  # the backdrop holds the input's own array: each write re-slices
                layer.data = data
            _copy_spatial(layer, like)
        if layer.name != name and info(layer)["name"] != name:  # a moved balance renames the set
            layer.name = name
            info(layer)["name"] = layer.name
        if not whole:
            layer.data[index] = data
            layer.refresh()
        limits = style.get("contrast_limits")
        if not rgb and limits is not None and tuple(layer.contrast_limits) != tuple(limits):
            layer.contrast_limits = limits
        written[role] = layer
    return written


def show_map(layers: dict, choice: MapChoice | None) -> None:
    """Show one map (with its colour bar) over the grey anatomical backdrop, or only the fused image.

    ``layers`` is a set's ``{role: layer}``. Baselines keep their visibility.
    """
    for role, layer in layers.items():
        if role == "fused":
            on = choice is None
        elif role == "backdrop":
            on = choice is not None
        elif role.split(":")[0] in MAP_COLORMAPS:
            on = choice is not None and role == choice.role
            if layer.colorbar.visible != on:
                layer.colorbar.visible = on
        else:
            continue
        if layer.visible != on:  # each change re-draws
            layer.visible = on


def output_specs(result, anatomical, choice: MapChoice | None, limits: dict) -> list:
    """``(role, data, style)`` of every output layer of a fusion result.

    The fused image (grey colour map, limits 0..1), a grey backdrop that
    shows the anatomical layer's own data (no copy) under the maps, the
    surprise and attention map of each input (hidden unless ``choice``
    picks it; contrast ``limits[role]``, computed in the worker) and the
    mix weight when the result has one (contrast 0..1: its values mean
    the same in every result). The baselines of a comparison are
    :func:`baseline_specs`.
    """
    fused_style = dict(colormap="gray", contrast_limits=(0.0, 1.0))
    specs = [("fused", result.fused, dict(fused_style, visible=choice is None))]
    if result.attention is not None:
        multiscale = bool(getattr(anatomical, "multiscale", False))
        backdrop = dict(rgb=is_colour(anatomical), visible=choice is not None, multiscale=multiscale)
        if not is_colour(anatomical):
            backdrop.update(colormap="gray", contrast_limits=tuple(anatomical.contrast_limits))
        specs.insert(0, ("backdrop", anatomical.data, backdrop))
    for kind in ("surprise", "attention"):
        maps = getattr(result, kind)
        if maps is None:
            continue
        for stream in (0, 1):
            on = choice == MapChoice(kind, stream)
            style = dict(
                colormap=MAP_COLORMAPS[kind],
                opacity=MAP_OPACITY,
                blending="additive",
                visible=on,
                contrast_limits=limits[f"{kind}:{stream}"],
            )
            specs.insert(-1, (f"{kind}:{stream}", maps[stream], style))
    if result.weight is not None:
        style = dict(
            colormap=MAP_COLORMAPS["weight"],
            opacity=WEIGHT_OPACITY,
            blending="translucent",
            visible=choice == WEIGHT_CHOICE,
            contrast_limits=(0.0, 1.0),
        )
        specs.insert(-1, ("weight", result.weight, style))
    return specs


def baseline_specs(compare: dict) -> list:
    """``(role, data, style)`` of the baselines' results of a comparison (``{method: fused}``)."""
    return [
        (f"baseline:{method}", data, dict(colormap="gray", contrast_limits=(0.0, 1.0)))
        for method, data in compare.items()
    ]
