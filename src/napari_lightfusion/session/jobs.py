"""What the dock computes off the GUI thread: fusion jobs, metric tables, baselines.

The tables as text (TSV, CSV) are in :mod:`.table_text`, the network's
warm-up in :mod:`.warm_up`.

:mod:`.requests` captures a :class:`Request` on the GUI thread and the
widget runs :func:`run_request` in a napari ``thread_worker``; the generator yields
once per fused slice (progress, and the points where Cancel can stop it)
and returns an :class:`Outcome` that the widget turns into layers and a
table. A job yields its :class:`Outcome` as soon as everything is fused, so
that the layers appear before the metrics are computed. Errors a user can
fix come back as ``Outcome.error`` (one line), not as exceptions. Lazy
(dask) inputs go through :func:`run_lazy` instead. A job computes the
maps only when its request asks for them (``Request.maps``: a map is on
show); they are shown inside the anatomical image's object only
(:mod:`.map_view`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ..align import Misalignment, estimate_misalignment
from ..balance_search import AUTO
from ..displayed import as_displayed, needs_resampling
from ..fusion import FusionOptions, FusionPlan, FusionResult, plan_pair
from ..inputs import views_of
from ..messages import described
from ..metric_registry import TIME
from ..metrics import evaluate, hot_spot, hot_spot_scores
from ..resample import ResampledView
from .lazy_compare import lazy_baseline, pair_baseline, shown_lazily, slice_plan, slice_result
from .map_view import ChannelMaps, all_map_limits, channel_maps_of, shown

#: Seconds a Live job sleeps between looks at whether another slice may still be asked for.
HOLD_POLL_S = 0.005

#: Column of the network in the metric table.
NETWORK = "LightFusionNet"


# --------------------------------------------------------------------------
# metric tables


def _sources(plan: FusionPlan, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The normalised grey streams of slice ``index`` on a 0..255 scale."""
    return plan.pair.anatomical[index] * 255.0, plan.pair.functional[index] * 255.0


def baseline_fused(plan: FusionPlan, name: str, index: int | None = None) -> np.ndarray:
    """A baseline's fusion of exactly what the network saw, in the layout of ``fused``.

    ``index`` picks one slice (2D result); ``None`` fuses the whole pair
    (a stack for a stack). The baseline gets the plan's normalised streams
    (already in [0, 1], so ``fuse_baseline`` keeps them as they are).
    """
    out = pair_baseline(plan.pair, name, slice(None) if index is None else index)
    return out if index is not None or plan.pair.stacked else out[0]


def metric_rows(
    result: FusionResult, plan: FusionPlan, index: int, baselines: tuple[str, ...] = ("average",)
) -> dict[str, dict[str, float]]:
    """Metrics of one fused slice and of the baselines on the same slice.

    ``result`` is the 2D result of ``plan.run_slice(index)``. Returns
    ``{column: {row: value}}`` with columns :data:`NETWORK` then the
    baselines, rows :data:`ROWS`: ``metrics.evaluate(fused * 255,
    anatomical * 255, functional * 255)`` on the plan's normalised grey
    streams (colour reduced to luminance), for a colour (PET/SPECT) pair the
    two hot-spot measures (``metrics.hot_spot_scores``) too, plus the time
    the method took.
    """
    return dict(metric_columns(result, plan, index, baselines))


def metric_columns(
    result: FusionResult, plan: FusionPlan, index: int, baselines: tuple[str, ...] = ("average",)
) -> Iterator[tuple[str, dict[str, float]]]:
    """:func:`metric_rows` a column at a time, ``(column, {row: value})``, so that a job can stop between them."""
    a, b = _sources(plan, index)
    colour = plan.pair.colour is not None

    def scores(fused):
        values = evaluate(fused * 255.0, a, b)
        return {**values, **hot_spot_scores(fused * 255.0, a, b)} if colour else values

    yield NETWORK, {**scores(result.fused), TIME: result.seconds}
    for name in baselines:
        start = time.perf_counter()
        fused = baseline_fused(plan, name, index)
        seconds = time.perf_counter() - start
        yield name, {**scores(fused), TIME: seconds}


# --------------------------------------------------------------------------
# fusion jobs


@dataclass
class Request:
    """One fusion job, captured on the GUI thread.

    ``inputs``: ``a``, ``b``, ``a_limits``, ``b_limits``, ``a_rgb``, ``b_rgb``,
    ``a_matrix``, ``b_matrix``, ``b_lut`` (``layer_io.fusion_inputs``), made
    ready for :func:`~napari_lightfusion.fusion.plan_pair` in the worker by
    ``displayed.as_displayed`` (the images, and their views: :func:`~napari_lightfusion.inputs.views_of`).
    ``index``: fuse only this slice of a stack (Live), or ``None`` for everything. ``metric_index``: the slice the
    metric table describes. ``compare``: also fuse the baselines whole.
    ``maps``: compute the surprise, attention and mix weight maps too.
    ``key`` identifies the inputs' state for the plan cache.
    """

    inputs: dict
    preset: str
    device: str
    channel: int | None
    key: tuple
    index: int | None = None
    metric_index: int = 0
    baselines: tuple[str, ...] = ("average",)
    compare: bool = False
    balance: float | str | None = None  # a b, or "auto" (chosen for the pair when its plan is made)
    check_alignment: bool = False  # estimate whether the pair is out of register (a Fuse or Compare)
    microscopy: bool = False  # channels of a microscope: phase correlation, not mutual information (checked only)
    unit: str = ""  # the functional layer's unit ("SUV": the uptake in the hot spot is reported)
    maps: bool = False
    origin: object = None  # where the result goes (a :class:`.requests.Origin`), unused here

    @property
    def options(self) -> FusionOptions:
        """What runs this job's fusion: its preset, device, channel, balance and maps."""
        return FusionOptions(
            self.preset, device=self.device, channel=self.channel, maps=self.maps, balance=self.balance
        )


@dataclass
class Outcome:
    """What a job produced: the result (whole or one slice) and its readouts."""

    request: Request
    result: FusionResult | None = None
    index: int | None = None  # the slice ``result`` holds, or None for the whole pair
    slices: int = 1
    stacked: bool = False
    rgb: bool = False
    table: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)
    error: str | None = None
    shown: bool = False  # the widget has already written the layers (Live, before the metrics)
    map_limits: dict = field(default_factory=dict)  # contrast limits of each map ("attention:0": (lo, hi))
    lazy: bool = False  # the result's arrays are dask arrays, computed as napari shows them
    weighted: bool = False  # the network has a per-pixel mix weight (a map it can show, with ``maps``)
    channel_maps: ChannelMaps | None = None  # every channel's maps of one slice (Map channel switches at once)
    misalignment: Misalignment | None = None  # how far the functional image looks out of register (when checked)
    uptake: dict | None = None  # SUVmax, SUVmean and voxels of the metric slice's hot spot (an SUV functional)


class PlanCache:
    """Keeps the last plan so that Live scrolling does not re-normalise the stack (or choose b again).

    Lazy inputs have no plan of the whole pair: for them it keeps the last
    ``balance="auto"`` choice instead (:meth:`choice_for`).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._plan = None
        self._choice_key = None
        self._choice = None

    @staticmethod
    def _key_of(request: Request) -> tuple:
        return (*request.key, request.preset, request.device, request.channel, request.balance)

    def holds(self, request: Request) -> bool:
        """Whether the plan or lazy choice kept is ``request``'s (a ``balance="auto"`` job then chooses no b again)."""
        key = self._key_of(request)
        with self._lock:
            return key in (self._key, self._choice_key)

    def choice_for(self, request: Request):
        """The b chosen for a lazy ``request``'s pair as it is now, or None (:meth:`keep_choice`)."""
        with self._lock:
            return self._choice if self._choice_key == self._key_of(request) else None

    def keep_choice(self, request: Request, choice) -> None:
        """Keep the b ``balance="auto"`` chose for a lazy ``request``'s pair."""
        with self._lock:
            self._choice_key, self._choice = self._key_of(request), choice

    def get(self, request: Request) -> FusionPlan:
        """The plan for ``request``, made (and kept) when its key changed; with maps as the request asks."""
        key = self._key_of(request)
        with self._lock:
            if self._key != key:
                self._plan, self._key = None, None
                inputs = as_displayed(request.inputs)
                self._plan = plan_pair(inputs["a"], inputs["b"], request.options, *views_of(inputs))
                self._key = key
            plan = self._plan
        return plan if plan.maps == request.maps else replace(plan, maps=request.maps)


def uptake_in_hot_spot(inputs: dict, plan: FusionPlan, index: int | None, at: int | None = None) -> dict:
    """SUVmax and SUVmean of the functional image inside the hot spot of one slice (``metrics.hot_spot``).

    The hot spot is the one the "anatomy kept" / "function kept" rows
    measure (from the streams the network saw: slice ``at`` of ``plan``,
    by default ``index``); the values are the functional layer's own (SUV)
    of slice ``index`` (None: the image), on the anatomical grid (resampled
    only for this slice when it lies on another grid). A lazy layer is read
    for this slice only.
    """
    k = 0 if index is None else index
    values = inputs["b"]
    if needs_resampling(inputs):
        shape = tuple(inputs["a"].shape[:-1] if inputs["a_rgb"] else inputs["a"].shape)
        view = ResampledView(inputs["b"], inputs["b_matrix"], shape, inputs["a_matrix"])
        values = view[k] if index is not None else view[:]
    elif index is not None:
        values = values[k]
    s = k if at is None else at
    mask = hot_spot(plan.pair.functional[s] * 255.0, plan.pair.anatomical[s] * 255.0)
    inside = np.asarray(values, dtype=np.float64)[mask]
    inside = inside[np.isfinite(inside)]
    if not inside.size:
        return {"SUVmax": float("nan"), "SUVmean": float("nan"), "voxels": 0}
    return {"SUVmax": float(inside.max()), "SUVmean": float(inside.mean()), "voxels": int(inside.size)}


def misalignment_of(inputs: dict, microscopy: bool) -> Misalignment | None:
    """How far the functional image of captured ``inputs`` sits from the anatomical one (None: can't tell).

    The cheap estimate of :func:`napari_lightfusion.align.estimate_misalignment`,
    on the layers' data and placement as they are (before resampling);
    an image it cannot compare (constant, say) is simply not checked.
    """
    try:
        return estimate_misalignment(
            np.asarray(inputs["a"]),
            inputs["a_matrix"],
            np.asarray(inputs["b"]),
            inputs["b_matrix"],
            rgb_moving=bool(inputs["b_rgb"]),
            microscopy=microscopy,
        )
    except ValueError:
        return None


def failure(exc: Exception) -> str:
    """One line for an unexpected error of a job (e.g. out of memory on the device)."""
    return f"fusion failed: {described(exc)}"


def run_lazy(request: Request, cache: PlanCache | None = None) -> Outcome:
    """A fusion of lazy (dask, zarr, memory-mapped) inputs: dask arrays that napari computes per slice.

    The fused image, its maps (shown inside the object only) and Compare's
    baselines stay lazy. Only the current slice is fused here: the metric
    table, the uptake and the maps' contrast limits are of that slice
    (:mod:`.lazy_compare`); napari then shows it from the lazy fusion's cache.
    With ``balance="auto"``, the b chosen for the pair is kept in ``cache``
    and not chosen again while the pair stays as it is (Live scrolling).
    """
    from .. import lazy

    out = Outcome(request, lazy=True)
    try:
        inputs = as_displayed(request.inputs)
        a, b, views = inputs["a"], inputs["b"], views_of(inputs)
        kept = cache.choice_for(request) if cache is not None and request.balance == AUTO else None
        options = request.options if kept is None else replace(request.options, balance=kept.balance)
        result = lazy.fuse_pair_lazy(a, b, options, *views)
        if kept is not None:
            result = replace(result, balance_choice=kept)
        elif result.balance_choice is not None and cache is not None:
            cache.keep_choice(request, result.balance_choice)
        out.stacked = len(a.shape) - bool(views[0].rgb) == 3
        out.slices = result.fused.shape[0] if out.stacked else 1
        index = min(max(request.metric_index, 0), out.slices - 1) if out.stacked else None
        chosen = result.balance_choice  # "auto": the slice's plan takes the b chosen for the stack
        options = request.options if chosen is None else replace(request.options, balance=chosen.balance)
        plan = slice_plan(a, b, options, views, index)
        out.weighted = plan.model.has_weight
        out.result = shown_lazily(result, a, views[0], plan.model.maps_radius)
        current = slice_result(out.result, index)
        out.map_limits = all_map_limits(out.result, index)
        out.table = metric_rows(current, plan, 0, request.baselines)
        if request.unit == "SUV":
            out.uptake = uptake_in_hot_spot(request.inputs, plan, index, at=0)
        if request.compare:
            out.compare = {
                name: lazy_baseline(a, b, views, name) if out.stacked else baseline_fused(plan, name)
                for name in request.baselines
            }
    except ValueError as exc:
        out.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. an unreadable chunk: report, stay usable
        out.error = failure(exc)
    return out


def run_request(
    request: Request, cache: PlanCache, hold: Callable[[], bool] | None = None
) -> Generator[int | Outcome | None, None, Outcome]:
    """Run a job; yields the slice number after each slice, returns an :class:`Outcome`.

    Once everything is fused, the job yields the :class:`Outcome` itself,
    without its metric table, so that the layers appear before the metrics
    are computed (a Live job on a stack fuses one slice only). Then, while
    ``hold()`` is true (Live: another slice may be asked for), it waits,
    and it computes the metric table column by column; it yields None at
    each pause, so that a newer Live slice can stop it there instead of
    waiting for a table no one will read (a 512 x 512 table takes 0.6 s).

    Cancelling between yields (``worker.quit()``) drops everything: the
    caller writes layers only from the returned outcome.
    """
    out = Outcome(request)
    try:
        plan = cache.get(request)
        out.slices, out.stacked, out.rgb = len(plan), plan.pair.stacked, plan.pair.colour is not None
        out.weighted = plan.model.has_weight
        if request.index is not None and plan.pair.stacked:
            out.index = min(max(request.index, 0), len(plan) - 1)
            out.result = shown(plan.run_slice(out.index), plan, out.index)
            out.map_limits = all_map_limits(out.result)
            yield out  # the layers can be updated now; the metrics follow
            while hold is not None and hold():
                time.sleep(HOLD_POLL_S)
                yield None
            current = out.result
        else:
            results = []
            for i in range(len(plan)):
                results.append(shown(plan.run_slice(i), plan, i))
                yield i
            out.result = plan.join(results)
            out.map_limits = all_map_limits(out.result)
            yield out  # the layers can be written now; the metrics follow
            current = results[min(max(request.metric_index, 0), len(plan) - 1)]
        if request.check_alignment:
            out.misalignment = misalignment_of(request.inputs, request.microscopy)
        metric_index = out.index if out.index is not None else min(max(request.metric_index, 0), len(plan) - 1)
        if out.result.attention is not None:  # after the layers: a Map channel switch then needs no fusion
            out.channel_maps = channel_maps_of(plan, metric_index if out.stacked else None)
        out.table = {}
        for name, column in metric_columns(current, plan, metric_index, request.baselines):
            out.table[name] = column
            yield None
        if request.unit == "SUV":
            out.uptake = uptake_in_hot_spot(request.inputs, plan, metric_index if out.stacked else None)
        if request.compare:
            out.compare = {name: baseline_fused(plan, name) for name in request.baselines}
    except ValueError as exc:  # includes WeightError: bad inputs, presets, weights
        out.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory on the device: report, stay usable
        out.error = failure(exc)
    return out
