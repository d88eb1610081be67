"""A job's outcome written into the viewer as the session's result: its layers, the map on show, its status.

A fusion job's outcome comes in two steps: :func:`write_result` once
everything is fused (the layers appear, the status says "metrics follow"),
then :func:`complete` with the metric table, the uptake and the kept
channel maps (and, for Compare, :func:`write_baselines`). The maps a MAPS
job adds are written in the first step and shown in the second: switching
the layers on show redraws the canvas, so neither step holds the GUI
thread long. :func:`show_choice`
shows the map picked, :func:`show_kept_channel` another Map channel from
the kept maps, and :func:`metrics_title` says which slice the metric table
describes.
"""

from __future__ import annotations

import time
from dataclasses import replace

from . import compare, layer_io, outputs
from .jobs import Outcome
from .map_view import make_room, map_limits
from .model import FusionSession, JobKind, ResultSet
from .readouts import uptake_text


def show_choice(viewer, choice: outputs.MapChoice | None, layers: dict) -> None:
    """Show map ``choice`` of the set ``layers`` (or its fused image), its colour bar clear of the image."""
    outputs.show_map(layers, choice)
    if choice is not None and choice.role in layers:
        make_room(viewer, layers[choice.role])


def _where(outcome: Outcome) -> str:
    """What a job fused: "slice 3", "40 slices" or "the image"."""
    if outcome.index is not None:
        return f"slice {outcome.index}"
    return f"{outcome.slices} slices" if outcome.stacked else "the image"


def write_result(viewer, session: FusionSession, outcome: Outcome) -> ResultSet:
    """Write an outcome's result as its set of layers (in place when the same pair and settings made it).

    The result becomes ``session.result``; a MAPS job keeps the layers of
    the result it re-made (a comparison's baselines), and its maps are shown
    by :func:`complete`. The mix weight on
    show gives way to the fused image when the new network has none; a
    result without maps (a map was picked while it was fused) shows its
    fused image until they are computed.
    """
    origin = outcome.request.origin
    if not outcome.weighted and session.map_choice == outputs.WEIGHT_CHOICE:
        session.map_choice = None
    res = outcome.result
    choice = session.map_choice if res.attention is not None else None
    specs = outputs.output_specs(res, origin.like, choice, outcome.map_limits)
    ndim = len(layer_io.spatial_shape(origin.like))
    written = outputs.write_set(
        viewer,
        origin.set_key,
        origin.label,
        origin.names,
        specs,
        origin.like,
        2 if outcome.index is not None else ndim,
        outcome.index,
        outcome.slices,
    )
    if origin.alignment is not None and "fused" in written:
        written["fused"].metadata[outputs.MARK]["alignment"] = origin.alignment
    if res.balance_choice is not None and "fused" in written:
        written["fused"].metadata[outputs.MARK]["balance_chosen"] = res.balance_choice.record()
    before = session.result
    if origin.kind is not JobKind.MAPS:
        show_choice(viewer, choice, written)  # a new set shows the chosen map, with its colour bar
    elif before is not None and before.key == origin.set_key:
        written = {**before.layers, **written}
    metric_index = outcome.index
    if metric_index is None and outcome.stacked:
        metric_index = min(max(outcome.request.metric_index, 0), outcome.slices - 1)
    wall = time.perf_counter() - origin.clicked
    summary = (
        f"Fused {_where(outcome)} with {res.preset or 'custom weights'} on {res.device}: "
        f"{wall:.3f} s from click to layer (network {res.seconds:.3f} s)"
    )
    session.forget_note()
    session.result = ResultSet(
        key=origin.set_key,
        layers=written,
        origin=origin,
        index=outcome.index,
        slices=outcome.slices,
        stacked=outcome.stacked,
        lazy=outcome.lazy,
        maps=res.attention is not None,
        channel=outcome.request.channel,
        weighted=outcome.weighted,
        metric_slice=(ndim, metric_index),
        summary=summary,
    )
    session.status = f"{summary}; metrics follow."
    return session.result


def complete(viewer, session: FusionSession, outcome: Outcome) -> ResultSet:
    """The job is done: its layers (unless written already), metric table, uptake and kept channel maps."""
    result = session.result if outcome.shown else write_result(viewer, session, outcome)
    if outcome.request.origin.kind is JobKind.MAPS:
        show_choice(viewer, session.map_choice if result.maps else None, result.layers)
    session.result = result = replace(result, channel_maps=outcome.channel_maps)
    session.metrics = outcome.table
    session.uptake = uptake_text(outcome)
    done = "." if not outcome.lazy else "; slices are fused as you view them (metrics: the current slice)."
    session.status = f"{result.summary}{done}"
    chosen = outcome.result.balance_choice
    if chosen is not None and session.auto_balance and session.balance is not None:
        session.balance = chosen.balance  # the slider shows the b chosen for this pair
        said = chosen.describe()
        session.status = f"{session.status} {said[0].upper()}{said[1:]}."
    return result


def write_baselines(viewer, session: FusionSession, outcome: Outcome) -> list:
    """Add a comparison's baselines to its set and show the set as a labelled grid; returns the tiles' layers."""
    origin = outcome.request.origin
    ndim = len(layer_io.spatial_shape(origin.like))
    added = outputs.write_set(
        viewer, origin.set_key, origin.label, origin.names, outputs.baseline_specs(outcome.compare), origin.like, ndim
    )
    session.result = replace(session.result, layers={**session.result.layers, **added})
    session.map_choice = None
    show_choice(viewer, None, session.result.layers)
    tiles = compare.grid_layers(origin.inputs, session.result.layers)
    compare.show_grid(viewer, tiles)
    return tiles


def show_kept_channel(viewer, session: FusionSession) -> bool:
    """Write the Map channel's maps of the result on show from its kept every-channel maps (no fusion).

    Returns False when nothing fits: no kept maps (a lazy or a large
    result), the set is gone, or a stack shows another slice than the
    one whose maps were kept.
    """
    result = session.result
    if result is None or result.channel_maps is None:
        return False
    kept, origin = result.channel_maps, result.origin
    layers = outputs.set_layers(viewer, origin.set_key)
    if not layers:
        return False
    if kept.index is not None and layer_io.data_index(origin.like, viewer.dims.point) != kept.index:
        return False
    channel = session.channel
    specs = [
        (role, data, dict(contrast_limits=map_limits(data)))
        for role, data in kept.pick(channel).items()
        if role in layers
    ]
    outputs.write_set(
        viewer, origin.set_key, origin.label, origin.names, specs, origin.like, 2, kept.index, result.slices
    )
    session.result = replace(result, channel=channel)
    what = "the mean of all channels" if channel is None else f"channel {channel}"
    where = (
        "" if kept.index is None else (f" on slice {kept.index} (the other slices keep their maps until the next Fuse)")
    )
    session.status = f"Maps of {what}{where}, from the last result: no new fusion."
    return True


def metrics_title(viewer, ndim: int, index: int | None) -> tuple[str, str]:
    """The metric group's title and tooltip: which slice the numbers are for, and whether it is the one on view.

    ``ndim`` is the anatomical layer's number of spatial axes, ``index`` the
    slice of its stack (its first axis) the table describes, None for a
    single image. The network fuses a stack slice by slice along that axis
    (axial slices for the project's volumes); a view of another plane (dims
    order rolled, or 3D) does not show what the numbers describe, and the
    title says so.
    """
    if index is None:
        return "Metrics (the image)", "Metrics of the fused image and of the baselines"
    axis = viewer.dims.ndim - ndim  # the world axis of the stack's slices
    axial = viewer.dims.ndisplay == 2 and axis not in viewer.dims.displayed
    tip = (
        f"Metrics of axial slice {index}: the network fuses the stack slice by slice along its first "
        "(axial) axis, and the numbers are for that slice"
    )
    if axial:
        return f"Metrics (axial slice {index})", tip
    return (
        f"Metrics (axial slice {index}, not the plane on view)",
        f"{tip}, not for the plane on view: set the view back to axial slices to see it",
    )
