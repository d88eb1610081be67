"""The widget's "Fine-tune on these layers" section: train a preset on the current pair, save it.

:class:`FinetunePanel` runs :func:`napari_lightfusion.finetune.finetune_steps` on the two layers the
dock widget has picked (``get_pair()``), in a napari worker thread, with the progress bar every job of
the dock uses (:class:`JobProgress`, which stays after the run and says how it ended), a live readout
of the training loss and the held-out scores and a small loss plot. By default (*Pick the best
preset*) the base is the preset that scores best on the held-out part of the pair, as ``lightfusion
finetune --from auto`` does; unticked, the base is the preset in the list (which follows the preset
the widget fuses with). At the end it shows which base and which loss were used and why, the held-out
Qabf, SSIM and VIF before and after, and offers to save the weights as a custom preset under a free
name; ``on_saved(name)`` then tells the dock widget, which lists and selects it. A run that did not
beat its base on the held-out part says so ("Kept the base: ...") and offers nothing to save. The
time budget counts preparing the pair and scoring the presets too, so the shortest offered
(:data:`MIN_MINUTES`) leaves room for training steps. Nothing heavy runs on the GUI thread: the
slots only copy numbers into labels and repaint the plot.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QPointF, QRect, Qt, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..displayed import as_displayed
from ..engine import available_devices
from ..finetune import AUTO, KEPT_BASE, FinetuneConfig, FinetuneResult, Progress, finetune_steps
from ..generators import Steps
from ..inputs import prepare_pair
from ..messages import described, first_line
from ..session.layer_io import check_pair, fusion_inputs
from ..training import held_out_score
from ..weights import all_presets, custom_presets, save_custom_preset
from .progress import JobProgress

#: Least time between two progress reports sent to the GUI thread, seconds.
REPORT_EVERY_S = 0.1
#: The progress bar's steps: a run's share of its step or time budget, in thousandths.
BAR_STEPS = 1000
#: Shortest time budget offered, minutes: preparing a pair and validating the base take seconds.
MIN_MINUTES = 0.5


def finetune_job(inputs: dict, base: str, config: FinetuneConfig, device: str, cancel: threading.Event):
    """Worker body: read the layers' data, fine-tune, yield ``(Progress, new losses)``; return the outcome.

    Reports are throttled to one per ``REPORT_EVERY_S`` (and every
    validation). Returns ``{"result": FinetuneResult}`` or ``{"error": one
    line}``; it never raises, so no traceback reaches the user.
    """
    try:
        inputs = as_displayed(inputs)
        images = (np.asarray(inputs["a"]), np.asarray(inputs["b"]))
        pair = prepare_pair(*images, inputs["a_limits"], inputs["b_limits"], inputs["a_rgb"], inputs["b_rgb"])
        steps = Steps(finetune_steps([pair], base, config=config, device=device, cancel=cancel))
        losses, last, counted = [], 0.0, 0
        for update in steps:
            if update.step > counted:  # the last step is reported twice: trained, then validated
                losses.append((update.step, update.loss))
                counted = update.step
            now = time.perf_counter()
            if update.validation is not None or now - last >= REPORT_EVERY_S:
                last = now
                yield update, losses
                losses = []
        return {"result": steps.value}
    except ValueError as exc:  # bad inputs, presets, weights: the user can fix these
        return {"error": first_line(exc)}
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory: report in one line, stay usable
        return {"error": f"fine-tuning failed: {described(exc)}"}


class LossPlot(QWidget):
    """Training loss (grey line) and validation loss (blue dots and line) against the step."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.clear()

    def clear(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.validations: list[tuple[int, float]] = []
        self.update()

    def add_losses(self, points: list[tuple[int, float]]) -> None:
        self.losses += [(s, v) for s, v in points if np.isfinite(v)]
        self.update()

    def add_validation(self, step: int, loss: float) -> None:
        if np.isfinite(loss):
            self.validations.append((step, loss))
            self.update()

    def areas(self) -> tuple[QRect, QRect]:
        """``(legend, plot)``: the legend's strip above the plot's box, so that no line runs under it."""
        strip = self.fontMetrics().height() + 2
        inner = self.rect().adjusted(4, 2, -4, -4)
        return QRect(inner.left(), inner.top(), inner.width(), strip), inner.adjusted(0, strip + 2, 0, 0)

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        legend, rect = self.areas()
        painter.setPen(QPen(QColor(200, 200, 200)))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(legend, right, "training (grey), validation (blue) loss")
        painter.setPen(QPen(QColor(90, 90, 90)))
        painter.drawRect(rect)
        points = self.losses + self.validations
        if len(points) < 2:
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, "loss plot")
            return
        steps = [s for s, _ in points]
        # the scale follows the validation and the middle of the training losses, not their spikes
        values = [v for _, v in self.validations] + list(np.percentile([v for _, v in self.losses] or [0], [5, 95]))
        x0, x1 = min(steps), max(max(steps), min(steps) + 1)
        y0, y1 = min(values), max(max(values), min(values) + 1e-6)

        def to_point(step, value):
            x = rect.left() + (step - x0) / (x1 - x0) * rect.width()
            y = rect.bottom() - (min(max(value, y0), y1) - y0) / (y1 - y0) * rect.height()
            return QPointF(x, y)

        stride = max(1, len(self.losses) // max(rect.width(), 1))
        if len(self.losses) > 1:
            painter.setPen(QPen(QColor(150, 150, 150), 1))
            painter.drawPolyline(QPolygonF([to_point(s, v) for s, v in self.losses[::stride]]))
        if self.validations:
            painter.setPen(QPen(QColor(60, 140, 230), 2))
            line = [to_point(s, v) for s, v in self.validations]
            if len(line) > 1:
                painter.drawPolyline(QPolygonF(line))
            for p in line:
                painter.drawEllipse(p, 2.5, 2.5)


def suggested_name(anatomical: str, functional: str) -> str:
    """A preset name from the two layer names, in the characters a preset name may hold."""
    name = re.sub(r"[^A-Za-z0-9 ._+-]+", "-", f"{functional} + {anatomical}").strip(" ._+-")
    return name[:60] or "my preset"


def free_name(name: str, taken) -> str:
    """``name``, or ``name 2``, ``name 3``... : the first that is not in ``taken`` (the presets listed)."""
    taken = set(taken)
    if name not in taken:
        return name
    return next(f"{name[:56]} {k}" for k in range(2, len(taken) + 3) if f"{name[:56]} {k}" not in taken)


def kept_base_text(base: str) -> str:
    """What a run that did not beat its base says: the preset is unchanged, nothing to save."""
    return f"{KEPT_BASE[0].upper()}{KEPT_BASE[1:]}, so '{base}' is unchanged and there is nothing new to save."


def finished_text(result: FinetuneResult) -> str:
    """What the progress bar reads once a run is over: how it ended and the held-out score before and after."""
    ended, before = "cancelled" if result.cancelled else "finished", held_out_score(result.before)
    if result.improved:
        return f"{ended}: held-out score {before:.3f} → {held_out_score(result.after):.3f}"
    return f"{ended}: kept the base, held-out score {before:.3f}"


def summary_text(result: FinetuneResult) -> str:
    """The end of a run (:meth:`FinetuneResult.report`): base and loss and why, held-out scores, verdict."""
    lines = [*result.report()[:-1], kept_base_text(result.base) if result.kept_base else result.verdict]
    return "\n".join(line[0].upper() + line[1:] for line in lines)


class FinetunePanel(QWidget):
    """Fine-tune a preset on the dock widget's current pair and save it as a custom preset.

    ``get_pair()`` returns the current ``(anatomical_layer,
    functional_layer)`` or ``(None, None)``; ``on_saved(name)`` is called
    after the result is saved as the custom preset ``name``.
    """

    #: Emitted with the :class:`FinetuneResult` or an error string when a run ends.
    done = Signal(object)

    def __init__(self, viewer, get_pair: Callable, on_saved: Callable[[str], object] | None = None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.get_pair = get_pair
        self.on_saved = on_saved
        self.result: FinetuneResult | None = None
        self._worker = None
        self._cancel: threading.Event | None = None
        self._layers: tuple[str, str] | None = None

        self.auto_base = QCheckBox("Pick the best preset")
        self.auto_base.setChecked(True)
        self.base = QComboBox()
        self.base.setEnabled(False)
        self.minutes = QDoubleSpinBox(decimals=1, minimum=MIN_MINUTES, maximum=120.0, singleStep=0.5, value=2.0)
        self.minutes.setSuffix(" min")
        self.steps = QSpinBox(minimum=0, maximum=1_000_000, singleStep=100, value=0)
        self.steps.setSpecialValueText("no limit")
        self.device = QComboBox()
        self.device.addItems(["auto", *available_devices()])
        self.start_btn = QPushButton("Fine-tune on these layers")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.progress = JobProgress()  # hidden until the first run, then shows how the last one ended
        self.readout = QLabel("")
        self.readout.setWordWrap(True)
        self.plot = LossPlot()
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.name = QLineEdit()
        self.name.setPlaceholderText("name for the new preset")
        self.name.setMinimumWidth(140)
        self.save_btn = QPushButton("Save as preset…")
        self.save_btn.setEnabled(False)

        form = QFormLayout()
        start_from = QHBoxLayout()
        start_from.addWidget(self.auto_base)
        start_from.addWidget(self.base, 1)
        form.addRow("Start from", start_from)
        form.addRow("Time budget", self.minutes)
        form.addRow("Steps", self.steps)
        form.addRow("Device", self.device)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn, 1)
        buttons.addWidget(self.cancel_btn)
        save = QHBoxLayout()
        save.addWidget(self.name, 1)
        save.addWidget(self.save_btn)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.readout)
        layout.addWidget(self.plot)
        layout.addWidget(self.summary)
        layout.addLayout(save)
        tips = {
            self.auto_base: "Score every preset on the held-out part of the pair and start from the best",
            self.base: "The preset (bundled or your own) the fine-tuning starts from, when not picked by score",
            self.minutes: "Stop after this much time, preparing the pair included (the best weights so far are kept)",
            self.steps: "Stop after this many training steps instead (no limit: the time budget decides)",
            self.start_btn: "Train on random crops of the two picked layers; part of each is held out to validate",
            self.save_btn: "Keep the fine-tuned weights as a preset of this name, listed with the bundled ones",
        }
        for widget, tip in tips.items():
            widget.setToolTip(tip)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.save_btn.clicked.connect(self.save)
        self.auto_base.toggled.connect(lambda on: self.base.setEnabled(not on))
        self.refresh_presets()

    # ------------------------------------------------------------------ API

    @property
    def busy(self) -> bool:
        """True while a fine-tuning runs."""
        return self._worker is not None

    def refresh_presets(self, select: str | None = None) -> None:
        """Re-read the preset list (bundled, then custom), keeping or setting the selection."""
        current = select or self.base.currentText() or "PET-MRI"
        self.base.clear()
        self.base.addItems(all_presets())
        if current in all_presets():
            self.base.setCurrentText(current)

    def base_choice(self) -> str:
        """What the run starts from: "auto" (the best preset on the held-out part) or the listed preset."""
        return AUTO if self.auto_base.isChecked() else self.base.currentText()

    def config(self) -> FinetuneConfig:
        """The recipe with the panel's budget."""
        steps = self.steps.value() or None
        return FinetuneConfig(steps=steps, minutes=self.minutes.value())

    def start(self) -> None:
        """Fine-tune on the current pair in a worker (a notification says why not, if it cannot)."""
        if self.busy:
            return
        a, b = self.get_pair()
        if a is None or b is None or a is b:
            show_error("LightFusion: pick two different image layers to fine-tune on")
            return
        problem = check_pair(a, b)
        if problem:
            show_error(f"LightFusion: {problem[1]}")
            return
        self.result = None
        self._layers = (a.name, b.name)
        self._cancel = threading.Event()
        self.plot.clear()
        self.summary.setText("")
        self.save_btn.setEnabled(False)
        self.readout.setText(f"Preparing '{a.name}' and '{b.name}'…")
        self.progress.start(BAR_STEPS, "fine-tuning", percent=True)
        self.start_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        job = (fusion_inputs(a, b), self.base_choice(), self.config(), self.device.currentText(), self._cancel)
        worker = create_worker(finetune_job, *job, _start_thread=False)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def cancel(self) -> None:
        """Stop at the next step; the best weights so far are kept and offered for saving."""
        if self._cancel is not None:
            self._cancel.set()
            self.readout.setText(self.readout.text() + " — cancelling…")

    def save(self) -> str | None:
        """Save the result as a custom preset named in the name field; return the name (None if refused)."""
        if self.result is None:
            return None
        if not self.result.improved:
            show_error(f"LightFusion: {kept_base_text(self.result.base)}")
            return None
        name = self.name.text().strip()
        if not name:
            show_error("LightFusion: give the new preset a name")
            return None
        if name in custom_presets():
            show_error(f"LightFusion: a preset named '{name}' exists already; choose another name")
            return None
        extra = {"layers": list(self._layers or ())}
        try:
            save_custom_preset(name, model=self.result.model, sidecar=self.result.sidecar(**extra))
        except (ValueError, OSError) as exc:
            show_error(f"LightFusion: {first_line(exc)}")
            return None
        show_info(f"LightFusion: saved preset '{name}'")
        self.refresh_presets()
        self.save_btn.setEnabled(False)
        if self.on_saved is not None:
            self.on_saved(name)
        return name

    # ---------------------------------------------------------------- slots

    def _on_progress(self, value: tuple[Progress, list]) -> None:
        update, losses = value
        self.plot.add_losses(losses)
        if update.validation is not None:
            self.plot.add_validation(update.step, update.validation["loss"])
        self.progress.step(round(BAR_STEPS * update.fraction))
        text = f"step {update.step}"
        if np.isfinite(update.loss):
            text += f" · loss {update.loss:.2f}"
        best = ", ".join(f"{name} {update.best[name]:.3f}" for name in ("Qabf", "SSIM", "VIF"))
        text += f" · {update.seconds:.0f} s · best held-out at step {update.best_step}: {best}"
        self.readout.setText(text)

    def _on_returned(self, outcome: dict) -> None:
        error = outcome.get("error")
        if error is not None:
            self.readout.setText(error)
            self.progress.finish("fine-tuning failed", reached=False)  # nothing was trained: not "100 %"
            show_error(f"LightFusion: {error}")
            self.done.emit(error)
            return
        result = self.result = outcome["result"]
        self.progress.finish(finished_text(result))
        kept = not result.improved
        self.summary.setText(summary_text(result))
        self.save_btn.setEnabled(not kept)
        name = self.name.text().strip() or (suggested_name(*self._layers) if self._layers else "")
        if not kept and name:  # a name saved by a previous run is taken now: offer a free one
            self.name.setText(free_name(name, all_presets()))
        self.done.emit(result)

    def _on_finished(self) -> None:
        self._worker = None
        self._cancel = None
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
