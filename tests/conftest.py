"""Shared fixtures: small synthetic images, the Harvard data root, a docked widget, blocked imports.

Tests take what they need as fixtures (``harvard_root``, ``outputs``,
``wait_idle``, ``fingerprint``, ``run_blocked``, ``gate``...). ``fingerprint``,
``outputs`` and ``wait_idle`` are also plain functions here, for tests that
still import them from this file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from napari_lightfusion._sample_data import phantom_mri, phantom_pet, phantom_stack

# Hypothesis profiles of the property test (tests/test_property.py): "ci", the default, is short;
# "long" fuzzes for a while. Pick one with `pytest --hypothesis-profile=long` (Hypothesis's own
# option) or the HYPOTHESIS_PROFILE environment variable.
settings.register_profile(
    "ci", max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Longest a test waits for the widget to go idle, milliseconds.
WAIT_MS = 60_000

#: Longest a call waits at a closed :class:`Gate`, seconds: shorter than :data:`WAIT_MS`, so that a worker
#: held by a test that failed before opening its gate still ends within its fixtures' waits for idle.
GATE_S = 30

#: The repository's root (the folder that holds ``src/`` and ``tests/``).
REPO = Path(__file__).resolve().parents[1]

#: Where the Harvard atlas data is unless ``LIGHTFUSION_DATA`` says otherwise.
DEFAULT_DATA = REPO.parent / "shared" / "data" / "harvard"


def data_root() -> Path:
    """The Harvard data root: ``$LIGHTFUSION_DATA``, else ``../shared/data/harvard`` beside the repository."""
    return Path(os.environ.get("LIGHTFUSION_DATA") or DEFAULT_DATA)


@pytest.fixture(scope="session")
def harvard_root() -> Path:
    """The Harvard atlas data root (holds ``train/`` and ``test/``); skips the test when it is absent."""
    root = data_root()
    if not (root / "test").is_dir():
        pytest.skip(f"Harvard atlas data not found at {root} (set LIGHTFUSION_DATA to its folder)")
    return root


@pytest.fixture
def grey_pair():
    """A grey MRI-like image and a grey functional-like image, 64 x 64."""
    mri = phantom_mri(64)
    func = (phantom_pet(64).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * 4.0
    return mri, func.astype(np.float32)


@pytest.fixture
def colour_pair():
    """The sample MRI-like grey image and PET-like RGB uint8 image, 64 x 64."""
    return phantom_mri(64), phantom_pet(64)


@pytest.fixture
def stack_pair():
    """A grey stack (5, 48, 48) and an RGB stack (5, 48, 48, 3)."""
    return phantom_stack(slices=5, size=48)


@pytest.fixture(name="fingerprint")
def fingerprint_fixture():
    """:func:`fingerprint` as a fixture."""
    return fingerprint


@pytest.fixture(name="outputs")
def outputs_fixture():
    """:func:`outputs` as a fixture."""
    return outputs


@pytest.fixture(name="wait_idle")
def wait_idle_fixture(qtbot):
    """:func:`wait_idle` as a fixture, bound to the test's ``qtbot``: ``wait_idle(widget)``."""
    return lambda widget, timeout=WAIT_MS: wait_idle(qtbot, widget, timeout)


@pytest.fixture
def notes(monkeypatch):
    """Collect the widget's error, warning and info notifications instead of showing them."""
    from napari_lightfusion._qt import widget as widget_module

    seen = {"error": [], "warning": [], "info": []}
    for kind in seen:
        monkeypatch.setattr(widget_module, f"show_{kind}", seen[kind].append)
    return seen


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Every test leaves torch's process-wide thread count as it found it.

    The command lines set it (``--threads``) for their process; run in this
    one, a test would otherwise hand its count to every later test (the fast
    path's accuracy tests run ONNX Runtime and PyTorch on torch's count).
    """
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture
def private_presets(tmp_path, monkeypatch):
    """A private custom-presets folder (``LIGHTFUSION_PRESETS_DIR``) and one torch thread for the test."""
    import torch

    folder = tmp_path / "presets"
    monkeypatch.setenv("LIGHTFUSION_PRESETS_DIR", str(folder))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield folder
    torch.set_num_threads(threads)


@pytest.fixture
def time_slots(monkeypatch):
    """``time_slots(obj, names) -> calls``: wrap methods of ``obj`` so that every call appends
    ``(name, GUI-thread CPU seconds, wall seconds)`` to ``calls`` (the GUI-thread responsiveness tests)."""
    import time

    def wrap(obj, names) -> list:
        calls = []
        for name in names:
            original = getattr(obj, name)

            def timed(*args, _original=original, _name=name):
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return _original(*args)
                finally:
                    calls.append((_name, time.thread_time() - cpu, time.perf_counter() - wall))

            monkeypatch.setattr(obj, name, timed)
        return calls

    return wrap


class Gate:
    """A turnstile on a method (see the ``gate`` fixture): the first ``passes`` calls go through at
    once, every later one waits until :meth:`open` (at most :data:`GATE_S`, then goes through).

    ``calls`` lists every call's arguments (after ``self`` for a method of a class), held or not;
    ``held`` says whether a call has reached the closed gate (and waits there, until it opens).
    """

    def __init__(self, passes: int):
        self.passes = passes
        self.calls: list[tuple] = []
        self._lock = threading.Lock()
        self._held = threading.Event()
        self._opened = threading.Event()

    @property
    def held(self) -> bool:
        return self._held.is_set()

    def open(self) -> None:
        """Let the held call and every later one through."""
        self._opened.set()

    def enter(self, args: tuple) -> None:
        """A call arrives: count it, and hold it while the gate is closed and its passes are used up."""
        with self._lock:
            self.calls.append(args)
            through = len(self.calls) <= self.passes
        if not through and not self._opened.is_set():
            self._held.set()
            self._opened.wait(GATE_S)


@pytest.fixture
def gate(monkeypatch):
    """``gate(obj, name, passes=1) -> Gate``: make ``obj.name`` (a method or function) wait at a :class:`Gate`.

    What a fixed sleep per call made likely, a gate makes certain: a test
    lets ``passes`` slices through, waits (``qtbot.waitUntil``) until the
    next one is ``held``, acts on the running job (cancel, close, delete an
    input), then opens the gate; at most one more call then ends before the
    job sees what the test did. Every gate opens at the end of the test.
    """
    gates = []

    def install(obj, name: str, passes: int = 1) -> Gate:
        original, turnstile = getattr(obj, name), Gate(passes)
        skip = 1 if isinstance(obj, type) else 0  # a method patched on its class gets ``self`` first

        def gated(*args, **kwargs):
            turnstile.enter(args[skip:])
            return original(*args, **kwargs)

        monkeypatch.setattr(obj, name, gated)
        gates.append(turnstile)
        return turnstile

    yield install
    for turnstile in gates:
        turnstile.open()


@pytest.fixture(name="fuse_now")
def fuse_now_fixture(qtbot):
    """Press Fuse through the widget's scripting surface and wait for the job: ``fuse_now(widget)``."""

    def fuse_now(widget) -> None:
        widget.fuse()
        wait_idle(qtbot, widget)

    return fuse_now


@pytest.fixture(name="role")
def role_fixture():
    """``role(viewer, name, which=-1)``: the output layer of ``name`` ("fused", "attention:1", ...)
    of the newest result set (or set ``which``), None when there is none."""

    def role(viewer, name: str, which: int = -1):
        found = [ly for ly in outputs(viewer) if ly.metadata["lightfusion"]["role"] == name]
        return found[which] if found else None

    return role


def fingerprint(layer) -> tuple:
    """What must never change on an input layer: data hash, contrast limits, visibility."""
    data = np.ascontiguousarray(layer.data)
    return (
        hashlib.sha256(data.tobytes()).hexdigest(),
        data.shape,
        tuple(layer.contrast_limits),
        layer.visible,
        layer.opacity,
    )


def outputs(viewer) -> list:
    """The layers the plugin wrote."""
    from napari_lightfusion.session.layer_io import MARK

    return [ly for ly in viewer.layers if MARK in ly.metadata]


def wait_idle(qtbot, widget, timeout: int = WAIT_MS) -> None:
    """Wait (processing Qt events) until the widget runs, awaits and schedules nothing."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


@pytest.fixture
def lightfusion(make_napari_viewer, qtbot):
    """A viewer with the LightFusion widget docked; waits for its jobs at the end."""
    from napari_lightfusion._qt.widget import LightFusionWidget

    viewer = make_napari_viewer()
    widget = LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    yield viewer, widget
    widget.cancel()
    wait_idle(qtbot, widget)


# --------------------------------------------------------------------------
# running Python with some imports blocked

_BLOCKER = textwrap.dedent(
    """
    # Written by tests/conftest.py: make the modules named in $LIGHTFUSION_BLOCK unimportable.
    import os
    import sys


    class _Blocked:
        def __init__(self, names):
            self.names = names

        def find_spec(self, name, path=None, target=None):
            if any(name == n or name.startswith(n + ".") for n in self.names):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None


    _names = [n for n in os.environ.get("LIGHTFUSION_BLOCK", "").split(",") if n]
    for _name in list(sys.modules):
        if any(_name == n or _name.startswith(n + ".") for n in _names):
            del sys.modules[_name]
    sys.meta_path.insert(0, _Blocked(_names))
    """
)


@pytest.fixture
def run_blocked(tmp_path_factory):
    """Run a command in a Python process where some modules cannot be imported.

    ``run_blocked(argv, blocked, timeout=300)``: ``argv`` is a list whose
    first item is a program of this environment (``python`` means this
    interpreter; ``lightfusion`` the console script beside it), ``blocked``
    the module names (``resource``, ``napari``...) that raise
    ``ModuleNotFoundError`` on import, also for the program's own start-up:
    a ``sitecustomize`` module on ``PYTHONPATH`` installs the block. Returns
    the ``subprocess.CompletedProcess`` (text output captured).
    """
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(_BLOCKER)
    bin_dir = Path(sys.executable).parent

    def run(argv: list[str], blocked: Iterable[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
        argv = list(argv)
        if argv[0] == "python":
            argv[0] = sys.executable
        elif not Path(argv[0]).is_absolute():
            found = [p for p in (bin_dir / argv[0], bin_dir / f"{argv[0]}.exe") if p.exists()]
            argv[0] = str(found[0]) if found else argv[0]
        env = dict(os.environ, **kwargs.pop("env", {}))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH")) if p)
        env["LIGHTFUSION_BLOCK"] = ",".join(blocked)
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, **kwargs)

    return run
