"""CPU fast path: LightFusionNet exported to ONNX in memory and run by ONNX Runtime.

Eager PyTorch spends most of a small network's time in per-operator
overhead and in layout conversions; ONNX Runtime's CPU provider fuses each
convolution with its activation, keeps the whole graph in its blocked
``NCHWc`` layout and plans its memory once. The engine
(:mod:`napari_lightfusion.engine`) uses this module automatically for the
CPU when ``onnxruntime`` can be imported, and PyTorch otherwise (and always
for CUDA/MPS and for training).

What is exported is not ``LightFusionNet.forward`` itself but an
*equivalent* network (:class:`ExportNet`) built from the model's weights,
rewritten so that every operation stays inside ONNX Runtime's blocked
convolution kernels (same result within float rounding; the tests hold it
to 1e-4 against the PyTorch model, maps included):

* the first depthwise 3x3 (one input channel) and its pointwise 1x1 are
  composed into one 3x3 convolution 1 -> C;
* the surprise ``|conv(x, W * mask) + b - x|`` becomes one depthwise
  convolution whose centre tap is -1 (``predicted - x`` folded in), then
  ``|z| = relu(z) + relu(-z)`` computed by a 1x1 convolution
  ``[I; -I]`` with a fused ReLU (ONNX Runtime has no blocked ``Abs``); the
  bottleneck's first 1x1 takes ``[W1, W1]`` on the two halves;
* the bottleneck's hidden width is padded to a multiple of 8 (the CPU
  block) with zero weights, and the first padded channel carries the
  channel-reduced surprise map (mean over channels, or one channel) as a
  non-negative linear function of ``relu(+-z)``, so the map costs no extra
  pass; the padding channels do not reach the attention (zero weights);
* the channel-reduced attention map is a 1x1 convolution C -> 1 (mean or
  one-hot weights) instead of a ``ReduceMean``, which has no blocked kernel;
* the fusion ``0.5 (fa + fb)`` has its 0.5 folded into the decoder's first
  convolution;
* the blend head's ``w a + (1 - w) b`` is written ``b + w (a - b)``.

Networks of other shapes (ablation variants with another attention) are
exported through :class:`GenericNet`, which calls the model's own forward
and reduces the maps with a 1x1 convolution.

Sessions are built once per (weights, configuration, channel, threads) and
cached (:func:`session_for`); building one (export + graph optimisation)
takes about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import LightFusionNet, blend_weight

#: ONNX opset of the exported graph (ONNX Runtime >= 1.17 runs it).
OPSET = 17
#: Channel block of ONNX Runtime's blocked CPU convolutions (AVX2: 8, AVX-512: 16);
#: padding to 8 keeps 16-blocks possible too when the padded width is a multiple of 16.
_BLOCK = 8
#: Sessions kept in the cache (one per weights x channel x threads); each holds its
#: own memory arena (as large as the largest tile it ran), so keep few.
_CACHE_SIZE = 4

OUTPUT_NAMES = ("fused", "surprise_a", "surprise_b", "attention_a", "attention_b")


def available() -> bool:
    """Whether ONNX Runtime can be imported here (the fast path is possible)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _leaky(x):
    return F.leaky_relu(x, 0.1)


def _convs(block: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of one ``conv_block`` (or a bare ``Conv2d``), in order."""
    if isinstance(block, nn.Conv2d):
        return [block]
    return [m for m in block if isinstance(m, nn.Conv2d)]


def _spec(conv: nn.Conv2d, weight=None, bias=None) -> tuple:
    """``(weight, bias, dilation, groups)`` of a convolution as detached float32 copies."""
    if conv.stride != (1, 1) or conv.dilation[0] != conv.dilation[1]:
        raise ValueError("only stride 1 and square dilation are supported")
    w = conv.weight if weight is None else weight
    b = conv.bias if bias is None else bias
    return (
        w.detach().to("cpu", torch.float32).clone(),
        None if b is None else b.detach().to("cpu", torch.float32).clone(),
        conv.dilation[0],
        conv.groups,
    )


def _same_conv(x, spec):
    """Apply a ``_spec`` convolution with 'same' padding (as the model does)."""
    w, b, d, g = spec
    pad = d * (w.shape[-1] // 2)
    return F.conv2d(x, w, b, padding=pad, dilation=d, groups=g)


def _compose_first(convs: list[tuple]) -> list[tuple]:
    """Fold a one-channel depthwise 3x3 and the pointwise 1x1 after it into one 3x3."""
    if len(convs) != 2:
        return convs
    (wd, bd, d, gd), (wp, bp, dp, gp) = convs
    if wd.shape[:2] != (1, 1) or wp.shape[1] != 1 or wp.shape[-1] != 1 or gp != 1:
        return convs
    w = wp[:, :1] * wd  # (C,1,1,1) * (1,1,k,k) -> (C,1,k,k)
    b = wp[:, 0, 0, 0] * (bd[0] if bd is not None else 0.0)
    b = b + (bp if bp is not None else 0.0)
    return [(w, b, d, 1)]


def _reducer(width: int, channel: int | None) -> torch.Tensor:
    """Weights ``(1, width)`` that average the channels, or pick one."""
    r = torch.zeros(1, width)
    if channel is None:
        r[:] = 1.0 / width
    else:
        r[0, channel] = 1.0
    return r


class _Stream(nn.Module):
    """One stream of :class:`ExportNet`: encoder, surprise, attention, refined features."""

    def __init__(self, encoder: nn.Module, attention: nn.Module, channel: int | None, maps: bool = True):
        super().__init__()
        self.maps = maps
        blocks = [[_spec(c) for c in _convs(block)] for block in encoder]
        blocks[0] = _compose_first(blocks[0])
        self.blocks = blocks

        ctx = attention.context
        width = ctx.weight.shape[0]
        if ctx.groups != width or tuple(ctx.weight.shape[-2:]) != (3, 3):
            raise ValueError("unexpected context convolution")
        # predicted - x: the masked 3x3 with its (masked-out) centre tap set to -1.
        wc = (ctx.weight * attention.centre_mask).detach().to("cpu", torch.float32).clone()
        wc[:, :, 1, 1] = -1.0
        self.context = (wc, ctx.bias.detach().to("cpu", torch.float32).clone(), 1, width)
        eye = torch.eye(width)
        self.register_buffer("plus_minus", torch.cat([eye, -eye])[:, :, None, None])

        h1, h2 = _convs(attention.head[0])[0], _convs(attention.head[2])[0]
        hidden = h1.weight.shape[0]
        padded = -(-(hidden + int(maps)) // _BLOCK) * _BLOCK  # room for the surprise slot
        w1 = torch.zeros(padded, 2 * width, 1, 1)
        b1 = torch.zeros(padded)
        w1[:hidden] = torch.cat([h1.weight, h1.weight], dim=1).detach()
        b1[:hidden] = h1.bias.detach()
        if maps:  # slot `hidden`: |z| reduced over channels, >= 0, so the ReLU keeps it as is.
            reduce = _reducer(width, channel)[0]
            w1[hidden, :, 0, 0] = torch.cat([reduce, reduce])
        w2 = torch.zeros(h2.weight.shape[0], padded, 1, 1)
        w2[:, :hidden] = h2.weight.detach()
        self.head1 = (w1, b1, 1, 1)
        self.head2 = (w2, h2.bias.detach().to("cpu", torch.float32).clone(), 1, 1)
        self.surprise_slot = hidden
        self.register_buffer("attention_reducer", _reducer(width, channel)[:, :, None, None])

    def forward(self, x):
        for block in self.blocks:
            for spec in block:
                x = _same_conv(x, spec)
            x = _leaky(x)
        z = _same_conv(x, self.context)  # predicted - x
        pm = F.relu(F.conv2d(z, self.plus_minus))  # [relu(z); relu(-z)]
        hidden = F.relu(_same_conv(pm, self.head1))  # bottleneck + surprise slot
        attention = torch.sigmoid(_same_conv(hidden, self.head2))
        refined = x + x * attention
        if not self.maps:
            return refined, None, None
        return refined, hidden, F.conv2d(attention, self.attention_reducer)


def _conditioned(model: LightFusionNet) -> bool:
    """Whether ``model`` takes a balance (its graph then has ``scale`` and ``shift`` inputs)."""
    return bool(getattr(model, "conditioned", False))


def _condition_features(f, scale, shift):
    """The balance conditioning of the fused features: ``f * scale + shift`` per channel."""
    return f * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


class ExportNet(nn.Module):
    """Export-friendly equivalent of a PCA :class:`LightFusionNet` (see module doc).

    ``forward(a, b)`` with ``(N, 1, H, W)`` inputs (and ``scale``, ``shift``
    ``(C,)`` for a conditioned network) returns ``fused (N,1,H,W)``, then with
    ``maps``: ``surprise_a``/``surprise_b`` ``(N, P, H, W)`` whose channel
    :attr:`surprise_index` is the reduced surprise map, and
    ``attention_a``/``attention_b`` ``(N, 1, H, W)`` reduced attention maps.
    Raises ``ValueError`` for a network it does not know how to rewrite.
    """

    def __init__(self, model: LightFusionNet, channel: int | None = None, maps: bool = True):
        super().__init__()
        if model.config.attention != "pca":
            raise ValueError("ExportNet rewrites Predictive Context Attention networks only")
        self.maps = maps
        self.conditioned = _conditioned(model)
        self.stream_a = _Stream(model.encoder_a, model.attention_a, channel, maps)
        self.stream_b = _Stream(model.encoder_b, model.attention_b, channel, maps)
        self.surprise_index = self.stream_a.surprise_slot
        decoder = [[_spec(c) for c in _convs(block)] for block in model.decoder]
        if len(decoder[-1]) != 1 or any(len(b) == 0 for b in decoder):
            raise ValueError("unexpected decoder")
        if not self.conditioned:
            w, b, d, g = decoder[0][0]
            decoder[0][0] = (w * 0.5, b, d, g)  # the mean of the two streams
        self.decoder = decoder
        self.blend = model.config.output == "blend"

    def forward(self, a, b, scale=None, shift=None):
        fa, sa, aa = self.stream_a(a)
        fb, sb, ab = self.stream_b(b)
        y = fa + fb
        if self.conditioned:
            y = _condition_features(y * 0.5, scale, shift)
        for block in self.decoder[:-1]:
            for spec in block:
                y = _same_conv(y, spec)
            y = _leaky(y)
        out = _same_conv(y, self.decoder[-1][0])
        if self.blend:  # fused = w a + (1 - w) b = b + w (a - b)
            fused = b + (out + 0.5).clamp(0.0, 1.0) * (a - b)
        else:
            fused = torch.sigmoid(out)
        if not self.maps:
            return fused
        return fused, sa, sb, aa, ab


class GenericNet(nn.Module):
    """Any :class:`LightFusionNet` with its maps reduced over channels, for export.

    Inputs and outputs as :class:`ExportNet` (``surprise_index`` 0; no
    surprise outputs when the attention variant computes none). It runs the
    model's own modules in the order of ``LightFusionNet.forward``.
    """

    surprise_index = 0

    def __init__(self, model: LightFusionNet, channel: int | None = None, maps: bool = True):
        super().__init__()
        self.model = model
        self.maps = maps
        self.conditioned = _conditioned(model)
        self.register_buffer("reducer", _reducer(model.config.width, channel)[:, :, None, None])

    def forward(self, a, b, scale=None, shift=None):
        m = self.model
        fa, sa, aa = m.attention_a(m.encoder_a(a))
        fb, sb, ab = m.attention_b(m.encoder_b(b))
        f = (fa + fb) * 0.5
        if self.conditioned:
            f = _condition_features(f, scale, shift)
        out = m.decoder(f)
        if m.config.output == "intensity":
            fused = torch.sigmoid(out)
        else:
            fused = b + blend_weight(out) * (a - b)
        if not self.maps:
            return fused
        reduce = lambda t: F.conv2d(t, self.reducer)  # noqa: E731
        if sa is None:
            return fused, reduce(aa), reduce(ab)
        return fused, reduce(sa), reduce(sb), reduce(aa), reduce(ab)


def export_net(model: LightFusionNet, channel: int | None = None, maps: bool = True) -> nn.Module:
    """The module to export: :class:`ExportNet` when it applies, else :class:`GenericNet`."""
    import copy

    try:
        return ExportNet(model, channel, maps).eval()
    except (ValueError, AttributeError, IndexError, TypeError, RuntimeError):
        return GenericNet(copy.deepcopy(model).float().cpu(), channel, maps).eval()


def export_onnx(
    model: LightFusionNet, channel: int | None = None, maps: bool = True
) -> tuple[bytes, list[str], list[str], int]:
    """Export the network (with channel-reduced maps, or without maps) to an in-memory ONNX model.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no
    extra package; batch, height and width are dynamic. Returns the
    serialised model, its input names (``a``, ``b``, and ``scale``,
    ``shift`` for a conditioned network), its output names and the surprise
    channel index.
    """
    net = export_net(model, channel, maps)
    sample = torch.rand(1, 1, 32, 32)
    inputs = ["a", "b"]
    args = (sample, sample)
    if net.conditioned:
        width = model.config.width
        inputs += ["scale", "shift"]
        args += (torch.ones(width), torch.zeros(width))
    with torch.no_grad():
        result = net(*args)
    n_out = len(result) if isinstance(result, tuple) else 1
    names = {1: ["fused"], 3: ["fused", "attention_a", "attention_b"], 5: list(OUTPUT_NAMES)}[n_out]
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ["a", "b", *names]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            net, args, buffer,
            input_names=inputs, output_names=names, dynamic_axes=axes,
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    return buffer.getvalue(), inputs, names, net.surprise_index


@dataclass
class FastSession:
    """An ONNX Runtime session for one network, one map channel choice, maps or not."""

    session: object
    names: list[str]
    surprise_index: int
    inputs: tuple[str, ...] = ("a", "b")

    def run(self, anatomical: np.ndarray, functional: np.ndarray, scale=None, shift=None):
        """Fuse ``(N, H, W)`` (or ``(H, W)``) float32 pairs.

        ``scale`` and ``shift`` (``(C,)``, from ``model.condition``) are
        needed by a conditioned network's session and ignored otherwise.
        Returns ``fused (N, H, W)``, ``surprise (N, 2, H, W)`` or ``None``,
        ``attention (N, 2, H, W)`` or ``None`` (a session without maps), as
        float32 numpy arrays.
        """
        a = np.ascontiguousarray(anatomical, dtype=np.float32)
        b = np.ascontiguousarray(functional, dtype=np.float32)
        feed = {"a": a.reshape(-1, 1, *a.shape[-2:]), "b": b.reshape(-1, 1, *b.shape[-2:])}
        if "scale" in self.inputs:
            if scale is None or shift is None:
                raise ValueError("this network is conditioned on a balance: give scale and shift")
            feed["scale"] = np.asarray(scale, np.float32).reshape(-1)
            feed["shift"] = np.asarray(shift, np.float32).reshape(-1)
        out = dict(zip(self.names, self.session.run(self.names, feed)))
        fused = out["fused"][:, 0]
        attention = surprise = None
        if "attention_a" in out:
            attention = np.stack([out["attention_a"][:, 0], out["attention_b"][:, 0]], axis=1)
        if "surprise_a" in out:
            k = self.surprise_index
            surprise = np.stack([out["surprise_a"][:, k], out["surprise_b"][:, k]], axis=1)
        return fused, surprise, attention


def fingerprint(model: LightFusionNet) -> str:
    """A digest of a model's configuration and weights (a cache key that survives training)."""
    h = hashlib.blake2b(repr(model.config).encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def make_session(
    model: LightFusionNet, channel: int | None = None, threads: int | None = None, maps: bool = True
) -> FastSession:
    """Export ``model`` and open an ONNX Runtime session on it (not cached).

    Graph optimisation at the highest level, ``threads`` intra-op threads
    (default: ``torch.get_num_threads()``), sequential execution.
    """
    import onnxruntime as ort

    data, inputs, names, index = export_onnx(model, channel, maps)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, int(threads or torch.get_num_threads() or 2))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return FastSession(session, names, index, tuple(inputs))


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


def clear_cache() -> None:
    """Forget every cached session (frees their memory)."""
    with _lock:
        _cache.clear()
