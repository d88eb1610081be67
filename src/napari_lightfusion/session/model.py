"""The dock's session: what the user chose, what runs and what it made, as evented fields.

In the spirit of napari-animation's ``Animation``: one :class:`FusionSession`
per dock holds its state as fields whose changes are psygnal events
(``session.events.<field>.connect(...)``). The widget
(:mod:`napari_lightfusion._qt.widget`) shows the fields, sets them from its
controls and runs the jobs the session asks for; :mod:`.requests` turns the
session into a job's :class:`~napari_lightfusion.session.jobs.Request`, and
:mod:`.results` writes a job's outcome into the viewer as the session's
:class:`ResultSet`. Nothing here needs a display: the tests drive a session
with napari's ``ViewerModel``.

At most one job runs and one waits (:meth:`FusionSession.queue`: the newest
request replaces the waiting one, except that a Live refresh or a warm-up
never pushes out a fusion the user asked for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from psygnal import Signal, evented

from .. import roles
from ..balance_search import AUTO
from . import layer_io, pair_notes
from .map_view import ChannelMaps
from .outputs import MapChoice

#: The status line before anything was picked, after a change, and after a Cancel.
READY = "Pick two registered images and press Fuse."
CHANGED = "Inputs or settings changed: press Fuse."
CANCELLED = "Cancelled; no layer was changed."

#: Events of an input layer that change what is fused: its data, how it is shown, where it lies.
WATCHED = ("data", "contrast_limits", "colormap", "affine", "scale", "translate", "rotate", "shear")


class JobKind(Enum):
    """What a job does."""

    WARM_UP = "warm-up"  # load the preset's network and learn its default balance
    RESAMPLE = "resample"  # the functional layer onto the anatomical grid, as a new layer
    LIVE = "live"  # the slice on view (Live, a moved balance or Map channel)
    FUSE = "fuse"  # the whole pair
    COMPARE = "compare"  # the whole pair and the baselines, side by side
    MAPS = "maps"  # the result on show again, with the maps a map picked after it needs


#: A waiting job that a newer request of a kind does not replace (the newer one is dropped instead).
KEEPS_WAITING = {
    JobKind.LIVE: {JobKind.FUSE, JobKind.COMPARE, JobKind.MAPS},
    JobKind.WARM_UP: {JobKind.FUSE, JobKind.COMPARE, JobKind.LIVE, JobKind.RESAMPLE, JobKind.MAPS},
}


@dataclass(frozen=True, eq=False)
class ResultSet:
    """The result on show: its layers and what the dock needs to know about them.

    ``layers`` is ``{role: layer}`` (``"fused"``, ``"backdrop"``,
    ``"surprise:0"``, ..., ``"weight"``, ``"baseline:<method>"``) and ``key``
    the set key they carry (:mod:`.outputs`); ``origin`` the
    :class:`~napari_lightfusion.session.requests.Origin` of the job that
    wrote them; ``index`` the stack slice the layers last received (a Live result),
    None for a whole result. ``maps`` says whether its maps were computed
    (with Map channel ``channel``), ``weighted`` whether its network has a
    mix weight; ``channel_maps`` every channel's maps of one slice, kept so
    that the Map channel switches without a fusion (None: none kept).
    ``metric_slice`` is ``(spatial axes of the anatomical layer, slice)``
    the metric table describes, ``summary`` the status line that says how
    it was fused.
    """

    key: tuple
    layers: dict
    origin: object
    index: int | None
    slices: int
    stacked: bool
    lazy: bool
    maps: bool
    channel: int | None
    weighted: bool
    metric_slice: tuple
    summary: str
    channel_maps: ChannelMaps | None = None

    @property
    def whole_volume(self) -> bool:
        """Whether the result is a whole volume (lazy, or a stack fused whole): it can be exported as one."""
        return self.lazy or (self.stacked and self.index is None)


@evented
@dataclass(eq=False)
class FusionSession:
    """One dock's choices, job and result; every field is an event (``session.events.status``...).

    ``pair`` (anatomical, functional) layers (None where nothing is
    picked), ``preset``, ``balance`` (the b the network is given; None when
    it takes none, or until its warm-up said), ``auto_balance`` (each
    fusion chooses b for its pair, :mod:`napari_lightfusion.balance_search`,
    and ``balance`` then shows the b chosen), ``device``, ``channel`` (Map
    channel, None: the mean), ``baselines``, ``map_choice`` (the map on
    show, None: the fused image), ``live``; ``job`` the kind of the running
    job (None: idle), ``result`` the :class:`ResultSet` on show,
    ``metrics`` the metric table ``{column: {row: value}}`` (empty while
    stale), ``uptake`` the SUV line under it, ``grid_note`` what Fuse does
    with a functional layer on another grid (None: the same grid), and
    ``status`` the dock's status line.

    ``notice(kind, message)`` asks for a napari notification ("error",
    "warning", "info"; the same message twice in a row is asked once);
    ``wanted(kind)`` asks for a job (a :class:`JobKind`; LIVE only matters
    with Live on, and the widget debounces it).
    """

    pair: tuple = (None, None)
    preset: str = ""
    balance: float | None = None
    auto_balance: bool = False
    device: str = "auto"
    channel: int | None = None
    baselines: tuple = ("average",)
    map_choice: MapChoice | None = None
    live: bool = False
    job: JobKind | None = None
    result: ResultSet | None = None
    metrics: dict = field(default_factory=dict)
    uptake: str = ""
    grid_note: str | None = None
    status: str = READY

    notice: ClassVar[Signal] = Signal(str, str)
    wanted: ClassVar[Signal] = Signal(object)

    def __post_init__(self):
        self.auto_preset = True  #: the user has not picked a preset: a new pair's guess is switched to
        self.default_balance = None  #: the loaded network's default b (None: it takes none)
        self.warm_needed = True  #: the preset's network has not said its default b yet
        self.version = 0  #: bumped whenever an input's data or display changes (the plan cache's key)
        self.job_layers = ()  #: the input layers of the running job
        self._pending = None  # (kind, clicked) of the waiting job
        self._cancel_reason = None
        self._last_note = None
        self._watched = ()
        self.events.pair.connect(self._on_pair)

    # ------------------------------------------------------------ notices
    def say(self, kind: str, message: str) -> None:
        """Ask for a notification (``kind`` "error", "warning" or "info"), once for the same message in a row."""
        if message != self._last_note:
            self._last_note = message
            self.notice.emit(kind, message)

    def forget_note(self) -> None:
        """The next notification is shown even when it repeats the last one (a new pair or result)."""
        self._last_note = None

    # --------------------------------------------------------- the inputs
    def _on_pair(self, pair) -> None:
        """Watch the picked layers; guess the preset; check the pair and say what Fuse will do."""
        a, b = pair
        for layer in self._watched:
            for name in WATCHED:
                getattr(layer.events, name).disconnect(self.inputs_changed)
        self._watched = tuple(ly for ly in {id(a): a, id(b): b}.values() if ly is not None)
        for layer in self._watched:
            for name in WATCHED:
                getattr(layer.events, name).connect(self.inputs_changed)
        self.forget_note()
        both = a is not None and b is not None and a is not b
        message = None
        if both:
            switch, warning, message = pair_notes.preset_advice(a, b, self.preset, self.auto_preset)
            if switch is not None:
                self.preset = switch
                self.new_preset()
            if warning:
                self.say("warning", warning)
        problem = layer_io.check_pair(a, b) if both else None
        self.grid_note = layer_io.grid_note(a, b) if both and problem is None else None
        if self.grid_note:
            message = f"{self.grid_note}. {message or ''}".strip()
        self.stale(problem[1] if problem else message)
        self.inputs_changed()

    def inputs_changed(self, event=None) -> None:
        """An input's data or display changed (``event``), or the pair did: new plans; Live re-fuses."""
        self.version += 1
        if event is not None:
            self.stale()
        self.wanted.emit(JobKind.LIVE)

    def stale(self, message: str | None = None) -> None:
        """The inputs or settings changed: clear the metrics and say what to do next (unless a Cancel is said)."""
        if self._cancel_reason is None:
            self.metrics = {}
            self.uptake = ""
            self.status = message or CHANGED

    # ------------------------------------------------------------ presets
    def choose_preset(self) -> None:
        """The user picked the preset: no more guessing; check it against the pair and load its network."""
        self.auto_preset = False
        self.stale()
        a, b = self.pair
        if warning := roles.preset_warning(self.preset, a, b):
            self.say("warning", warning)
        self.new_preset()
        self.wanted.emit(JobKind.LIVE)

    def new_preset(self) -> None:
        """Load the preset's network; until it says its default b, the balance does not apply."""
        self.balance = None
        self.warm_needed = True
        self.wanted.emit(JobKind.WARM_UP)

    def warmed(self, preset: str, balance: float | None) -> None:
        """The network of ``preset`` is loaded: its default ``balance`` (None: it takes none) is the balance now."""
        if preset != self.preset:
            return  # the preset changed while it loaded; the new one's warm-up is (or will be) asked for
        self.warm_needed = False
        self.default_balance = balance
        self.balance = balance

    def moved_balance(self) -> float | str | None:
        """The balance when it is away from the network's default, or ``"auto"`` (results are then named with it)."""
        value, default = self.balance, self.default_balance
        if value is not None and self.auto_balance:
            return AUTO
        return None if value is None or default is None or round(100 * default) == round(100 * value) else value

    def requested_balance(self) -> float | str | None:
        """What a fusion asks the network for: the balance, ``"auto"`` while ``auto_balance`` is on (and b applies)."""
        return AUTO if self.auto_balance and self.balance is not None else self.balance

    # --------------------------------------------------------------- maps
    @property
    def maps_needed(self) -> bool:
        """Whether a fusion computes maps: only while one is on show."""
        return self.map_choice is not None

    def maps_missing(self) -> bool:
        """Whether the map on show needs a fusion: the result on show has no maps, or another channel's."""
        result = self.result
        return (
            result is not None and self.map_choice is not None and (not result.maps or result.channel != self.channel)
        )

    # --------------------------------------------------------------- jobs
    @property
    def busy(self) -> bool:
        """Whether a job runs or waits."""
        return self.job is not None or self._pending is not None

    @property
    def pending(self) -> JobKind | None:
        """The kind of the job waiting for the running one to end, if any."""
        return None if self._pending is None else self._pending[0]

    def queue(self, kind: JobKind, clicked: float) -> bool:
        """Ask for a job (``clicked``: when, ``time.perf_counter``); True when it may start now.

        While a job runs the newest request waits in place of the one
        waiting, unless that one is one :data:`KEEPS_WAITING` keeps.
        """
        if self.job is None:
            return True
        if not (self._pending and self._pending[0] in KEEPS_WAITING.get(kind, ())):
            self._pending = (kind, clicked)
        return False

    def started(self, kind: JobKind, layers: tuple = (), text: str | None = None) -> None:
        """A job of ``kind`` on the input ``layers`` started (``text``: what the status line says meanwhile)."""
        self.job_layers = layers
        self._cancel_reason = None
        self.job = kind
        if text is not None:
            self.status = f"{text} ..."

    def finished(self) -> tuple | None:
        """The running job ended, finished or not; returns the waiting ``(kind, clicked)`` to start, if any."""
        self.job_layers = ()
        self._cancel_reason = None
        self.job = None
        waiting, self._pending = self._pending, None
        return waiting

    def cancel(self, reason: str | None = None) -> bool:
        """Drop the waiting job; True when the running one is to stop (a warm-up runs to its end)."""
        self._pending = None
        if self.job is None or self.job is JobKind.WARM_UP:
            return False
        self._cancel_reason = reason or CANCELLED
        self.status = self._cancel_reason
        return True

    def aborted(self) -> None:
        """The running job stopped between slices: say why."""
        self.status = self._cancel_reason or CANCELLED

    def failed(self, error: str) -> None:
        """A job failed with ``error`` (one line): notify and say it."""
        self.say("error", error)
        self.status = error
