"""CPU fast path: ONNX Runtime sessions on the exported network (:mod:`napari_lightfusion.onnx_export`).

Eager PyTorch spends most of a small network's time in per-operator
overhead and in layout conversions; ONNX Runtime's CPU provider fuses each
convolution with its activation, can keep the whole graph in its blocked
``NCHWc`` layout and plans its memory once. The engine
(:mod:`napari_lightfusion.engine`) runs the network through this module on
the CPU (``onnxruntime`` and ``onnx`` are dependencies), and PyTorch for
CUDA/MPS and for training.

Sessions are built once per (weights, configuration, channel, threads,
maps) and cached (:func:`session_for`); building one (export + graph
optimisation) takes about a second. A balance-conditioned network gets one
session per balance from the same export (:meth:`FastSession.for_balance`).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch

from .model import LightFusionNet
from .onnx_export import export_onnx, with_film

#: Sessions kept in the cache (one per weights x channel x threads x maps); each
#: holds its own memory arena (as large as the largest batch it ran), so keep few.
_CACHE_SIZE = 6


class FastSession:
    """ONNX Runtime session(s) for one network, one map channel choice, maps or not.

    ``session`` runs the graph as exported (a conditioned network at its
    default balance). A conditioned network gets one session per balance
    (per ``scale``/``shift``), built from the exported graph with its
    :data:`FILM` constants replaced (:func:`with_film`); the last few are kept.
    """

    #: Sessions kept per balance (each holds a memory arena as large as its largest tile).
    BALANCES = 3

    def __init__(self, data: bytes, names: list[str], conditioned: bool, options):
        import onnxruntime as ort

        self._data, self._options, self.names, self.conditioned = data, options, names, conditioned
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self._balances: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def for_balance(self, scale, shift):
        """The session that runs the network with this ``scale`` and ``shift`` (``(C,)``)."""
        import onnxruntime as ort

        if scale is None or shift is None:
            raise ValueError("this network is conditioned on a balance: give scale and shift")
        scale, shift = np.asarray(scale, np.float32), np.asarray(shift, np.float32)
        key = (scale.tobytes(), shift.tobytes())
        with self._lock:
            if key in self._balances:
                self._balances.move_to_end(key)
                return self._balances[key]
        session = ort.InferenceSession(
            with_film(self._data, scale, shift), self._options, providers=["CPUExecutionProvider"]
        )
        with self._lock:
            self._balances[key] = session
            while len(self._balances) > self.BALANCES:
                self._balances.popitem(last=False)
        return session

    def run(self, anatomical: np.ndarray, functional: np.ndarray, scale=None, shift=None):
        """Fuse ``(N, H, W)`` (or ``(H, W)``) float32 pairs.

        ``scale`` and ``shift`` (``(C,)``, from ``model.condition``) are
        needed by a conditioned network and ignored otherwise.
        Returns ``fused (N, H, W)``, ``surprise (N, 2, H, W)`` or ``None``,
        ``attention (N, 2, H, W)`` or ``None`` (a session without maps) and
        the mix weight ``(N, H, W)`` or ``None`` (no maps, or a head without
        one), as float32 numpy arrays (the maps may be views of one array).
        """
        session = self.for_balance(scale, shift) if self.conditioned else self.session
        a = np.ascontiguousarray(anatomical, dtype=np.float32)
        b = np.ascontiguousarray(functional, dtype=np.float32)
        feed = {"a": a.reshape(-1, 1, *a.shape[-2:]), "b": b.reshape(-1, 1, *b.shape[-2:])}
        out = session.run(self.names, feed)
        fused = out[0]
        if len(out) == 1:
            return fused, None, None, None
        maps = out[1]  # [surprise 1, surprise 2,] attention 1, attention 2[, weight]: odd with a weight
        weight = maps[:, -1] if maps.shape[1] % 2 else None
        if maps.shape[1] >= 4:
            return fused, maps[:, :2], maps[:, 2:4], weight
        return fused, None, maps[:, :2], weight


def fingerprint(model: LightFusionNet) -> str:
    """A digest of a model's configuration and weights (a cache key that survives training).

    Remembered per model object until one of its tensors or submodules is
    replaced or a tensor changed in place (torch counts in-place changes in
    ``Tensor._version``), so that asking again (every fusion does) costs
    about twenty microseconds, not a pass over the weights.
    """
    known = _fingerprints.get(model)
    if known is not None and known[0] == _stamp(model, known[2]):
        return known[1]
    modules = list(model.modules())
    h = hashlib.blake2b(repr(model.config).encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    digest = h.hexdigest()
    tables = [(m._modules, m._parameters, m._buffers) for m in modules]
    _fingerprints[model] = (_stamp(model, tables), digest, tables)
    return digest


def _stamp(model: LightFusionNet, tables: list) -> tuple:
    """What changes when a model's weights do: its configuration, the tree, every tensor's identity,
    storage and version.

    Reads the modules' own tables (``_modules``, ``_parameters``,
    ``_buffers``, kept from the last full fingerprint) in flat
    comprehensions: ``model.parameters()`` walks the tree by name and took
    over a millisecond a call, and nested generators three times as long as
    this.
    """
    children = [id(child) for kids, _, _ in tables for child in kids.values()]
    tensors = [t for _, params, buffers in tables for table in (params, buffers) for t in table.values()]
    tensors = [t for t in tensors if t is not None]
    return (
        id(model.config),
        *children,
        *map(id, tensors),
        *[t._version for t in tensors],
        *[t.data_ptr() for t in tensors],
    )


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_session(
    model: LightFusionNet,
    channel: int | None = None,
    threads: int | None = None,
    maps: bool = True,
    profile: str | None = None,
) -> FastSession:
    """Export ``model`` and open an ONNX Runtime session on it (not cached).

    Graph optimisation at the highest level, ``threads`` intra-op threads
    (default: ``torch.get_num_threads()``; the engine asks for 1 and runs
    tiles side by side instead), sequential execution. ``profile``: a file
    prefix for ONNX Runtime's own profile (``lightfusion-research bench --profile``).
    """
    import onnxruntime as ort

    data, names, conditioned = export_onnx(model, channel, maps)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, int(threads or torch.get_num_threads() or 2))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return FastSession(data, names, conditioned, options)


_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def session_for(
    model: LightFusionNet, channel: int | None = None, threads: int | None = None, maps: bool = True
) -> FastSession:
    """The cached :class:`FastSession` of ``model`` (exported on first use).

    Keyed by the model's configuration and weights (:func:`fingerprint`), the
    channel, the thread count and whether the maps are computed, so changed
    weights give a new export and identical weights share one. Thread-safe.
    """
    threads = max(1, int(threads or torch.get_num_threads() or 2))
    key = (fingerprint(model), channel if maps else None, threads, maps)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        fast = make_session(model, channel, threads, maps)
        _cache[key] = fast
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return fast
