"""The session's jobs in napari workers: at most one runs and one waits, and layers are written from outcomes only.

:class:`JobRunner` starts the job a
:class:`~napari_lightfusion.session.model.FusionSession` lets start
(:meth:`~napari_lightfusion.session.model.FusionSession.queue`), shows its
progress in the dock's :class:`~napari_lightfusion._qt.progress.JobProgress`,
and hands the outcome to :mod:`napari_lightfusion.session.results` on the
GUI thread. The network's warm-up runs in a plain thread, polled
(:class:`~napari_lightfusion.session.warm_up.WarmUp`). Once the dock is
destroyed (its dock or the viewer closed) the running job is stopped and
none of the runner's slots runs again (:meth:`JobRunner.guard`).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from ..balance_search import AUTO
from ..resample import iter_resample_layer
from ..session import layer_io, requests, results
from ..session.jobs import Outcome, PlanCache, run_lazy, run_request
from ..session.model import FusionSession, JobKind
from ..session.warm_up import WarmUp, warm_up

#: How often a running warm-up is polled, milliseconds.
WARM_UP_POLL_MS = 50


def _abandon(life: SimpleNamespace) -> None:
    """The dock is being destroyed: silence the runner's slots and stop its running job."""
    life.closed = True
    if life.worker is not None:
        life.worker.quit()


class JobRunner(QObject):
    """Runs ``session``'s jobs for ``viewer``, shown in ``progress``; ``alignment(layer)`` is a layer's Align record.

    Its signals: ``written({role: layer})`` when a job has written layers,
    ``compared(tiles)`` when a comparison's grid is shown (its layers, in
    tile order), ``misaligned(outcome)`` when a fusion found the pair out of
    register, ``resampled(anatomical, new layer)`` when a resampled layer was added.
    """

    written = Signal(dict)
    compared = Signal(list)
    misaligned = Signal(object)
    resampled = Signal(object, object)

    def __init__(self, viewer, session: FusionSession, progress, alignment, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.progress = progress
        self._alignment = alignment
        self.jobs_started = 0  #: fusion and resample jobs started so far (the network's warm-up not counted)
        self._worker = None
        self._cache = PlanCache()  # the last plan: Live scrolling does not re-normalise the stack
        self.hold = None  # Live jobs hold their metric table while this says another slice may come
        self._shown = self._superseded = False  # the running job's layers are written; a newer Live job stops it
        # Plain-Python state the workers' signals and the destroyed signal share.
        self._life = SimpleNamespace(closed=False, worker=None)
        self.destroyed.connect(lambda *_, life=self._life: _abandon(life))
        self._warm_timer = QTimer(self, interval=WARM_UP_POLL_MS)
        self._warm_timer.timeout.connect(self._poll_warm_up)

    def guard(self, slot, nargs: int | None = None):
        """``slot`` (given the first ``nargs`` arguments, all by default), silenced once the dock is destroyed."""
        life = self._life
        return lambda *args: None if life.closed else slot(*args[:nargs])

    def submit(self, kind: JobKind) -> None:
        """Run a job of ``kind`` now, or once the running one ends (the newest request waits).

        A Live slice asked for while a Live job has shown its slice and is
        only holding or computing its metric table stops that job at its
        next pause (its layers stay; the table of a slice scrolled past is
        not needed) and starts once it has.
        """
        clicked = time.perf_counter()
        if self.session.queue(kind, clicked):
            self._start(kind, clicked)
        elif kind is JobKind.LIVE and self._shown:
            self._supersede()

    def _supersede(self) -> None:
        """Stop the running Live job, whose slice is on show, at its next pause (once)."""
        if self.session.job is JobKind.LIVE and not self._superseded:
            self._superseded = True
            self._worker.quit()

    def cancel(self, reason: str | None = None) -> None:
        """Stop the running job between slices (a warm-up runs to its end) and drop the waiting one."""
        if self.session.cancel(reason):
            self._worker.quit()

    def _start(self, kind: JobKind, clicked: float) -> None:
        s = self.session
        if kind is JobKind.WARM_UP:
            self._worker = self._life.worker = WarmUp(s.preset, s.device, warm_up)
            s.started(kind)
            self._worker.start()
            self._warm_timer.start()
            return
        if kind is JobKind.RESAMPLE:
            a, b = s.pair
            if a is None or b is None:
                return
            worker = create_worker(iter_resample_layer, b, a)
            worker.yielded.connect(self.guard(lambda done: self.progress.step(done[0], done[1])))
            worker.returned.connect(self.guard(self._on_resampled))
            worker.aborted.connect(self.guard(s.aborted))
            layers, steps, text = (a, b), 0, f"Resampling '{b.name}'"
        else:
            request = requests.make_request(self.viewer, s, kind, clicked, self._alignment(s.pair[1]))
            if request is None:
                return
            origin = request.origin
            stack = len(layer_io.spatial_shape(origin.like)) == 3
            steps = origin.like.data.shape[0] if request.index is None and stack else 1
            if origin.lazy:  # dask layers: napari computes the slices it shows; one quick call, nothing to abort
                request.index, steps = None, 0
                worker = create_worker(run_lazy, request, self._cache)
            else:
                hold = self.hold if kind is JobKind.LIVE else None
                worker = create_worker(run_request, request, self._cache, hold)
                worker.yielded.connect(self.guard(self._on_yielded))
                worker.aborted.connect(self.guard(self._on_aborted))
            worker.returned.connect(self.guard(self._on_outcome))
            what = (
                f"slice {request.index}"
                if request.index is not None
                else (f"{steps} slices" if steps > 1 else "the image")
            )
            layers, text = origin.inputs, f"Fusing {what}"
            if request.balance == AUTO and not self._cache.holds(request):
                text = f"{text} (choosing b for the pair first)"
        worker.finished.connect(self.guard(self._on_finished))
        self._shown = self._superseded = False
        self.progress.start(steps, text)
        self.jobs_started += 1
        self._worker = self._life.worker = worker
        s.started(kind, layers, text)
        worker.start()

    def _poll_warm_up(self) -> None:
        if self.session.job is JobKind.WARM_UP and self._worker.done:
            self._warm_timer.stop()
            self.session.warmed(self._worker.preset, self._worker.result)
            self._on_finished()

    def _on_finished(self) -> None:
        self._worker = self._life.worker = None
        self.progress.stop()
        waiting = self.session.finished()
        if waiting is not None:
            self._start(*waiting)

    def _aborting(self) -> bool:
        return self._worker is not None and self._worker.abort_requested

    def _on_yielded(self, value) -> None:
        """A slice is done (progress), or everything is fused: write the layers now (None: a pause)."""
        if isinstance(value, Outcome):
            if value.error is None and not self._aborting():
                result = results.write_result(self.viewer, self.session, value)
                value.shown = self._shown = True
                self.written.emit(dict(result.layers))
                if self.session.pending is JobKind.LIVE:
                    self._supersede()  # another slice was asked for while this one fused
        elif value is not None:
            self.progress.step(value + 1)

    def _on_aborted(self) -> None:
        if not self._superseded:  # a newer Live slice stopped it: nothing to say
            self.session.aborted()

    def _on_outcome(self, outcome: Outcome) -> None:
        if self._aborting():
            return  # cancelled after the last slice: the layers stay as they were
        s = self.session
        if outcome.error:
            s.failed(outcome.error)
            return
        shown = outcome.shown
        result = results.complete(self.viewer, s, outcome)
        if not shown:
            self.written.emit(dict(result.layers))
        found = outcome.misalignment
        if found is not None and found.exceeds:
            self.misaligned.emit(outcome)
        if s.warm_needed:  # the warm-up gave way to this fusion: the balance still waits for it
            self.submit(JobKind.WARM_UP)
        if outcome.compare:
            self.compared.emit(results.write_baselines(self.viewer, s, outcome))
            self.written.emit(dict(s.result.layers))
        if s.maps_missing():  # a map was picked while this job fused without maps
            self.submit(JobKind.MAPS)

    def _on_resampled(self, value) -> None:
        data, kwargs = value
        a, b = self.session.job_layers
        style = dict(opacity=b.opacity, blending=b.blending)
        if not layer_io.is_colour(b):
            style.update(colormap=b.colormap, contrast_limits=b.contrast_limits)
        new = self.viewer.add_image(data, name=f"{b.name} resampled", **kwargs, **style)
        self.resampled.emit(a, new)
        text = f"added '{new.name}' on the grid of '{a.name}'; '{b.name}' is unchanged"
        self.session.status = f"{text[0].upper()}{text[1:]}."
        self.session.say("info", text)
