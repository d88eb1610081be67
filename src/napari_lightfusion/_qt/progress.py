"""A progress bar with the elapsed time, inside the dock (not in napari's activity panel)."""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

#: How often the elapsed time is redrawn, milliseconds.
TICK_MS = 100


class JobProgress(QWidget):
    """``start(total, text)``, ``step(done)``, then ``stop()`` (hide) or ``finish(text)`` (stay, with ``text``).

    Hidden until a job starts; after ``stop()`` too.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.elapsed = QLabel()
        self.elapsed.setMinimumWidth(48)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.elapsed)
        self._since = None
        self._timer = QTimer(self, interval=TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.setVisible(False)

    def start(self, total: int, text: str, percent: bool = False) -> None:
        """Show the bar for a job of ``total`` steps (0: a busy bar with no steps).

        ``percent``: the bar reads "``text`` 40%" rather than "``text`` 400/1000",
        for a job whose steps are shares of a budget rather than counted work.
        """
        self._since = time.perf_counter()
        self.bar.setRange(0, max(total, 0))
        self.bar.setValue(0)
        self.bar.setFormat(f"{text} %p%" if percent else f"{text} %v/%m" if total > 1 else text)
        self._tick()
        self._timer.start()
        self.setVisible(True)

    def step(self, done: int, total: int | None = None) -> None:
        """``done`` steps are finished (of ``total``, when the job only now knows it)."""
        if total is not None and total != self.bar.maximum():
            self.bar.setRange(0, total)
            self.bar.setFormat(f"{self.bar.format().split(' %v')[0]} %v/%m")
        if self.bar.maximum() > 0:
            self.bar.setValue(min(done, self.bar.maximum()))

    def stop(self) -> None:
        """Hide the bar (the job ended, finished or not)."""
        self._timer.stop()
        self._since = None
        self.setVisible(False)

    def finish(self, text: str, reached: bool = True) -> None:
        """End the job but keep the bar shown, reading ``text``: full if the job ``reached`` its end, else empty.

        The elapsed time stays at the job's length; the next :meth:`start` replaces both.
        """
        self._tick()
        self._timer.stop()
        self._since = None
        self.bar.setRange(0, max(self.bar.maximum(), 1))  # a busy bar gets an end to show
        self.bar.setValue(self.bar.maximum() if reached else 0)
        self.bar.setFormat(text)

    def seconds(self) -> float:
        """Seconds since :meth:`start` (0 when no job runs)."""
        return 0.0 if self._since is None else time.perf_counter() - self._since

    def _tick(self):
        self.elapsed.setText(f"{self.seconds():.1f} s")
