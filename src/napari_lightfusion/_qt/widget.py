"""The LightFusion dock widget: Qt adaptation only.

Inputs are picked in :mod:`~napari_lightfusion._qt.pickers`, output layers
are named and tracked in :mod:`~napari_lightfusion._qt.outputs`, the metric
table lives in :mod:`~napari_lightfusion._qt.table`, the comparison grid
and figure in :mod:`~napari_lightfusion._qt.compare`, and the computation
in :mod:`~napari_lightfusion._qt.jobs`. The network never runs on the GUI
thread: every job runs in a napari worker; at most one job runs and one
waits (the newest request replaces the waiting one), Live requests are
debounced by a single-shot timer, and layers are written only from a job's
outcome.

Scripting (e.g. from napari's console): :meth:`LightFusionWidget.set_pair`,
:meth:`~LightFusionWidget.fuse`, :meth:`~LightFusionWidget.compare`,
:attr:`~LightFusionWidget.busy` and the :attr:`~LightFusionWidget.results_written`
signal, emitted with ``{role: layer}`` whenever a job's layers are written.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QWidget

from .. import lazy, roles
from ..baselines import BASELINES
from ..resample import iter_resample_layer
from ..weights import all_presets
from . import layer_io, outputs, pair_notes
from .alignment import AlignPanel
from .controls import ALL_BASELINES, MAP_TEXT, build_controls, collapsible
from .exports import ExportActions
from .finetune_panel import FinetunePanel
from .jobs import Outcome, PlanCache, Request, WarmUp, run_lazy, run_request, warm_up
from .readout import CursorReadout, unit_of, uptake_text
from .results import ResultView

__all__ = ["MAP_TEXT", "LightFusionWidget"]

#: Debounce of Live requests (slider moves, contrast drags), milliseconds.
DEBOUNCE_MS = 100

#: Events of an input layer that change what is fused: its data, how it is shown, where it lies.
WATCHED = ("data", "contrast_limits", "colormap", "affine", "scale", "translate", "rotate", "shear")


def _abandon(life: SimpleNamespace) -> None:
    """The widget is being destroyed: silence its slots and stop its running job."""
    life.closed = True
    if life.worker is not None:
        life.worker.quit()


class LightFusionWidget(ResultView, ExportActions, QWidget):
    """Fuse two image layers with LightFusionNet and show why (maps, metrics)."""

    #: Emitted with ``{role: layer}`` (roles "fused", "surprise:0", ..., "baseline:<name>")
    #: whenever a job has written its layers.
    results_written = Signal(dict)

    def __init__(self, napari_viewer):
        super().__init__()
        self.setMinimumWidth(420)
        self.viewer = napari_viewer
        self._worker = None
        self._kind = None  # kind of the running job
        self._job_layers = ()  # the input layers of the running job
        # Plain-Python state the worker's signals and the destroyed signal share: once
        # the widget is gone (its dock or the viewer closed) no slot of it may run.
        self._life = SimpleNamespace(closed=False, worker=None)
        self.destroyed.connect(lambda *_, life=self._life: _abandon(life))
        self._pending = None  # (kind, clicked) of the newest waiting request
        self._cancel_reason = None
        self._last_note = None
        self._cache = PlanCache()
        self._version = 0  # bumped whenever an input's data or contrast changes
        self._default_balance = None  # the loaded network's default b (None: it takes no balance)
        self._warm_needed = True  # the picked preset's network has not said its default b yet
        self._watched = ()
        self._auto_preset = True
        self._live_index = None
        self._result = None  # (set key, {role: layer}, inputs) of the last written result
        self.jobs_started = 0  #: fusion and resample jobs started so far (the network's warm-up not counted)
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: self._submit("live"))
        self._warm_timer = QTimer(self, interval=50)
        self._warm_timer.timeout.connect(self._poll_warm_up)
        self._build_ui()
        self.pickers.changed.connect(self._on_pair_changed)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._on_pair_changed()
        self._submit("warm")

    # ------------------------------------------------------------------ UI
    def _build_ui(self):
        build_controls(self, self.viewer)
        self.align_panel = AlignPanel(self.pair)
        self.finetune = FinetunePanel(self.viewer, self.pair, self._on_preset_saved)
        self.finetune_btn, _ = collapsible("Fine-tune a preset on this pair", self.finetune)
        body = self.body.layout()
        body.insertWidget(body.indexOf(self.status) + 1, self.align_panel)
        self.readout = CursorReadout(self.viewer, self.pair)
        self.readout.setWordWrap(True)
        body.insertWidget(1, self.readout)
        body.addWidget(self.finetune_btn)
        body.addWidget(self.finetune)
        body.addStretch(1)
        self.preset.activated.connect(self._on_user_preset)
        self.preset.currentTextChanged.connect(self._follow_preset)
        self._follow_preset(self.preset.currentText())
        self.device.activated.connect(lambda *_: self.request_live())
        self.baseline.activated.connect(lambda *_: self.request_live())
        self.show_map.currentIndexChanged.connect(lambda *_: self._on_map_choice())
        self.channel.activated.connect(self._on_channel)
        self.balance.valueChanged.connect(lambda *_: self._on_balance())
        self.balance.valueChanged.connect(lambda *_: self._show_balance())
        self.resample_btn.clicked.connect(self.resample)
        self.fuse_btn.clicked.connect(self.fuse)
        self.cancel_btn.clicked.connect(self.cancel)
        self.live.toggled.connect(lambda on: self.request_live() if on else None)
        self.compare_btn.clicked.connect(self.compare)
        self.figure_btn.clicked.connect(self._on_export_figure)
        self.volume_btn.clicked.connect(self._on_export_volume)
        self.shot_btn.clicked.connect(self._on_save_screenshot)
        self.copy_btn.clicked.connect(self.copy_table)
        self.csv_btn.clicked.connect(self._on_export_csv)

    def _follow_preset(self, name: str) -> None:
        """Fine-tuning starts from the preset the widget fuses with (unless a fine-tuning runs)."""
        if name and not self.finetune.busy:
            self.finetune.base.setCurrentText(name)

    def _on_preset_saved(self, name: str) -> None:
        """A fine-tuned preset was saved: list it and pick it."""
        self.preset.clear()
        self.preset.addItems(all_presets())
        self.preset.setCurrentText(name)
        self._on_user_preset()

    # ------------------------------------------------------------- pickers
    def pair(self):
        """The (anatomical, functional) layers currently picked (None where empty)."""
        return self.pickers.pair()

    def set_pair(self, anatomical, functional):
        """Pick the two layers to fuse (as a user would in the pickers); ``ValueError`` for a non-image layer."""
        self.pickers.set_pair(anatomical, functional)

    def _notify(self, show, message: str) -> None:
        """A napari notification, once: the same message twice in a row is shown once."""
        if message != self._last_note:
            self._last_note = message
            show(f"LightFusion: {message}")

    def _on_layer_removed(self, event):
        if any(event.value is ly for ly in self._job_layers):
            self.cancel(f"'{event.value.name}' was removed; the fusion was cancelled and no layer was changed.")

    def _on_user_preset(self, *_):
        self._auto_preset = False
        self._stale()
        a, b = self.pair()
        if warning := roles.preset_warning(self.preset.currentText(), a, b):
            self._notify(show_warning, warning)
        self._warm_new_preset()
        self.request_live()

    def _warm_new_preset(self):
        """Load the picked preset's network; until it says its default b, fusions use that default."""
        self.balance.setEnabled(False)  # the slider's b belonged to the previous network
        self._show_balance()
        self._warm_needed = True
        self._submit("warm")  # load the network now; it says whether Balance applies

    def _on_balance(self):
        """Re-fuse the current slice (debounced) when the balance moves and there is a result."""
        if self._result is not None or self.live.isChecked():
            self._timer.start()

    def balance_value(self) -> float | None:
        """The balance passed to the network: the slider's b in [0, 1], None when it does not apply."""
        return self.balance.value() / 100.0 if self.balance.isEnabled() else None

    def _moved_balance(self) -> float | None:
        """The slider's b when it is away from the network's default (results are then named with it)."""
        value = self.balance_value()
        default = self._default_balance
        return None if value is None or default is None or round(100 * default) == round(100 * value) else value

    def _on_pair_changed(self):
        """Watch the picked layers' data and contrast; guess the preset; check the shapes."""
        a, b = self.pair()
        self.readout.update_text()
        for layer in self._watched:
            for name in WATCHED:
                getattr(layer.events, name).disconnect(self._on_input_changed)
        self._watched = tuple(ly for ly in {id(a): a, id(b): b}.values() if ly is not None)
        for layer in self._watched:
            for name in WATCHED:
                getattr(layer.events, name).connect(self._on_input_changed)
        self._last_note = None
        message = None
        if a is not None and b is not None and a is not b:
            switch, warning, message = pair_notes.preset_advice(a, b, self.preset.currentText(), self._auto_preset)
            if switch is not None:
                self.preset.setCurrentText(switch)
                self._warm_new_preset()
            if warning:
                self._notify(show_warning, warning)
        pair = a is not None and b is not None and a is not b
        problem = layer_io.check_pair(a, b) if pair else None
        grid = layer_io.grid_note(a, b) if pair and problem is None else None
        self.resample_btn.setVisible(grid is not None)
        if grid:
            message = f"{grid}. {message or ''}".strip()
        self._stale(problem[1] if problem else message)
        self._on_input_changed()

    def _stale(self, message: str | None = None) -> None:
        """The inputs or settings changed: clear the metrics and say what to do next."""
        if self._cancel_reason is None:
            self.table.show_table({})
            self.uptake.setText("")
            self.status.setText(message or "Inputs or settings changed: press Fuse.")

    def _on_input_changed(self, event=None):
        self._version += 1
        if event is not None:
            self._stale()
        self.request_live()

    def _on_step(self, event=None):
        a, _ = self.pair()
        stack = self.live.isChecked() and a is not None and len(layer_io.spatial_shape(a)) == 3
        if stack and layer_io.data_index(a, self.viewer.dims.point) != self._live_index:
            self.request_live()

    def resample(self):
        """Resample the functional layer onto the anatomical grid (world coordinates) in a worker.

        The result is always a NEW layer "<name> resampled", which is then picked.
        """
        a, b = self.pair()
        if a is None or b is None or len(layer_io.spatial_shape(a)) != len(layer_io.spatial_shape(b)):
            self._notify(show_error, "resampling needs two layers of the same dimensionality")
            return
        self._submit("resample")

    def _on_resampled(self, value):
        data, kwargs = value
        a, b = self._job_layers
        style = dict(opacity=b.opacity, blending=b.blending)
        if not layer_io.is_colour(b):
            style.update(colormap=b.colormap, contrast_limits=b.contrast_limits)
        new = self.viewer.add_image(data, name=f"{b.name} resampled", **kwargs, **style)
        self.set_pair(a, new)
        self.status.setText(f"Added '{new.name}' on the grid of '{a.name}'; '{b.name}' is unchanged.")
        show_info(f"LightFusion: added '{new.name}' on the grid of '{a.name}'; '{b.name}' is unchanged")

    # ---------------------------------------------------------------- jobs
    def request_live(self):
        """Ask for a debounced re-fusion of the current slice when Live is on."""
        if self.live.isChecked():
            self._timer.start()

    @property
    def busy(self) -> bool:
        """Whether a job is running, waiting, or about to be requested (Live debounce)."""
        return self._worker is not None or self._pending is not None or self._timer.isActive()

    def fuse(self):
        """Fuse the picked pair (a whole stack slice by slice) in a worker."""
        self._submit("full")

    def compare(self):
        """Fuse, add the chosen baselines' results and show all side by side, labelled."""
        self._submit("compare")

    def _submit(self, kind: str):
        clicked = time.perf_counter()
        if self._worker is not None:  # one running, one waiting: the newest wins
            weaker = {"live": ("full", "compare"), "warm": ("full", "compare", "live", "resample")}
            if not (self._pending and self._pending[0] in weaker.get(kind, ())):
                self._pending = (kind, clicked)
            return
        self._start(kind, clicked)

    def _baselines(self) -> tuple[str, ...]:
        text = self.baseline.currentText()
        return tuple(BASELINES) if text == ALL_BASELINES else (text,)

    def _make_request(self, kind: str) -> Request | None:
        a, b = self.pair()
        if a is None or b is None or a is b:
            if kind != "live":
                self._notify(show_warning, "pick two different image layers to fuse")
            return None
        problem = layer_io.check_pair(a, b)
        if problem:
            self.status.setText(problem[1])
            if kind != "live":  # Live shows it in the status line, without a pile of toasts
                self._notify(show_error, problem[1])
            return None
        inputs = layer_io.fusion_inputs(a, b)
        if kind != "live" and (note := pair_notes.fuse_note(a, b, inputs)):
            self._notify(show_warning, note)  # too small for some metrics, NaN pixels
        stacked = len(layer_io.spatial_shape(a)) == 3
        index = layer_io.data_index(a, self.viewer.dims.point) if stacked else 0
        key = (id(a), id(b), id(inputs["a"]), id(inputs["b"]), self._version,
               inputs["a_limits"], inputs["b_limits"], inputs["a_rgb"], inputs["b_rgb"],
               inputs["a_matrix"].tobytes(), inputs["b_matrix"].tobytes(),
               None if inputs["b_lut"] is None else inputs["b_lut"].tobytes())
        preset = self.preset.currentText()
        names = layer_io.display_names(a, b)
        return Request(
            inputs, preset, self.device.currentText(), self.channel.currentData(), key,
            index=index if kind == "live" else None, metric_index=index,
            baselines=self._baselines(), compare=kind == "compare", balance=self.balance_value(),
            check_alignment=kind in ("full", "compare"), microscopy=roles.is_microscopy(a, b),
            unit=unit_of(b),
            context={"like": a, "inputs": (a, b), "names": names, "kind": kind,
                     "lazy": lazy.is_lazy(inputs["a"]) or lazy.is_lazy(inputs["b"]),
                     "set": (str(a.unique_id), str(b.unique_id), preset, None),
                     "alignment": self.align_panel.record_for(b),
                     "label": outputs.set_label(*names, preset, self._moved_balance())},
        )

    def _start(self, kind: str, clicked: float):
        if kind == "warm":
            self._worker = self._life.worker = WarmUp(self.preset.currentText(), self.device.currentText(), warm_up)
            self._kind = kind
            self._worker.start()
            self._warm_timer.start()
            return
        if kind == "resample":
            a, b = self.pair()
            if a is None or b is None:
                return
            worker = create_worker(iter_resample_layer, b, a)
            worker.yielded.connect(self._guard(lambda done: self.progress.step(done[0], done[1])))
            worker.returned.connect(self._guard(self._on_resampled))
            worker.aborted.connect(self._guard(self._on_aborted))
            self._busy_ui((a, b), 0, f"Resampling '{b.name}'")
        else:
            request = self._make_request(kind)
            if request is None:
                return
            request.context["clicked"] = clicked
            like = request.context["like"]
            slices = 1 if request.index is not None or len(layer_io.spatial_shape(like)) == 2 else like.data.shape[0]
            if request.context["lazy"]:  # dask layers: napari computes the slices it shows
                request.index, slices = None, 0
                worker = create_worker(run_lazy, request)
            else:
                worker = create_worker(run_request, request, self._cache)
                worker.yielded.connect(self._guard(self._on_yielded))
            worker.returned.connect(self._guard(self._on_outcome))
            if not request.context["lazy"]:  # a lazy job is one quick call: nothing to abort
                worker.aborted.connect(self._guard(self._on_aborted))
            what = f"slice {request.index}" if request.index is not None else (
                f"{slices} slices" if slices > 1 else "the image")
            self._busy_ui(request.context["inputs"], slices, f"Fusing {what}")
        worker.finished.connect(self._guard(self._on_finished))
        self.jobs_started += 1
        self._worker = self._life.worker = worker
        self._kind = kind
        self._cancel_reason = None
        worker.start()

    def _busy_ui(self, inputs: tuple, steps: int, text: str) -> None:
        """A job on ``inputs`` starts: progress bar, Fuse and Compare off, Cancel on."""
        self.progress.start(steps, text)
        self.status.setText(f"{text} ...")
        self._job_layers = inputs
        for button in (self.fuse_btn, self.compare_btn, self.resample_btn):
            button.setEnabled(False)
        self.cancel_btn.setEnabled(True)

    def _poll_warm_up(self):
        if self._kind == "warm" and self._worker.done:
            self._warm_timer.stop()
            if self._worker.preset == self.preset.currentText():
                self._on_warm(self._worker.result)
            # else: the preset changed while it loaded; the new one's warm-up is (or will be) submitted
            self._on_finished()

    def _on_warm(self, balance):
        """The network is loaded: the balance slider applies when it was trained with one, from its default b."""
        self._warm_needed = False
        conditioned = balance is not None
        new_default = balance != self._default_balance  # another network: the slider starts at its default
        self._default_balance = balance
        if conditioned and (new_default or not self.balance.isEnabled()):
            self.balance.blockSignals(True)
            self.balance.setValue(round(100 * balance))
            self.balance.blockSignals(False)
        self.balance.setEnabled(conditioned)
        self._show_balance()

    def _show_balance(self) -> None:
        """The slider's b beside it (a dash while the network takes none)."""
        value = self.balance_value()
        self.balance_label.setText("b —" if value is None else f"b {value:.2f}")

    def _guard(self, slot):
        """``slot``, silenced once the widget is destroyed."""
        life = self._life
        return lambda *args: None if life.closed else slot(*args)

    def cancel(self, reason: str | None = None):
        """Stop the running job between slices and drop any waiting request."""
        self._timer.stop()
        self._pending = None
        if self._worker is not None and self._kind != "warm":
            self._cancel_reason = reason or "Cancelled; no layer was changed."
            self.status.setText(self._cancel_reason)
            self._worker.quit()

    def _on_aborted(self):
        self.status.setText(self._cancel_reason or "Cancelled; no layer was changed.")

    def _on_finished(self):
        self._worker = self._life.worker = None
        self._job_layers = ()
        self._kind = None
        self._cancel_reason = None
        self.progress.stop()
        for button in (self.fuse_btn, self.compare_btn, self.resample_btn):
            button.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if self._pending is not None:
            (kind, clicked), self._pending = self._pending, None
            self._start(kind, clicked)

    def _aborting(self) -> bool:
        return self._worker is not None and self._worker.abort_requested

    def _on_yielded(self, value):
        """A slice is done (progress), or everything is fused: write the layers now."""
        if isinstance(value, Outcome):
            if value.error is None and not self._aborting():
                self._write_layers(value)
                value.shown = True
        else:
            self.progress.step(value + 1)

    def _on_outcome(self, outcome):
        if self._aborting():
            return  # cancelled after the last slice: the layers stay as they were
        if outcome.error:
            self._notify(show_error, outcome.error)
            self.status.setText(outcome.error)
            return
        if not outcome.shown:
            self._write_layers(outcome)
        self._kept_maps = (outcome.channel_maps, outcome.request.context, outcome.slices) \
            if outcome.channel_maps is not None else None
        self.table.show_table(outcome.table)
        self.uptake.setText(uptake_text(outcome))
        found = outcome.misalignment
        if found is not None and found.exceeds and not self.align_panel.busy:
            a, b = outcome.request.context["inputs"]
            self.align_panel.offer(found, found.message(roles.short_name(a), roles.short_name(b)),
                                   outcome.request.microscopy)
        if self._warm_needed:  # the warm-up gave way to this fusion: the slider still waits for it
            self._submit("warm")
        done = "." if not outcome.lazy else "; slices are fused as you view them (metrics: the current slice)."
        self.status.setText(self.status.text().replace("; metrics follow.", done))
        if outcome.compare:
            self._write_baselines(outcome)
