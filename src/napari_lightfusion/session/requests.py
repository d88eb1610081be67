"""A job's request, captured from the session and the viewer on the GUI thread.

:func:`make_request` reads the picked layers (:func:`.layer_io.fusion_inputs`:
what is fused is what is seen), checks them (notifying what is wrong or
what a Fuse will not show) and returns a
:class:`~napari_lightfusion.session.jobs.Request` for the worker, with its
:class:`Origin`: what :mod:`.results` needs to write the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import lazy, roles
from . import layer_io, outputs, pair_notes
from .jobs import Request
from .model import FusionSession, JobKind
from .readouts import unit_of


@dataclass(frozen=True)
class Origin:
    """Where a job's result goes, and how it is named.

    ``inputs``: the (anatomical, functional) layers; ``like``: the layer
    whose grid and place the result takes (the anatomical one); ``names``:
    the inputs' names in the result (:func:`.layer_io.display_names`);
    ``set_key``: the key of its set of layers (:mod:`.outputs`), ``label``
    the set's name; ``kind``: the job; ``lazy``: the inputs are dask, zarr
    or memory-mapped arrays; ``alignment``: the record of an Align of the
    functional layer (None: not aligned); ``clicked``: when the job was
    asked for (``time.perf_counter``).
    """

    inputs: tuple
    like: object
    names: tuple
    set_key: tuple
    label: str
    kind: JobKind
    lazy: bool
    alignment: dict | None
    clicked: float


def slice_on_view(viewer, layer) -> int:
    """The slice of ``layer``'s stack (its first axis) the viewer shows, 0 for a single image."""
    return layer_io.data_index(layer, viewer.dims.point) if len(layer_io.spatial_shape(layer)) == 3 else 0


def make_request(
    viewer, session: FusionSession, kind: JobKind, clicked: float, alignment: dict | None = None
) -> Request | None:
    """The request of a fusion job of ``kind`` (LIVE, FUSE, COMPARE or MAPS), or None when the pair can't be fused.

    LIVE fuses the slice on view; MAPS the result on show again (the slice
    on view when that result is a Live slice); FUSE and COMPARE the whole
    pair, checking whether it is out of register. Maps are computed when a
    map is on show. A missing or unusable pair is notified (Live only says
    it in the status line, without a pile of notifications).
    """
    a, b = session.pair
    live = kind is JobKind.LIVE
    if a is None or b is None or a is b:
        if not live:
            session.say("warning", "pick two different image layers to fuse")
        return None
    problem = layer_io.check_pair(a, b)
    if problem:
        session.status = problem[1]
        if not live:
            session.say("error", problem[1])
        return None
    inputs = layer_io.fusion_inputs(a, b)
    if not live and (note := pair_notes.fuse_note(a, b, inputs)):
        session.say("warning", note)  # too small for some metrics, NaN pixels
    index = slice_on_view(viewer, a)
    result = session.result
    one_slice = live or (kind is JobKind.MAPS and result is not None and result.index is not None)
    key = (
        id(a),
        id(b),
        id(inputs["a"]),
        id(inputs["b"]),
        session.version,
        inputs["a_limits"],
        inputs["b_limits"],
        inputs["a_rgb"],
        inputs["b_rgb"],
        inputs["a_matrix"].tobytes(),
        inputs["b_matrix"].tobytes(),
        None if inputs["b_lut"] is None else inputs["b_lut"].tobytes(),
    )
    names = layer_io.display_names(a, b)
    check = kind in (JobKind.FUSE, JobKind.COMPARE)
    origin = Origin(
        inputs=(a, b),
        like=a,
        names=names,
        set_key=(str(a.unique_id), str(b.unique_id), session.preset, None),
        label=outputs.set_label(*names, session.preset, session.moved_balance()),
        kind=kind,
        lazy=lazy.is_lazy(inputs["a"]) or lazy.is_lazy(inputs["b"]),
        alignment=alignment,
        clicked=clicked,
    )
    return Request(
        inputs,
        session.preset,
        session.device,
        session.channel,
        key,
        index=index if one_slice else None,
        metric_index=index,
        baselines=session.baselines,
        compare=kind is JobKind.COMPARE,
        balance=session.requested_balance(),
        check_alignment=check,
        microscopy=check and roles.is_microscopy(a, b),  # for the check alone: 3 ms a Live step at 512 x 512
        unit=unit_of(b),
        maps=session.maps_needed or kind is JobKind.MAPS,
        origin=origin,
    )
