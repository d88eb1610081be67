"""When Live re-fuses the slice on view: at once on a slider step after a pause, otherwise debounced."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer

#: Debounce of Live requests (slider moves, contrast drags, the balance), milliseconds.
DEBOUNCE_MS = 100


class LiveTrigger(QObject):
    """Turns the user's changes into Live jobs (``fire()`` submits one).

    A change (contrast limits, the balance: :meth:`changed`) is debounced:
    one job once the user has paused for :data:`DEBOUNCE_MS`, however many
    changes came before. A slider step (:meth:`stepped`) when nothing runs
    or waits fuses at once and debounces what follows, so that one step (an
    arrow key, the way slices are read) shows its slice without waiting out
    the window; the window's end fuses again only if the slice on view
    (``slice_on_view()``) or anything else changed since. ``idle()`` says
    whether no job runs or waits. ``coming`` is a plain attribute (any
    thread may read it): whether the window is open, so that another job may
    follow; a Live job holds its metric table back meanwhile.
    """

    def __init__(self, fire: Callable[[], None], slice_on_view: Callable[[], int | None], idle, parent=None):
        super().__init__(parent)
        self._fire, self._slice_on_view, self._idle = fire, slice_on_view, idle
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self._on_quiet)
        self._leading: int | None = None  # the slice fused at once, while nothing else changed since
        self.coming = False

    @property
    def pending(self) -> bool:
        """Whether a debounced job is still to come."""
        return self._timer.isActive()

    def changed(self) -> None:
        """Something the fusion depends on changed: one job when the user pauses."""
        self._leading = None
        self._open()

    def stepped(self) -> None:
        """The slider moved to another slice: fuse now if nothing runs or waits, else when the user pauses."""
        if not self._timer.isActive() and self._idle():
            self._leading = self._slice_on_view()
            self._fire()
        self._open()

    def stop(self) -> None:
        """Drop the job to come (Cancel)."""
        self._timer.stop()
        self._leading = None
        self.coming = False

    def _open(self) -> None:
        self.coming = True
        self._timer.start()

    def _on_quiet(self) -> None:
        self.coming = False
        leading, self._leading = self._leading, None
        if leading is None or leading != self._slice_on_view():
            self._fire()
