"""Running the network on grey pairs: device choice, backend, tiling, threads, and the maps.

The engine takes the two grey streams of a slice (:func:`run_slice`) or of
a stack (:func:`run_stack`) and returns the fused luminance with, when asked
for (``maps=True``), the per-stream surprise and attention maps reduced over
channels (mean, or one chosen channel) so that a map costs two images per
stream, not ``2 C``, and, for a network with a "blend" or "mix" output
head, its per-pixel mix weight ``w`` in [0, 1] (1: the fused value comes
from the anatomical input, 0: from the functional one).

Backends: on the CPU the network runs through ONNX Runtime (a dependency:
:mod:`napari_lightfusion.fastpath`, several times faster than eager
PyTorch, same result within 1e-4); CUDA and MPS always run PyTorch.
``backend="torch"`` (or the environment variable
``LIGHTFUSION_BACKEND=torch``) forces PyTorch. A model is never moved
between devices: another device gets a cached copy (:func:`model_on`).

Images larger than ``tile`` x ``tile`` are fused in overlapping tiles
whose halos are discarded (:mod:`napari_lightfusion.tiling`: the tiled
result equals the untiled one); the ONNX Runtime path runs the tiles of all
slices on the shared threads (:mod:`napari_lightfusion.threads`), one tile a thread.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import torch

from .model import LightFusionNet, check_balance
from .threads import run_jobs
from .tiling import CPU_TILE, DEFAULT_TILE, check_tile, slices_per_forward, tile_grid, tile_spans

#: Backends :func:`run_slice` accepts.
BACKENDS = ("auto", "onnx", "torch")

_fast_failed: set = set()

#: Per-device copies of models (:func:`model_on`), at most ``_COPIES``.
_COPIES = 4
_copies: OrderedDict = OrderedDict()
_copies_lock = threading.Lock()

#: The fast path's FiLM constants per (weights, balance) (:func:`_film`).
_films: OrderedDict = OrderedDict()

#: Held while a CUDA forward runs with cuDNN's TF32 flag off (:func:`full_precision`).
_cudnn_flag_lock = threading.Lock()


def available_devices() -> list[str]:
    """Devices torch can run on here, in order of preference, always ending in "cpu"."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA, then MPS, then CPU; an explicit device must exist here.

    Raises ``ValueError`` naming the devices available for an unknown name
    (``"gpu0"``) or a device this machine lacks (``"cuda"`` without CUDA).
    """
    if not isinstance(device, torch.device):
        if not isinstance(device, str):
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
        device = device.strip().lower()
        if device == "auto":
            return torch.device(available_devices()[0])
    here = available_devices()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"unknown device {device!r}; use auto, cpu, cuda or mps (available here: {', '.join(here)})"
        ) from None
    if resolved.type not in here or (
        resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count()
    ):
        raise ValueError(f"device {str(device)!r} is not available here; available: {', '.join(here)}")
    return resolved


def select_backend(device: torch.device, backend: str = "auto") -> str:
    """``"onnx"`` or ``"torch"``: which backend :func:`run_slice` uses on ``device``.

    ``"auto"``: ONNX Runtime for the CPU (unless ``LIGHTFUSION_BACKEND`` is
    ``torch``), PyTorch otherwise. ``"onnx"`` on a non-CPU device is a
    ``ValueError``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    device = torch.device(device)
    if backend == "onnx":
        if device.type != "cpu":
            raise ValueError(f"the onnx backend runs on the CPU only, not {device}")
        return "onnx"
    if backend == "torch" or device.type != "cpu":
        return "torch"
    if os.environ.get("LIGHTFUSION_BACKEND", "").strip().lower() == "torch":
        return "torch"
    return "onnx"


@dataclass
class SliceOutput:
    """The network's answer for one slice, as float32 numpy arrays (maps None when not asked for).

    ``weight`` is the blend or mix head's per-pixel weight ``w`` in [0, 1]
    (1: the anatomical input, 0: the functional one); None without maps or
    for a network whose head has none (the paper's "intensity" head).
    """

    fused: np.ndarray  # (H, W) in [0, 1]
    surprise: np.ndarray | None  # (2, H, W): stream 1, stream 2
    attention: np.ndarray | None  # (2, H, W)
    weight: np.ndarray | None = None  # (H, W) in [0, 1]


def model_on(model: LightFusionNet, device: torch.device) -> LightFusionNet:
    """``model`` itself when it already lives on ``device``, else a cached copy there.

    The shared instance :func:`napari_lightfusion.weights.model_for` hands
    out is never moved, so threads fusing on different devices cannot race.
    Copies are keyed by the weights' fingerprint and the device (changed
    weights get a new copy); a few are kept. Thread-safe.
    """
    from .fastpath import fingerprint

    device = torch.device(device)
    here = next(model.parameters()).device
    if here.type == device.type and (device.index is None or here.index == device.index):
        return model
    key = (fingerprint(model), str(device))
    with _copies_lock:
        if key in _copies:
            _copies.move_to_end(key)
            return _copies[key]
    copy = deepcopy(model).to(device).eval()
    with _copies_lock:
        _copies[key] = copy
        while len(_copies) > _COPIES:
            _copies.popitem(last=False)
    return copy


def _reduce(maps, channel: int | None) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W): mean over channels, or one channel."""
    return maps.mean(dim=1) if channel is None else maps[:, channel]


@contextmanager
def full_precision(device: torch.device):
    """Run CUDA convolutions in IEEE float32 inside the block, not TF32 (cuDNN's default).

    TF32 keeps 10 mantissa bits: on Ampere and later GPUs it moves the fused
    image and the maps by up to ~1e-3 against the CPU, for no speed a
    network this small could use. The GPU result then matches the CPU's
    (what a user comparing screenshots across machines expects). The flag is
    cuDNN's, one for the process: CUDA blocks of several threads take turns
    (a lock), so none restores it while another runs, and it is restored on
    exit. Other devices are left alone.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    with _cudnn_flag_lock:
        before = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = before


def torch_forward(model, anatomical, functional, device, channel, maps: bool = True, balance=None):
    """PyTorch backend on ``(N, H, W)`` float32 pairs -> ``(fused, surprise|None, attention|None, weight|None)``.

    ``model`` must already live on ``device`` (:func:`model_on`). Shapes as
    :meth:`napari_lightfusion.fastpath.FastSession.run`: ``(N, H, W)``,
    ``(N, 2, H, W)``, ``(N, 2, H, W)``, ``(N, H, W)``; without ``maps``
    every map is None, and the weight is None for networks without
    :attr:`~napari_lightfusion.model.LightFusionNet.has_weight`.
    """
    as_np = lambda t: None if t is None else t.float().cpu().numpy()  # noqa: E731
    with torch.inference_mode(), full_precision(device):
        a = torch.from_numpy(np.ascontiguousarray(anatomical, np.float32))[:, None].to(device)
        b = torch.from_numpy(np.ascontiguousarray(functional, np.float32))[:, None].to(device)
        if not maps:
            return as_np(model(a, b, balance=balance)[:, 0]), None, None, None
        fused, out = model(a, b, return_maps=True, balance=balance)
        weight = None if out["weight"] is None else out["weight"][:, 0]
        surprise = out["surprise"]
        out_s = None if surprise[0] is None else torch.stack([_reduce(s, channel) for s in surprise], 1)
        out_a = torch.stack([_reduce(m, channel) for m in out["attention"]], 1)
        return as_np(fused[:, 0]), as_np(out_s), as_np(out_a), as_np(weight)


def _backend(model, device, channel, backend, maps, balance):
    """``(run, fast)``: ``run(a (N,H,W), b (N,H,W)) -> (fused, surprise|None, attention|None, weight|None)``.

    ``fast`` is True for the ONNX Runtime path, whose session runs on the
    calling thread (one intra-op thread), so that the engine can run tiles
    and slices side by side. Checks ``balance`` (ValueError out of [0, 1]);
    the fast path gets the network's ``(scale, shift)`` for it, computed once.
    """
    if select_backend(device, backend) == "onnx":
        scale, shift = _film(model, balance)
        from . import fastpath

        try:
            session = fastpath.session_for(model, channel, threads=1, maps=maps)
            return (lambda a, b: session.run(a, b, scale, shift)), True
        except ImportError:  # onnxruntime or onnx missing or broken: a broken install, not a fallback
            raise
        except Exception as exc:  # noqa: BLE001 - an export or runtime that fails here must not stop a fusion
            if backend == "onnx":
                raise ValueError(f"the onnx backend failed: {exc}") from exc
            key = (type(exc).__name__, str(exc)[:200])
            if key not in _fast_failed:
                _fast_failed.add(key)
                warnings.warn(f"ONNX fast path unavailable ({exc}); using PyTorch", RuntimeWarning, 3)
    placed = model_on(model, device)
    return (lambda a, b: torch_forward(placed, a, b, device, channel, maps, balance)), False


def _film(model: LightFusionNet, balance: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The network's ``(scale, shift)`` for ``balance`` as numpy (``model.condition``), kept per weights and b.

    Checks ``balance`` (ValueError out of [0, 1]). Kept because every
    fusion asks and the two small linear layers cost a third of a
    millisecond, a few per cent of a 256 x 256 fusion.
    """
    from .fastpath import fingerprint

    key = (fingerprint(model), None if balance is None else check_balance(balance))
    with _copies_lock:
        if key in _films:
            _films.move_to_end(key)
            return _films[key]
    with torch.no_grad():
        film = tuple(t.detach().float().cpu().numpy() for t in model.condition(balance))
    with _copies_lock:
        _films[key] = film
        while len(_films) > 16:
            _films.popitem(last=False)
    return film


def cpu_threads(threads: int | None) -> int:
    """The CPU threads a fusion's tiles and colour step share: ``threads``, or torch's count (None)."""
    return max(1, int(threads or torch.get_num_threads() or 1))


def run_stack(
    model: LightFusionNet,
    anatomical: np.ndarray,
    functional: np.ndarray,
    device: torch.device,
    channel: int | None = None,
    tile: int = DEFAULT_TILE,
    backend: str = "auto",
    *,
    maps: bool = True,
    balance: float | None = None,
    threads: int | None = None,
) -> SliceOutput:
    """Fuse a stack of grey pairs ``(Z, H, W)``.

    ``fused`` is ``(Z, H, W)``, ``surprise`` and ``attention`` ``(2, Z, H,
    W)``, stream first, ``weight`` ``(Z, H, W)`` (None without ``maps``;
    surprise None for networks without one, weight for networks without
    :attr:`~napari_lightfusion.model.LightFusionNet.has_weight`).
    The ONNX Runtime path cuts every slice into tiles of at most
    :data:`CPU_TILE` (and ``tile``) and runs them on ``threads`` threads
    (default ``torch.get_num_threads()``, the calling thread one of them),
    each tile on one thread. PyTorch
    runs slices one after another, several at once when they fit in
    ``tile`` x ``tile`` pixels together (on a GPU, in :data:`GPU_BATCH_PIXELS`),
    tiled when larger than ``tile``. ``backend``, ``maps`` and ``balance``
    as :func:`run_slice` describes them.
    """
    tile = check_tile(tile)
    device = torch.device(device)
    anatomical, functional = np.asarray(anatomical), np.asarray(functional)
    if anatomical.ndim != 3 or anatomical.shape != functional.shape:
        raise ValueError(f"give two stacks (Z, H, W) of one shape, not {anatomical.shape} and {functional.shape}")
    run, fast = _backend(model, device, channel, backend, maps, balance)
    z, h, w = anatomical.shape
    workers = cpu_threads(threads) if fast else 1
    core_h, core_w = tile_grid(h, w, min(tile, CPU_TILE) if fast else tile, -(-workers // z))
    if model.is_local and (core_h < h or core_w < w):
        halo = model.receptive_radius
        ys, xs = tile_spans(h, core_h, halo), tile_spans(w, core_w, halo)
        jobs = [(i, i + 1, y, x) for i in range(z) for y in ys for x in xs]
    else:
        step = 1 if fast else slices_per_forward(device, tile, h, w)
        jobs = [(i, min(z, i + step), (0, h, 0, h), (0, w, 0, w)) for i in range(0, z, step)]
    fused = np.empty((z, h, w), np.float32)
    attention = np.empty((2, z, h, w), np.float32) if maps else None
    surprise = np.empty((2, z, h, w), np.float32) if maps and model.config.attention == "pca" else None
    weight = np.empty((z, h, w), np.float32) if maps and model.has_weight else None

    def job(spec):
        i0, i1, (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) = spec
        f, s, a, mix_weight = run(anatomical[i0:i1, y0:y1, x0:x1], functional[i0:i1, y0:y1, x0:x1])
        ys, xs = slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0)
        fused[i0:i1, cy0:cy1, cx0:cx1] = f[:, ys, xs]
        if weight is not None:
            weight[i0:i1, cy0:cy1, cx0:cx1] = mix_weight[:, ys, xs]
        if attention is not None:
            attention[:, i0:i1, cy0:cy1, cx0:cx1] = a[:, :, ys, xs].transpose(1, 0, 2, 3)
        if surprise is not None:
            surprise[:, i0:i1, cy0:cy1, cx0:cx1] = s[:, :, ys, xs].transpose(1, 0, 2, 3)

    run_jobs(job, jobs, workers)
    return SliceOutput(fused, surprise, attention, weight)


def run_slice(
    model: LightFusionNet, anatomical: np.ndarray, functional: np.ndarray, device, *args, **options
) -> SliceOutput:
    """Fuse one grey pair ``(H, W)`` on ``device``: :func:`run_stack` on a stack of one, arguments as there.

    ``backend``: "auto" (ONNX Runtime on the CPU, PyTorch on CUDA and
    MPS), "onnx" or "torch" (see :func:`select_backend`). The inputs
    are float arrays in [0, 1] (as :func:`napari_lightfusion.inputs.prepare_pair`
    makes them); they are not modified. ``maps=False`` computes no map
    (all None). ``balance``: b in [0, 1] for a conditioned network (None:
    its default). The maps come back ``(2, H, W)``, the weight ``(H, W)``.
    """
    anatomical, functional = np.asarray(anatomical), np.asarray(functional)
    if anatomical.ndim != 2 or anatomical.shape != functional.shape:
        raise ValueError(f"give two images (H, W) of one shape, not {anatomical.shape} and {functional.shape}")
    out = run_stack(model, anatomical[None], functional[None], device, *args, **options)
    first = lambda m: None if m is None else m[:, 0]  # noqa: E731
    weight = None if out.weight is None else out.weight[0]
    return SliceOutput(out.fused[0], first(out.surprise), first(out.attention), weight)


def channel_maps(
    model: LightFusionNet, anatomical: np.ndarray, functional: np.ndarray, device, balance: float | None = None
) -> tuple[np.ndarray | None, np.ndarray]:
    """Every channel's maps of one grey pair ``(H, W)``: ``(surprise (2, C, H, W) | None, attention (2, C, H, W))``.

    For the widget's Map channel choice: with these kept, showing another
    channel (or the mean, ``maps.mean(axis=1)``) needs no new fusion. One
    untiled PyTorch pass under ``inference_mode`` with the same ``balance``
    as the fusion; the streams are in the order given. ``surprise`` is None
    for networks without one.
    """
    anatomical, functional = np.asarray(anatomical), np.asarray(functional)
    if anatomical.ndim != 2 or anatomical.shape != functional.shape:
        raise ValueError(f"give two images (H, W) of one shape, not {anatomical.shape} and {functional.shape}")
    device = torch.device(device)
    placed = model_on(model, device)
    with torch.inference_mode(), full_precision(device):
        a = torch.from_numpy(np.ascontiguousarray(anatomical, np.float32))[None, None].to(device)
        b = torch.from_numpy(np.ascontiguousarray(functional, np.float32))[None, None].to(device)
        _, out = placed(a, b, return_maps=True, balance=balance)
        stack = lambda maps: torch.cat(list(maps), 0).float().cpu().numpy()  # noqa: E731 - 2 x (1,C,H,W) -> (2,C,H,W)
        surprise = None if out["surprise"][0] is None else stack(out["surprise"])
        return surprise, stack(out["attention"])
