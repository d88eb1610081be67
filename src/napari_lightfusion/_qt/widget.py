"""The LightFusion dock widget: the controls of a :class:`~napari_lightfusion.session.model.FusionSession`.

The session (Qt-free, :mod:`napari_lightfusion.session`) holds what the
user chose, the job that runs and the result on show, as evented fields.
The widget creates and owns its controls, shows the session's fields in
them and sets the fields from the user's actions; it runs the jobs the
session asks for in napari workers (the network never runs on the GUI
thread): at most one runs and one waits, Live requests are debounced
(a slider step after a pause fuses at once: :mod:`.live`), and layers are written only from a job's outcome
(:mod:`napari_lightfusion.session.results`). Fuse computes the maps only
while one is shown; a map picked after a fusion without them is computed then.

Scripting (e.g. from napari's console): :meth:`LightFusionWidget.set_pair`,
:meth:`~LightFusionWidget.fuse`, :meth:`~LightFusionWidget.compare`,
:attr:`~LightFusionWidget.busy`, :attr:`~LightFusionWidget.session` and the
:attr:`~LightFusionWidget.results_written` signal, emitted with
``{role: layer}`` whenever a job's layers are written.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer, Signal
from qtpy.QtGui import QFont, QFontMetricsF
from qtpy.QtWidgets import QCheckBox, QLabel, QMainWindow, QPushButton, QWidget

from .. import roles
from ..baselines import BASELINES
from ..engine import available_devices
from ..session import compare, layer_io, outputs, results
from ..session.model import READY, FusionSession, JobKind
from ..weights import all_presets
from . import controls
from .alignment import AlignPanel
from .controls import ALL_BASELINES, MAP_TEXT
from .exports import ExportActions
from .finetune_panel import FinetunePanel
from .live import LiveTrigger
from .pickers import PairPicker
from .progress import JobProgress
from .readout import CursorReadout
from .table import MetricTable
from .workers import JobRunner

__all__ = ["ALL_BASELINES", "MAP_TEXT", "LightFusionWidget"]


def _notify(kind: str, message: str) -> None:
    """A napari notification of ``kind`` ("error", "warning", "info")."""
    show = {"error": show_error, "warning": show_warning, "info": show_info}[kind]
    show(f"LightFusion: {message}")


class LightFusionWidget(QWidget):
    """Fuse two image layers with LightFusionNet and show why (maps, metrics)."""

    #: Emitted with ``{role: layer}`` (roles "fused", "surprise:0", ..., "baseline:<name>")
    #: whenever a job has written its layers.
    results_written = Signal(dict)

    def __init__(self, napari_viewer):
        super().__init__()
        self.setMinimumWidth(420)
        self.viewer = napari_viewer
        self.session = FusionSession()  #: the dock's choices, job and result (evented, Qt-free)
        self.live_trigger = LiveTrigger(
            lambda: self.jobs.submit(JobKind.LIVE), self._slice_on_view, lambda: not self.session.busy, self
        )
        self._build_ui()
        self.exports = ExportActions(napari_viewer, self.session, self.export_progress, self)
        self.jobs = JobRunner(napari_viewer, self.session, self.progress, self.align_panel.record_for, self)
        self.jobs.hold = lambda: self.live_trigger.coming  # read on the worker's thread: a plain attribute
        self._observe_session()
        self._connect_controls()
        self.viewer.layers.events.removed.connect(self.jobs.guard(self._on_layer_removed))
        self.viewer.dims.events.current_step.connect(self.jobs.guard(self._on_step))
        for event in (self.viewer.dims.events.order, self.viewer.dims.events.ndisplay):
            event.connect(self.jobs.guard(self._title_metrics))
        self.session.pair = self.pickers.pair()
        if not self.session.busy:  # load the network now (unless the pair's guessed preset is loading)
            self.jobs.submit(JobKind.WARM_UP)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        """Create the controls and lay them out, top to bottom, in a scroll area."""
        viewer = self.viewer
        self.pickers = PairPicker(viewer)
        self.readout = CursorReadout(viewer, self.pair)
        self.readout.setWordWrap(True)
        self.resample_btn = controls.button("Resample functional onto anatomical grid", visible=False)
        self.preset = controls.combo(all_presets())
        self.balance, self.balance_label = controls.balance_slider()
        self.balance_auto = QCheckBox("Auto: choose b for each pair")
        self.balance_auto.setEnabled(False)  # until the network says it takes a balance
        self.device = controls.combo(["auto", *available_devices()])
        self.show_map, self.channel = controls.MapBox(), controls.channel_box()
        self.baseline = controls.combo([*BASELINES, ALL_BASELINES])
        self.fuse_btn, self.cancel_btn = QPushButton("Fuse"), controls.button("Cancel", enabled=False)
        self.live = QCheckBox("Live (follow slice and contrast)")
        self.progress, self.status = JobProgress(), controls.wrapped(READY)
        self.align_panel = AlignPanel(self.pair)
        self.compare_btn = QPushButton("Compare")
        self.figure_btn = controls.button("Export figure…", enabled=False)
        self.volume_btn = controls.button("Export fused volume…", visible=False)
        self.export_progress = JobProgress()  # the slices of a fused volume written so far
        self.table, self.uptake = MetricTable(), controls.wrapped()
        self.copy_btn, self.csv_btn = QPushButton("Copy"), QPushButton("Export CSV…")
        self.shot_btn = QPushButton("Save screenshot…")
        self.finetune = FinetunePanel(viewer, self.pair, self._on_preset_saved)
        self.finetune_btn = controls.collapsible("Fine-tune a preset on this pair", self.finetune)
        for name, tip in controls.TIPS.items():
            getattr(self, name).setToolTip(tip)
        balance = controls.row(QLabel("anatomy 0"), self.balance, QLabel("1 function"), self.balance_label)
        rows = [("Preset", self.preset), ("Balance", balance), ("", self.balance_auto), ("Device", self.device)]
        rows += [("Show map", self.show_map)]
        rows += [("Map channel", self.channel), ("Baseline", self.baseline)]
        settings = controls.form([self.pickers, self.resample_btn, *rows])
        table = [self.table, self.uptake, controls.row(self.copy_btn, self.csv_btn)]
        metrics = controls.group("Metrics (current slice)", table)
        top = [settings, self.readout, controls.row(self.fuse_btn, self.cancel_btn), self.live, self.progress]
        middle = [self.status, self.align_panel, controls.row(self.compare_btn, self.figure_btn), self.volume_btn]
        bottom = [self.export_progress, metrics, self.shot_btn, self.finetune_btn, self.finetune]
        self.scroll = controls.scrolled(self, [*top, *middle, *bottom])
        s = self.session
        s.preset, s.device, s.baselines = self.preset.currentText(), self.device.currentText(), self._baselines()
        s.channel = self.channel.currentData()

    def _observe_session(self) -> None:
        """Show the session's fields in the controls (and its notices as napari notifications)."""
        s = self.session
        follow = [
            (s.events.status, self.status.setText),
            (s.events.preset, self.preset.setCurrentText),
            (s.events.balance, self._show_balance),
            (s.events.map_choice, self.show_map.show_choice),
            (s.events.job, self._show_job),
            (s.events.result, self._show_result),
            (s.events.metrics, self.table.show_table),
            (s.events.uptake, self.uptake.setText),
            (s.events.grid_note, lambda note: self.resample_btn.setVisible(note is not None)),
            (s.events.pair, lambda pair: self.readout.update_text()),
            (s.wanted, self._on_wanted),
        ]
        for signal, slot in follow:
            signal.connect(self.jobs.guard(slot, 1))
        s.notice.connect(self.jobs.guard(_notify))

    def _connect_controls(self) -> None:
        """Set the session's fields from the user's actions."""
        s = self.session
        self.pickers.changed.connect(lambda: setattr(s, "pair", self.pickers.pair()))
        self.preset.currentTextChanged.connect(self._follow_preset)
        self.preset.activated.connect(lambda *_: s.choose_preset())
        self.device.currentTextChanged.connect(lambda text: setattr(s, "device", text))
        self.baseline.currentTextChanged.connect(lambda *_: setattr(s, "baselines", self._baselines()))
        self.channel.currentIndexChanged.connect(lambda *_: setattr(s, "channel", self.channel.currentData()))
        for box in (self.device, self.baseline):
            box.activated.connect(lambda *_: self.request_live())
        self.show_map.currentIndexChanged.connect(lambda *_: self._on_map_choice())
        self.channel.activated.connect(self._on_channel)
        self.balance.valueChanged.connect(self._on_balance)
        self.balance_auto.toggled.connect(self._on_balance_auto)
        self.live.toggled.connect(self._on_live)
        self.resample_btn.clicked.connect(self.resample)
        self.fuse_btn.clicked.connect(self.fuse)
        self.cancel_btn.clicked.connect(self.cancel)
        self.compare_btn.clicked.connect(self.compare)
        self.figure_btn.clicked.connect(self.exports.ask_figure)
        self.volume_btn.clicked.connect(self.exports.ask_volume)
        self.shot_btn.clicked.connect(self.exports.ask_screenshot)
        self.copy_btn.clicked.connect(self.exports.copy_table)
        self.csv_btn.clicked.connect(self.exports.ask_csv)
        self.jobs.written.connect(self.results_written)
        self.jobs.compared.connect(self._on_compared)
        self.jobs.misaligned.connect(self._on_misaligned)
        self.jobs.resampled.connect(self.set_pair)

    def _follow_preset(self, name: str) -> None:
        """The preset shown is the session's; fine-tuning starts from it (unless a fine-tuning runs)."""
        if not name:
            return
        self.session.preset = name
        if not self.finetune.busy:
            self.finetune.base.setCurrentText(name)

    def _on_preset_saved(self, name: str) -> None:
        """A fine-tuned preset was saved: list it and pick it."""
        self.preset.clear()
        self.preset.addItems(all_presets())
        self.preset.setCurrentText(name)
        self.session.choose_preset()

    def _baselines(self) -> tuple[str, ...]:
        text = self.baseline.currentText()
        return tuple(BASELINES) if text == ALL_BASELINES else (text,)

    def _on_balance(self, value: int) -> None:
        """The user moved the balance: the network gets it; the slice on view is re-fused (debounced)."""
        if self.balance.isEnabled():
            self.session.balance = value / 100.0
        if self.session.result is not None or self.session.live:
            self.live_trigger.changed()

    def _on_balance_auto(self, on: bool) -> None:
        """Auto on: each fusion chooses b for its pair (the slider shows it); off: the slider's b again."""
        self.session.auto_balance = on
        self._show_balance(self.session.balance)
        if self.session.result is not None or self.session.live:
            self.live_trigger.changed()

    def _show_balance(self, value: float | None) -> None:
        """The slider at the session's balance, and its b beside it (off, with a dash, while the network takes none).

        With auto on, the slider shows the b the last fusion chose and the
        user cannot move it (the Auto box says so).
        """
        if value is not None:
            self.balance.blockSignals(True)
            self.balance.setValue(round(100 * value))
            self.balance.blockSignals(False)
        self.balance.setEnabled(value is not None and not self.session.auto_balance)
        self.balance_auto.setEnabled(value is not None)
        self.balance_label.setText("b —" if value is None else f"b {value:.2f}")

    def _on_live(self, on: bool) -> None:
        self.session.live = on
        self.request_live()

    # ------------------------------------------------------------ scripting
    def pair(self):
        """The (anatomical, functional) layers currently picked (None where empty)."""
        return self.pickers.pair()

    def set_pair(self, anatomical, functional):
        """Pick the two layers to fuse (as a user would in the pickers); ``ValueError`` for a non-image layer."""
        self.pickers.set_pair(anatomical, functional)

    def balance_value(self) -> float | None:
        """The balance passed to the network: the slider's b in [0, 1], None when it does not apply."""
        return self.session.balance

    def map_choice(self) -> outputs.MapChoice | None:
        """The map "Show map" picks (None: the fused image)."""
        return self.session.map_choice

    @property
    def table_data(self) -> dict:
        """The metric table shown: ``{column: {row: value}}`` (empty before a fusion)."""
        return self.session.metrics

    def last_result(self) -> dict:
        """``{role: layer}`` of the last result written (empty before the first)."""
        return {} if self.session.result is None else dict(self.session.result.layers)

    @property
    def live_slice(self) -> int | None:
        """The stack slice the output layers last received in Live mode (None after a whole fusion)."""
        return None if self.session.result is None else self.session.result.index

    def copy_table(self) -> None:
        """Put the metric table on the clipboard, tab separated."""
        self.exports.copy_table()

    def export_csv(self, path):
        """Write the metric table to ``path`` as CSV; returns the path."""
        return self.exports.export_csv(path)

    def export_figure(self, path):
        """Write one PNG of the result's labelled tiles with the metric table beneath; returns the path."""
        return self.exports.export_figure(path)

    def save_screenshot(self, path):
        """Save what the canvas shows as a PNG; returns the path."""
        return self.exports.save_screenshot(path)

    # ---------------------------------------------------------------- maps
    def _on_map_choice(self) -> None:
        """The map picked is shown at once from the result, or computed when the result has none."""
        s = self.session
        s.map_choice = self.show_map.currentData()
        if s.maps_missing():
            self.jobs.submit(JobKind.MAPS)
        elif s.result is not None:
            results.show_choice(self.viewer, s.map_choice, s.result.layers)

    def _on_channel(self, *_) -> None:
        """Show the chosen channel's maps from the kept maps at once; else compute them, if a map is on show."""
        if not results.show_kept_channel(self.viewer, self.session) and self.session.maps_missing():
            self.jobs.submit(JobKind.MAPS)

    # -------------------------------------------------------------- results
    def _show_result(self, result) -> None:
        """A result is on show: its exports, its weight map choice, the metric group's title."""
        if result is None:
            return
        self.figure_btn.setEnabled(True)
        self.volume_btn.setVisible(result.whole_volume)
        self.show_map.offer_weight(result.origin.names if result.weighted else None)
        self._title_metrics()

    def _title_metrics(self, *_) -> None:
        """Title the metric group with the slice the table describes, for the view as it is now."""
        box = self.table.parentWidget()  # the group box the table is laid out in
        if self.session.result is not None:
            title, tip = results.metrics_title(self.viewer, *self.session.result.metric_slice)
            box.setTitle(title)
            box.setToolTip(tip)

    def _fit_tile_labels(self, tiles: list) -> float:
        """Give the Compare tiles' labels a font size at which each name fits its tile (returns it)."""
        window = self.window()
        canvas = window.centralWidget() if isinstance(window, QMainWindow) else None  # the viewer's canvas
        _, columns = layer_io.grid_of(self.viewer).actual_shape(self.viewer.layers)
        width = (canvas.width() if canvas is not None else 1000) / max(columns, 1)

        def text_width(text: str, points: float) -> float:
            font = QFont(self.font())
            font.setPointSizeF(points)
            return QFontMetricsF(font).horizontalAdvance(text)

        return compare.fit_labels(tiles, width, text_width)

    # ---------------------------------------------------------------- jobs
    @property
    def busy(self) -> bool:
        """Whether a job is running, waiting, or about to be requested (Live debounce)."""
        return self.session.busy or self.live_trigger.pending

    @property
    def jobs_started(self) -> int:
        """Fusion and resample jobs started so far (the network's warm-up not counted)."""
        return self.jobs.jobs_started

    def request_live(self) -> None:
        """Ask for a debounced re-fusion of the current slice when Live is on (:class:`~.live.LiveTrigger`)."""
        if self.session.live:
            self.live_trigger.changed()

    def _slice_on_view(self) -> int | None:
        """The anatomical stack's slice on view (None without a stack)."""
        a, _ = self.session.pair
        if a is None or len(layer_io.spatial_shape(a)) != 3:
            return None
        return layer_io.data_index(a, self.viewer.dims.point)

    def fuse(self) -> None:
        """Fuse the picked pair (a whole stack slice by slice) in a worker."""
        self.jobs.submit(JobKind.FUSE)

    def compare(self) -> None:
        """Fuse, add the chosen baselines' results and show all side by side, labelled."""
        self.jobs.submit(JobKind.COMPARE)

    def resample(self) -> None:
        """Resample the functional layer onto the anatomical grid (world coordinates) in a worker.

        The result is always a NEW layer "<name> resampled", which is then picked.
        """
        a, b = self.session.pair
        if a is None or b is None or len(layer_io.spatial_shape(a)) != len(layer_io.spatial_shape(b)):
            self.session.say("error", "resampling needs two layers of the same dimensionality")
            return
        self.jobs.submit(JobKind.RESAMPLE)

    def cancel(self, reason: str | None = None) -> None:
        """Stop the running job between slices and drop any waiting request."""
        self.live_trigger.stop()
        self.jobs.cancel(reason)

    def _on_wanted(self, kind: JobKind) -> None:
        if kind is JobKind.LIVE:
            self.request_live()
        else:
            self.jobs.submit(kind)

    def _show_job(self, kind: JobKind | None) -> None:
        """While a job the user may stop runs: Fuse, Compare and Resample off, Cancel on."""
        running = kind is not None and kind is not JobKind.WARM_UP
        for btn in (self.fuse_btn, self.compare_btn, self.resample_btn):
            btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _on_compared(self, tiles: list) -> None:
        """A comparison's grid is shown: labels that fit their tiles, and every tile fitted once drawn."""
        self._fit_tile_labels(tiles)
        # fit every tile once the canvas has made the grid's viewboxes (they are empty until it draws)
        QTimer.singleShot(50, self.jobs.guard(self.viewer.reset_view))

    def _on_misaligned(self, outcome) -> None:
        """The fused pair looks out of register: offer Align (unless an alignment runs)."""
        if not self.align_panel.busy:
            found, (a, b) = outcome.misalignment, outcome.request.origin.inputs
            self.align_panel.offer(
                found, found.message(roles.short_name(a), roles.short_name(b)), outcome.request.microscopy
            )

    def _on_layer_removed(self, event) -> None:
        if any(event.value is ly for ly in self.session.job_layers):
            self.cancel(f"'{event.value.name}' was removed; the fusion was cancelled and no layer was changed.")

    def _on_step(self, event=None) -> None:
        """The slider moved: Live re-fuses a stack's slice on view when the layers hold another."""
        if self.session.live and (z := self._slice_on_view()) is not None and z != self.live_slice:
            self.live_trigger.stepped()
