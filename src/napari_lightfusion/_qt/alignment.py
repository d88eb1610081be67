"""Align: the functional layer put in register with the anatomical one, as a transform on its affine.

Each Fuse estimates whether the pair is out of register (in its worker,
:func:`napari_lightfusion.session.jobs.run_request`); when it is, the widget
calls :meth:`AlignPanel.offer`: a notification says by how much and carries
an **Align** button, and the dock shows one too. Align runs a rigid
registration by mutual information (:func:`napari_lightfusion.align.register_rigid`;
for microscope channels a sub-pixel translation by phase correlation) in a
worker with progress and Cancel, then sets the functional layer's
``affine`` to ``T @ affine``: the user's data is never touched, and
**Undo align** puts the previous affine back. The record of the alignment
(matrix, method, library, metric before and after) is kept per layer for
the fused result's metadata (:meth:`AlignPanel.record_for`).
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import Notification, notification_manager, show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from .. import align
from ..resample import data_to_world, full_resolution
from .progress import JobProgress


def _registration(fixed, fixed_matrix, moving, moving_matrix, rgb: bool, microscopy: bool, report, stop):
    """Worker body: the registration of ``moving`` to ``fixed`` (``None`` when cancelled, a str on error)."""
    try:
        fixed, moving = np.asarray(fixed), np.asarray(moving)
        if microscopy:
            return align.register_translation(fixed, fixed_matrix, moving, moving_matrix, rgb_moving=rgb)
        return align.register_rigid(
            fixed, fixed_matrix, moving, moving_matrix, rgb_moving=rgb, progress=report, should_stop=stop.is_set
        )
    except align.Cancelled:
        return None
    except ValueError as exc:
        return f"cannot align: {exc}"


class PluginNotification(Notification):
    """A notification whose card names this plugin as its source.

    napari prints ``Source:`` on the card of a notification with actions
    (the Align button), and an event's source is the emitter that
    dispatched it: napari's ``NotificationManager``, which means nothing to
    the person reading it.
    """

    @property
    def source(self) -> str:
        return "napari-lightfusion"


class AlignPanel(QWidget):
    """The dock's Align / Undo align row and its progress bar (hidden until a pair looks misaligned)."""

    #: Emitted after Align or Undo align changed a layer's affine.
    aligned = Signal()
    #: The registration's progress (0..1), from the worker thread (queued to the GUI thread).
    progressed = Signal(float)

    def __init__(self, pair, parent=None):
        super().__init__(parent)
        self._pair = pair  # () -> (anatomical, functional) layers, as picked
        self.align_btn = QPushButton("Align functional to anatomical")
        self.align_btn.setToolTip(
            "Rigid registration by mutual information, written as the functional "
            "layer's affine (its data is not changed); Undo align puts it back"
        )
        self.undo_btn = QPushButton("Undo align")
        self.undo_btn.setEnabled(False)
        self.progress = JobProgress()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.align_btn)
        buttons.addWidget(self.undo_btn)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        self.setVisible(False)
        self.align_btn.clicked.connect(self.align)
        self.undo_btn.clicked.connect(self.undo)
        self.progressed.connect(lambda f: self.progress.step(round(100 * f)))
        self._worker = None
        self._stop = threading.Event()
        self._microscopy = False
        self._undo: list[tuple[weakref.ref, np.ndarray]] = []  # (layer, affine before), newest last
        self._records: dict[int, dict] = {}  # id(functional layer) -> its alignment's record

    @property
    def busy(self) -> bool:
        """Whether a registration runs."""
        return self._worker is not None

    def offer(self, misalignment: align.Misalignment, message: str, microscopy: bool) -> None:
        """The pair looks out of register: say so, with an Align button in the notification and the dock."""
        self._microscopy = microscopy
        self.setVisible(True)
        notification_manager.dispatch(
            PluginNotification(f"LightFusion: {message}", "warning", actions=[("Align", lambda *_: self.align())])
        )

    def align(self) -> None:
        """Register the functional layer to the anatomical one in a worker (Cancel while it runs)."""
        if self._worker is not None:  # the button reads "Cancel align" while one runs
            self._stop.set()
            return
        a, b = self._pair()
        if a is None or b is None or a is b:
            show_error("LightFusion: pick the anatomical and the functional layer to align")
            return
        self._stop = threading.Event()
        self.setVisible(True)
        self.progress.start(100, f"Aligning '{b.name}'")
        self.align_btn.setText("Cancel align")
        data = [full_resolution(ly) for ly in (a, b)]
        self._worker = create_worker(
            _registration,
            data[0],
            data_to_world(a),
            data[1],
            data_to_world(b),
            bool(b.rgb),
            self._microscopy,
            self.progressed.emit,
            self._stop,
        )
        target = weakref.ref(b)
        self._worker.returned.connect(lambda result: self._on_registered(result, target()))
        self._worker.finished.connect(self._on_finished)
        self._worker.start()

    def _on_registered(self, result, layer) -> None:
        if result is None or layer is None:
            show_info("LightFusion: alignment cancelled; no layer was changed")
            return
        if isinstance(result, str):
            show_error(f"LightFusion: {result}")
            return
        before = np.asarray(layer.affine.affine_matrix, dtype=float)
        self._undo.append((weakref.ref(layer), before))
        layer.affine = result.world_transform @ before
        self._records[id(layer)] = result.record()
        self.undo_btn.setEnabled(True)
        show_info(
            f"LightFusion: aligned '{layer.name}' ({_summary(result)}); its data is unchanged, Undo align puts it back"
        )
        self.aligned.emit()

    def _on_finished(self) -> None:
        self._worker = None
        self.progress.stop()
        self.align_btn.setText("Align functional to anatomical")

    def undo(self) -> None:
        """Put back the affine the last alignment replaced."""
        while self._undo:
            ref, before = self._undo.pop()
            layer = ref()
            if layer is not None:
                layer.affine = before
                self._records.pop(id(layer), None)
                show_info(f"LightFusion: '{layer.name}' is back where it was before Align")
                self.aligned.emit()
                break
        self.undo_btn.setEnabled(bool(self._undo))

    def record_for(self, layer) -> dict | None:
        """The record of the alignment now on ``layer`` (None when it was never aligned, or undone)."""
        return self._records.get(id(layer))


def _summary(result: align.Registration) -> str:
    shift = float(np.linalg.norm(result.shift_mm))
    return f"moved {shift:.1f} mm, turned {result.rotation_deg:.1f}°, {result.method}"
