"""The LightFusion dock widget: Qt adaptation only.

Layer handling lives in :mod:`napari_lightfusion._qt.layer_io`, the computation
(fusion jobs, metrics, baselines) in :mod:`napari_lightfusion._qt.jobs`.
The network never runs on the GUI thread: every job runs in a napari
``thread_worker``; at most one job runs and one waits (the newest request
replaces the waiting one), Live requests are debounced by a single-shot
timer, and layers are written only from a finished job's outcome.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication, QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
    QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from . import layer_io as L
from ..baselines import BASELINES
from ..engine import available_devices
from ..model import ModelConfig
from .jobs import ROWS, Outcome, PlanCache, Request, run_request
from .table_text import format_value, to_csv, to_tsv
from ..weights import PRESETS

#: Debounce of Live requests (slider moves, contrast drags), milliseconds.
DEBOUNCE_MS = 100
ALL_BASELINES = "all baselines"


def _combo(items, data=None) -> QComboBox:
    box = QComboBox()
    for i, text in enumerate(items):
        box.addItem(text, None if data is None else data[i])
    return box


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


def _abandon(life: SimpleNamespace) -> None:
    """The widget is being destroyed: silence its slots and stop its running job."""
    life.closed = True
    if life.worker is not None:
        life.worker.quit()


class LightFusionWidget(QWidget):
    """Fuse two image layers with LightFusionNet and show why (maps, metrics)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.setMinimumWidth(360)
        self.viewer = napari_viewer
        self._worker = None
        self._job_layers = ()  # the input layers of the running job
        # Plain-Python state the worker's signals and the destroyed signal share: once
        # the widget is gone (its dock or the viewer closed) no slot of it may run.
        self._life = SimpleNamespace(closed=False, worker=None)
        self.destroyed.connect(lambda *_, life=self._life: _abandon(life))
        self._pending = None  # kind of the newest waiting request: "full", "live" or "compare"
        self._cache = PlanCache()
        self._version = 0  # bumped whenever an input's data or contrast changes
        self._watched = ()
        self._last_pair = None
        self._auto_pick = self._auto_preset = True
        self._live_index = None
        self.table_data: dict = {}
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(lambda: self._submit("live"))
        self._build_ui()
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved):
            ev.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_choices)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._refresh_choices()

    # ------------------------------------------------------------------ UI
    def _build_ui(self):
        self.anatomical, self.functional = QComboBox(), QComboBox()
        self.resample_btn = QPushButton("Resample functional onto anatomical grid")
        self.resample_btn.setVisible(False)
        self.preset = _combo(PRESETS)
        self.device = _combo(["auto", *available_devices()])
        width = ModelConfig().width
        self.view = _combo(["mean over channels"] + [f"channel {k}" for k in range(width)],
                           [None, *range(width)])
        self.baseline = _combo([*BASELINES, ALL_BASELINES])
        self.fuse_btn, self.cancel_btn = QPushButton("Fuse"), QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.live = QCheckBox("Live (follow slice and contrast)")
        self.overlays = QCheckBox("Show surprise/attention overlays")
        self.overlays.setChecked(True)
        self.compare_btn, self.shot_btn = QPushButton("Compare"), QPushButton("Save screenshot")
        self.status = QLabel("Pick two registered images and press Fuse.")
        self.status.setWordWrap(True)
        self.table = QTableWidget(len(ROWS), 1)
        self.table.setVerticalHeaderLabels(list(ROWS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setMinimumHeight(22 * len(ROWS) + 30)
        self.copy_btn, self.csv_btn = QPushButton("Copy"), QPushButton("Export CSV")

        form = QFormLayout()
        form.addRow("Anatomical", self.anatomical)
        form.addRow("Functional", self.functional)
        form.addRow(self.resample_btn)
        form.addRow("Preset", self.preset)
        form.addRow("Device", self.device)
        form.addRow("Maps show", self.view)
        form.addRow("Baseline", self.baseline)
        metrics = QGroupBox("Metrics (current slice)")
        box = QVBoxLayout(metrics)
        box.addWidget(self.table)
        box.addLayout(_row(self.copy_btn, self.csv_btn))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.fuse_btn, self.cancel_btn))
        layout.addWidget(self.live)
        layout.addWidget(self.overlays)
        layout.addLayout(_row(self.compare_btn, self.shot_btn))
        layout.addWidget(self.status)
        layout.addWidget(metrics)
        layout.addStretch(1)

        tips = {
            self.anatomical: "Grey structural image (MRI, CT); fused as its contrast limits show it",
            self.functional: "Functional image (PET/SPECT, usually colour); its colour is kept",
            self.preset: "Network weights; guessed from the inputs, choose to override",
            self.view: "Attention/surprise maps: mean over the network's channels, or one channel",
            self.baseline: "Classical method(s) in the metric table and in Compare",
            self.live: "Re-fuse the current slice when the slider, an input's data or contrast changes",
            self.compare_btn: "Fuse, add the baseline result(s) and show everything side by side",
            self.cancel_btn: "Stop a running stack between slices; no layer is half-written",
        }
        for widget, tip in tips.items():
            widget.setToolTip(tip)
        self.anatomical.activated.connect(self._on_user_pick)
        self.functional.activated.connect(self._on_user_pick)
        self.preset.activated.connect(self._on_user_preset)
        for box_ in (self.device, self.view, self.baseline):
            box_.activated.connect(lambda *_: self.request_live())
        self.resample_btn.clicked.connect(self.resample)
        self.fuse_btn.clicked.connect(lambda: self._submit("full"))
        self.cancel_btn.clicked.connect(self.cancel)
        self.live.toggled.connect(lambda on: self.request_live() if on else None)
        self.overlays.toggled.connect(self._show_overlays)
        self.compare_btn.clicked.connect(self.compare)
        self.shot_btn.clicked.connect(self._on_save_screenshot)
        self.copy_btn.clicked.connect(self.copy_table)
        self.csv_btn.clicked.connect(self._on_export_csv)

    # ------------------------------------------------------------- pickers
    def pair(self):
        """The (anatomical, functional) layers currently picked (None where empty)."""
        return tuple(self._choices[c.currentIndex()] if c.currentIndex() >= 0 else None
                     for c in (self.anatomical, self.functional))

    def set_pair(self, anatomical, functional):
        """Pick two layers (as a user would in the combo boxes)."""
        self.anatomical.setCurrentIndex(self._choices.index(anatomical))
        self.functional.setCurrentIndex(self._choices.index(functional))
        self._on_user_pick()

    def _on_layers_changed(self, event=None):
        if event is not None and event.type in ("inserted", "removed"):
            method = "connect" if event.type == "inserted" else "disconnect"
            getattr(event.value.events.name, method)(self._refresh_choices)
            if event.type == "removed" and any(event.value is ly for ly in self._job_layers):
                self.cancel()
                self.status.setText(f"'{event.value.name}' was removed; the fusion was cancelled.")
        self._refresh_choices()

    def _refresh_choices(self, event=None):
        """Follow layers being added, renamed and removed; keep or default the picks."""
        picked = list(self.pair()) if hasattr(self, "_choices") else [None, None]
        self._choices = L.image_layers(self.viewer.layers)
        if self._auto_pick or any(p not in self._choices for p in picked):
            picked = list(L.default_pair(self.viewer.layers))
        for combo, layer in zip((self.anatomical, self.functional), picked):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([ly.name for ly in self._choices])
            combo.setCurrentIndex(self._choices.index(layer) if layer in self._choices else -1)
            combo.blockSignals(False)
        self._on_pair_changed()

    def _on_user_pick(self, *_):
        self._auto_pick = False
        self._on_pair_changed()

    def _on_user_preset(self, *_):
        self._auto_preset = False
        self.request_live()

    def _on_pair_changed(self):
        """Watch the picked layers' data and contrast; guess the preset; check shapes."""
        a, b = self.pair()
        if (a, b) == self._last_pair:
            return
        self._last_pair = (a, b)
        for layer in self._watched:
            layer.events.data.disconnect(self._on_input_changed)
            layer.events.contrast_limits.disconnect(self._on_input_changed)
        self._watched = tuple(ly for ly in {id(a): a, id(b): b}.values() if ly is not None)
        for layer in self._watched:
            layer.events.data.connect(self._on_input_changed)
            layer.events.contrast_limits.connect(self._on_input_changed)
        if self._auto_preset:
            self.preset.setCurrentText(L.guess_preset(a, b))
        problem = L.check_pair(a, b) if a is not None and b is not None else None
        self.resample_btn.setVisible(problem is not None and problem[0] == "shape")
        if problem:
            self.status.setText(problem[1])
        self._on_input_changed()

    def _on_input_changed(self, event=None):
        self._version += 1
        self.request_live()

    def _on_step(self, event=None):
        a, _ = self.pair()
        if self.live.isChecked() and a is not None and len(L.spatial_shape(a)) == 3:
            if L.data_index(a, self.viewer.dims.point) != self._live_index:
                self.request_live()

    def resample(self):
        """Add the functional layer resampled onto the anatomical grid, and pick it."""
        a, b = self.pair()
        if a is None or b is None or len(L.spatial_shape(a)) != len(L.spatial_shape(b)):
            show_error("LightFusion: resampling needs two layers of the same dimensionality")
            return None
        new = L.add_resampled(self.viewer, a, b)
        self.set_pair(a, new)
        show_info(f"LightFusion: added '{new.name}' on the grid of '{a.name}'; '{b.name}' is unchanged")
        return new

    # ---------------------------------------------------------------- jobs
    def request_live(self):
        """Ask for a debounced re-fusion of the current slice when Live is on."""
        if self.live.isChecked():
            self._timer.start()

    @property
    def live_slice(self) -> int | None:
        """The stack slice the output layers last received in Live mode (None after a whole fusion)."""
        return self._live_index

    def busy(self) -> bool:
        """Whether a job is running, waiting, or about to be requested (debounce)."""
        return self._worker is not None or self._pending is not None or self._timer.isActive()

    def fuse(self):
        """Fuse the picked pair (a whole stack slice by slice) in a worker."""
        self._submit("full")

    def compare(self):
        """Fuse, add the chosen baselines' results and show all side by side (grid)."""
        self._submit("compare")

    def _submit(self, kind: str):
        if self._worker is not None:  # one running, one waiting: the newest wins
            if not (kind == "live" and self._pending in ("full", "compare")):
                self._pending = kind
            return
        self._start(kind)

    def _baselines(self) -> tuple[str, ...]:
        text = self.baseline.currentText()
        return tuple(BASELINES) if text == ALL_BASELINES else (text,)

    def _make_request(self, kind: str) -> Request | None:
        a, b = self.pair()
        if a is None or b is None or a is b:
            show_warning("LightFusion: pick two different image layers to fuse")
            return None
        problem = L.check_pair(a, b)
        if problem:
            self.resample_btn.setVisible(problem[0] == "shape")
            self.status.setText(problem[1])
            if kind != "live":  # Live shows it in the status line, without a pile of toasts
                (show_error if problem[0] == "dims" else show_warning)(f"LightFusion: {problem[1]}")
            return None
        inputs = L.fusion_inputs(a, b)
        stacked = len(L.spatial_shape(a)) == 3
        index = L.data_index(a, self.viewer.dims.point) if stacked else 0
        key = (id(a), id(b), id(inputs["a"]), id(inputs["b"]), self._version,
               inputs["a_limits"], inputs["b_limits"], inputs["a_rgb"], inputs["b_rgb"])
        return Request(
            inputs, self.preset.currentText(), self.device.currentText(), self.view.currentData(), key,
            index=index if kind == "live" else None, metric_index=index,
            baselines=self._baselines(), compare=kind == "compare",
            context={"like": a, "names": (a.name, b.name)},
        )

    def _start(self, kind: str):
        request = self._make_request(kind)
        if request is None:
            return
        slices = 1 if request.index is not None or len(L.spatial_shape(request.context["like"])) == 2 \
            else request.context["like"].data.shape[0]
        progress = {"total": slices, "desc": "LightFusion"} if slices > 1 else None
        worker = create_worker(run_request, request, self._cache, _progress=progress)
        life = self._life
        worker.yielded.connect(lambda value: None if life.closed else self._on_partial(value))
        worker.returned.connect(lambda outcome: None if life.closed else self._on_outcome(outcome))
        worker.aborted.connect(lambda: None if life.closed else self.status.setText("Cancelled; no layer was changed."))
        worker.finished.connect(lambda: None if life.closed else self._on_finished())
        self._worker = life.worker = worker
        self._job_layers = self.pair()
        self.cancel_btn.setEnabled(True)
        what = f"slice {request.index}" if request.index is not None else f"{slices} slice(s)"
        self.status.setText(f"Fusing {what} ...")
        worker.start()

    def cancel(self):
        """Stop the running job between slices and drop any waiting request."""
        self._timer.stop()
        self._pending = None
        if self._worker is not None:
            self._worker.quit()

    def _on_finished(self):
        self._worker = self._life.worker = None
        self._job_layers = ()
        self.cancel_btn.setEnabled(False)
        if self._pending is not None:
            kind, self._pending = self._pending, None
            self._start(kind)

    def _on_partial(self, value):
        """A Live slice is fused: show it now; its metrics arrive with the outcome."""
        if isinstance(value, Outcome) and value.error is None and not self._worker.abort_requested:
            self._write_layers(value)
            value.shown = True

    def _on_outcome(self, outcome):
        if self._worker is not None and self._worker.abort_requested:
            self.status.setText("Cancelled; no layer was changed.")
            return  # cancelled after the last slice: keep the layers as they were
        if outcome.error:
            show_error(f"LightFusion: {outcome.error}")
            self.status.setText(outcome.error)
            return
        if not outcome.shown:
            self._write_layers(outcome)
        self._show_table(outcome.table)
        res = outcome.result
        where = (f"slice {outcome.index}" if outcome.index is not None
                 else f"{outcome.slices} slices" if outcome.stacked else "the image")
        self.status.setText(f"Fused {where} with {res.preset or 'custom weights'} on {res.device} "
                            f"in {res.seconds:.2f} s.")
        if outcome.compare:
            L.order_for_grid(self.viewer, [f"baseline:{name}" for name in outcome.compare])
            L.grid_of(self.viewer).enabled = True

    def _write_layers(self, outcome):
        """Outputs: whole results replace layer data; a Live slice goes into full-size layers."""
        like, names = outcome.request.context["like"], outcome.request.context["names"]
        specs = L.output_specs(outcome.result, names, outcome.compare, self.overlays.isChecked())
        grey_ndim = 2 if outcome.index is not None else len(L.spatial_shape(like))
        L.show_outputs(self.viewer, specs, like, grey_ndim, outcome.index, outcome.slices)
        self._live_index = outcome.index

    def _show_overlays(self, visible: bool):
        for layer in self.viewer.layers:
            role = layer.metadata.get(L.MARK, "") if L.is_output(layer) else ""
            if role.startswith(("surprise", "attention")):
                layer.visible = visible

    # ------------------------------------------------------- table, files
    def _show_table(self, table: dict):
        self.table_data = table
        columns = list(table)
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        for c, column in enumerate(columns):
            for r, row in enumerate(ROWS):
                value = table[column].get(row, float("nan"))
                item = QTableWidgetItem(format_value(value))
                item.setData(Qt.UserRole, float(value))
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)

    def copy_table(self):
        """Put the metric table on the clipboard, tab separated."""
        QApplication.clipboard().setText(to_tsv(self.table_data))

    def export_csv(self, path) -> Path:
        """Write the metric table to ``path`` as CSV."""
        Path(path).write_text(to_csv(self.table_data))
        return Path(path)

    def save_screenshot(self, path) -> Path:
        """Save what the canvas shows, cropped to the data at its resolution, as a PNG."""
        self.viewer.export_figure(str(path), flash=False)
        return Path(path)

    def _ask_path(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return path

    def _on_export_csv(self):
        if path := self._ask_path("Export metrics", "lightfusion_metrics.csv", "CSV (*.csv)"):
            self.export_csv(path)

    def _on_save_screenshot(self):
        if path := self._ask_path("Save screenshot", "lightfusion.png", "PNG (*.png)"):
            self.save_screenshot(path)
