"""The network's warm-up: load the picked preset's network before the first Fuse, and learn its default balance."""

from __future__ import annotations

import threading


def warm_up(preset: str, device: str) -> float | None:
    """Load the preset's network and build its inference session, so that the first Fuse is fast.

    Runs in a worker when the widget opens and when the preset changes.
    Returns the network's default balance (None: it is not conditioned on
    one, as the paper's networks). Failures are left for the first real
    fusion to report (with its inputs, in one line).
    """
    from .. import engine, fastpath
    from ..weights import model_for

    try:
        model = model_for(preset)
        if engine.select_backend(engine.resolve_device(device)) == "onnx":
            fastpath.session_for(model, None)
    except Exception:  # noqa: BLE001 - reported by the fusion that needs it
        return None
    return model.config.balance


class WarmUp:
    """:func:`warm_up` in a plain thread, polled by the widget.

    Not a napari worker: it holds no Qt object, so a viewer closed (or an
    application quit) while the network loads leaves nothing behind that
    could be signalled after Qt deleted it. Not a daemon thread either:
    Python waits the second or so it needs at exit, instead of killing it
    inside torch or ONNX Runtime (which aborts the process). ``load`` is the
    function run (:func:`warm_up` unless a caller passes another).
    """

    abort_requested = False

    def __init__(self, preset: str, device: str, load=None):
        self.result = None
        self.preset = preset  #: the preset it loads
        self._load = load or warm_up
        self._thread = threading.Thread(target=self._run, args=(preset, device), name="lightfusion-warm-up")

    def _run(self, preset, device):
        self.result = self._load(preset, device)

    def start(self) -> None:
        self._thread.start()

    def quit(self) -> None:
        """Nothing to stop: loading a network is short and has no side effect but a cache."""

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()
