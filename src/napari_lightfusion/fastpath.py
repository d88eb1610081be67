"""CPU fast path: LightFusionNet exported to ONNX in memory and run by ONNX Runtime.

Eager PyTorch spends most of a small network's time in per-operator
overhead and in layout conversions; ONNX Runtime's CPU provider fuses each
convolution with its activation, can keep the whole graph in its blocked
``NCHWc`` layout (16 channels a block on AVX-512, 8 on AVX2) and plans its
memory once. The engine (:mod:`napari_lightfusion.engine`) uses this module
for the CPU (``onnxruntime`` and ``onnx`` are dependencies), and PyTorch for
CUDA/MPS and for training.

What is exported is not ``LightFusionNet.forward`` itself but an
*equivalent* network (:class:`ExportNet`) built from the model's weights,
rewritten so that every operation stays inside ONNX Runtime's blocked
kernels, with no layout conversion between the input and the outputs (same
result within float rounding; the tests hold it to 1e-4 against the
PyTorch model, maps included):

* **one graph for both streams**: the two encoders and attentions become
  one network over ``2 C`` channels, stream 1 in the first ``C`` and
  stream 2 in the next; depthwise convolutions stay depthwise (``2 C``
  groups) and the 1x1 (or standard) convolutions become grouped ones (2
  groups), so every kernel runs once over both streams;
* the first depthwise 3x3 (one input channel) and its pointwise 1x1 are
  composed into one 3x3 convolution 1 -> C, and the two streams' first
  convolutions into one 2 -> 2C convolution on the stacked inputs;
* channel counts are padded with zero weights to multiples of 16 (the
  block), so no convolution falls back to the plain layout;
* the surprise ``|conv(x, W * mask) + b - x|`` is one depthwise convolution
  whose centre tap is -1 (``predicted - x`` folded in) with a fused
  ``LeakyRelu`` of slope -1, which *is* ``|z|``;
* the fusion ``(fa + fb) / 2`` and the decoder's first depthwise
  convolution are folded together: a depthwise convolution over both
  streams with half the weights, then the pointwise 1x1 with its weights
  repeated for the two halves (which sums them) and the depthwise bias
  moved into its own;
* ``x + x * a`` stays two element-wise operations, but in the blocked
  layout: the exported graph's shapes are annotated with the symbolic
  batch, height and width, so that ONNX Runtime can prove the two operands
  alike (it cannot follow a dilated convolution's shape by itself, and
  would otherwise convert both operands to the plain layout and back);
* the maps, when asked for, are one extra 1x1 convolution on the surprise
  and one on the attention, summed into one 4-channel output (surprise 1,
  surprise 2, attention 1, attention 2: channel mean or one channel),
  followed, for a blend or mix head, by a fifth channel: the head's
  clipped mix weight ``w``, already computed for the fused image (one
  concatenation); without maps the graph has only the fused output;
* a balance-conditioned network's graph holds its per-channel ``scale``
  and ``shift`` (``model.condition(b)``) as two named constants, which ONNX
  Runtime folds into the convolution before them; one export serves every
  balance, each balance getting its own session from the exported graph
  with those two constants replaced (a few milliseconds, a few kept): as
  graph inputs they would cost two layout conversions and two plain
  element-wise passes (11 % more time per tile, measured);
* the blend head's ``w a + (1 - w) b`` is ``b + w (a - b)``, its hard
  sigmoid a fused clip;
* the decoder's last LeakyReLU is ``relu(y) - 0.1 relu(-y)``, ``y`` and
  ``-y`` side by side in the padding of their block and the head weighing
  the two (:func:`_relu_pairs`): MLAS fuses a ReLU into the convolution but
  runs a LeakyRelu as a second pass over the output (1-4 % of a slice's time,
  measured).

Networks of other shapes (ablation variants with another attention) are
exported through :class:`GenericNet`, which runs the model's own modules
and reduces the maps with a 1x1 convolution.

Sessions are built once per (weights, configuration, channel, threads,
maps) and cached (:func:`session_for`); building one (export + graph
optimisation) takes about a second.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
import weakref
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import LightFusionNet, head_output

#: ONNX opset of the exported graph (ONNX Runtime >= 1.17 runs it).
OPSET = 17
#: Channel block of ONNX Runtime's blocked CPU convolutions (AVX-512: 16, AVX2: 8);
#: channel counts are padded to multiples of 16, which suits both.
_BLOCK = 16
#: Sessions kept in the cache (one per weights x channel x threads x maps); each
#: holds its own memory arena (as large as the largest batch it ran), so keep few.
_CACHE_SIZE = 6
#: Symbolic names of the dynamic axes of every image-shaped tensor in the graph.
_AXES = {0: "batch", 2: "height", 3: "width"}


def _padded(n: int) -> int:
    """``n`` rounded up to a whole number of channel blocks."""
    return -(-n // _BLOCK) * _BLOCK


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
    out = w.shape[0]
    return (
        w.detach().to("cpu", torch.float32).clone(),
        torch.zeros(out) if b is None else b.detach().to("cpu", torch.float32).clone(),
        conv.dilation[0],
        conv.groups,
    )


def _compose_first(convs: list[tuple]) -> list[tuple]:
    """Fold a one-channel depthwise 3x3 and the pointwise 1x1 after it into one 3x3."""
    if len(convs) != 2:
        return convs
    (wd, bd, d, gd), (wp, bp, dp, gp) = convs
    if wd.shape[:2] != (1, 1) or wp.shape[1] != 1 or wp.shape[-1] != 1 or gp != 1:
        return convs
    w = wp[:, :1] * wd  # (C,1,1,1) * (1,1,k,k) -> (C,1,k,k)
    b = wp[:, 0, 0, 0] * bd[0] + bp
    return [(w, b, d, 1)]


def _reducer(width: int, channel: int | None) -> torch.Tensor:
    """Weights ``(width,)`` that average the channels, or pick one."""
    r = torch.zeros(width)
    if channel is None:
        r[:] = 1.0 / width
    else:
        r[channel] = 1.0
    return r


def _is_depthwise(spec: tuple) -> bool:
    w, _, _, groups = spec
    return groups > 1 and groups == w.shape[0] and w.shape[1] == 1


class _Conv(nn.Module):
    """One convolution of the rewritten graph, 'same' padding, optional fused activation."""

    def __init__(self, weight, bias, dilation: int = 1, groups: int = 1, activation=None):
        super().__init__()
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("bias", bias.contiguous())
        self.dilation, self.groups, self.activation = dilation, groups, activation

    def forward(self, x):
        pad = self.dilation * (self.weight.shape[-1] // 2)
        y = F.conv2d(x, self.weight, self.bias, padding=pad, dilation=self.dilation, groups=self.groups)
        return y if self.activation is None else self.activation(y)


#: Negative slope of the network's LeakyReLU (:func:`napari_lightfusion.model.conv_block`).
_SLOPE = 0.1


def _leaky(x):
    return F.leaky_relu(x, _SLOPE)


def _absolute(x):
    """``|x|`` as a LeakyRelu of slope -1, which ONNX Runtime fuses into the convolution before it."""
    return F.leaky_relu(x, -1.0)


def _both_streams(spec_a: tuple, spec_b: tuple, cin: int, cout: int, activation=None, dense=False) -> _Conv:
    """One convolution for both streams: stream 1 in channels ``[0, cout)``, stream 2 in ``[cout, 2 cout)``.

    ``cin``/``cout``: padded per-stream channel counts. Depthwise stays
    depthwise; other convolutions become 2-group convolutions, or with
    ``dense`` one convolution with zero cross-stream weights (for the raw
    two-channel input, which is too narrow for the blocked grouped kernel).
    """
    (wa, ba, d, g), (wb, bb, db, gb) = spec_a, spec_b
    if wa.shape != wb.shape or (d, g) != (db, gb):
        raise ValueError("the two streams differ in shape")
    n, k = wa.shape[0], wa.shape[-1]
    bias = torch.zeros(2 * cout)
    bias[:n], bias[cout : cout + n] = ba, bb
    if _is_depthwise(spec_a):
        w = torch.zeros(2 * cout, 1, k, k)
        w[:n], w[cout : cout + n] = wa, wb
        return _Conv(w, bias, d, 2 * cout, activation)
    if g != 1:
        raise ValueError("grouped convolutions are not rewritten")
    m = wa.shape[1]
    if dense:
        w = torch.zeros(2 * cout, 2 * cin, k, k)
        w[:n, :m], w[cout : cout + n, cin : cin + m] = wa, wb
        return _Conv(w, bias, d, 1, activation)
    w = torch.zeros(2 * cout, cin, k, k)
    w[:n, :m], w[cout : cout + n, :m] = wa, wb
    return _Conv(w, bias, d, 2, activation)


def _one_stream(spec: tuple, cin: int, cout: int, activation=None) -> _Conv:
    """A decoder convolution with its channel counts padded to ``cin`` in and ``cout`` out."""
    w, b, d, g = spec
    n, k = w.shape[0], w.shape[-1]
    bias = torch.zeros(cout)
    bias[:n] = b
    if _is_depthwise(spec):
        wp = torch.zeros(cout, 1, k, k)
        wp[:n] = w
        return _Conv(wp, bias, d, cout, activation)
    if g != 1:
        raise ValueError("grouped convolutions are not rewritten")
    wp = torch.zeros(cout, cin, k, k)
    wp[:n, : w.shape[1]] = w
    return _Conv(wp, bias, d, 1, activation)


def _bottlenecks(head_a: nn.Module, head_b: nn.Module, cp: int) -> tuple[_Conv, _Conv]:
    """The two streams' attention heads (1x1 C -> h, ReLU, 1x1 h -> C) as two convolutions.

    The hidden channels of both streams share one padded block (stream 1 in
    ``[0, h)``, stream 2 in ``[h, 2h)``): as many multiply-accumulates as two
    grouped convolutions, but half the hidden tensor to write and read.
    """
    (w1a, b1a, _, _), (w1b, b1b, _, _) = (_spec(_convs(h[0])[0]) for h in (head_a, head_b))
    (w2a, b2a, _, _), (w2b, b2b, _, _) = (_spec(_convs(h[2])[0]) for h in (head_a, head_b))
    h, c = w1a.shape[:2]
    hp = _padded(2 * h)
    w1, bias1 = torch.zeros(hp, 2 * cp, 1, 1), torch.zeros(hp)
    w1[:h, :c], w1[h : 2 * h, cp : cp + c] = w1a, w1b
    bias1[:h], bias1[h : 2 * h] = b1a, b1b
    w2, bias2 = torch.zeros(2 * cp, hp, 1, 1), torch.zeros(2 * cp)
    w2[:c, :h], w2[cp : cp + c, h : 2 * h] = w2a, w2b
    bias2[:c], bias2[cp : cp + c] = b2a, b2b
    return _Conv(w1, bias1, activation=F.relu), _Conv(w2, bias2, activation=torch.sigmoid)


#: Names of the graph constants that hold a conditioned network's FiLM scale and shift.
FILM = ("film_scale", "film_shift")


def _conditioned(model: LightFusionNet) -> bool:
    """Whether ``model`` takes a balance (its graph then has the :data:`FILM` constants)."""
    return bool(getattr(model, "conditioned", False))


def _register_film(net: nn.Module, model: LightFusionNet, channels: int) -> None:
    """Give ``net`` the :data:`FILM` buffers ``(1, channels, 1, 1)`` at the model's default balance."""
    with torch.no_grad():
        scale, shift = (t.detach().to("cpu", torch.float32) for t in model.condition(None))
    n = scale.shape[0]
    full_scale, full_shift = torch.ones(1, channels, 1, 1), torch.zeros(1, channels, 1, 1)
    full_scale[0, :n, 0, 0], full_shift[0, :n, 0, 0] = scale, shift
    net.register_buffer(FILM[0], full_scale)
    net.register_buffer(FILM[1], full_shift)


def _relu_pairs(hidden: _Conv, head: _Conv, n: int) -> bool:
    """Rewrite ``head(leaky(hidden(x)))`` as ``head'(relu(hidden'(x)))``, in place, where it costs nothing.

    MLAS fuses a ReLU into its convolution kernels, but applies every other
    activation (LeakyRelu, Sigmoid) in a second pass over the output. With
    ``leaky(y) = relu(y) - slope * relu(-y)``, ``hidden`` computes ``y`` in
    its first ``n`` output channels and ``-y`` in the next ``n`` (both
    ReLU'd), and ``head`` (linear, zero-padded like ``leaky``: both give 0
    for 0) takes ``w`` on the first and ``-slope * w`` on the next: the same
    result, one pass less. Only where the ``2 n`` channels fit in the
    block ``hidden`` is padded to anyway (the decoder's last hidden layer,
    ``C / 2`` channels), and only for a dense (``groups == 1``) ``hidden``.
    Returns whether it rewrote them.
    """
    if hidden.activation is not _leaky or hidden.groups != 1 or head.groups != 1:
        return False
    if hidden.weight.shape[0] < 2 * n or head.weight.shape[1] < 2 * n:
        return False
    w, b, wh = hidden.weight.clone(), hidden.bias.clone(), head.weight.clone()  # zero past n (padding)
    w[n : 2 * n], b[n : 2 * n], wh[:, n : 2 * n] = -w[:n], -b[:n], -_SLOPE * wh[:, :n]
    hidden.weight, hidden.bias, hidden.activation = w.contiguous(), b.contiguous(), F.relu
    head.weight = wh.contiguous()
    return True


def _fold_mean(block: list[tuple], cp: int) -> tuple[list[_Conv], int]:
    """The decoder's first block applied to ``(fa + fb) / 2``, on the two-stream tensor.

    Depthwise-separable: a depthwise convolution over both streams with half
    the weights, then the pointwise 1x1 with its weights repeated for the two
    halves (which sums them) and the depthwise bias moved into its bias.
    Standard: one convolution over both halves with half the weights each.
    Returns the convolutions and their output width.
    """
    if len(block) == 2 and _is_depthwise(block[0]) and block[1][0].shape[-1] == 1 and block[1][3] == 1:
        (w0, b0, d0, _), (w1, b1, _, _) = block
        n, k, m = w0.shape[0], w0.shape[-1], w1.shape[0]
        wd = torch.zeros(2 * cp, 1, k, k)
        wd[:n], wd[cp : cp + n] = 0.5 * w0, 0.5 * w0
        cout = _padded(m)
        wp = torch.zeros(cout, 2 * cp, 1, 1)
        wp[:m, :n], wp[:m, cp : cp + n] = w1, w1
        bias = torch.zeros(cout)
        bias[:m] = b1 + w1[:, :, 0, 0] @ b0
        return [_Conv(wd, torch.zeros(2 * cp), d0, 2 * cp), _Conv(wp, bias, 1, 1, _leaky)], cout
    if len(block) == 1 and block[0][3] == 1:
        w0, b0, d0, _ = block[0]
        n, m, k = w0.shape[0], w0.shape[1], w0.shape[-1]
        cout = _padded(n)
        w = torch.zeros(cout, 2 * cp, k, k)
        w[:n, :m], w[:n, cp : cp + m] = 0.5 * w0, 0.5 * w0
        bias = torch.zeros(cout)
        bias[:n] = b0
        return [_Conv(w, bias, d0, 1, _leaky)], cout
    raise ValueError("unexpected decoder block")


class ExportNet(nn.Module):
    """Export-friendly equivalent of a PCA :class:`LightFusionNet` (see module doc).

    ``forward(a, b)`` with ``(N, 1, H, W)`` inputs returns ``fused (N, H, W)``, and
    with ``maps`` also ``maps (N, 4, H, W)``: surprise of stream 1 and 2,
    attention of stream 1 and 2, each the channel mean or ``channel``, and
    for a blend or mix head a fifth channel, the mix weight ``w`` in [0, 1].
    Raises ``ValueError`` for a network it does not know how to rewrite.
    """

    #: Every image-shaped tensor of the graph has the inputs' batch, height and width.
    same_size = True

    def __init__(self, model: LightFusionNet, channel: int | None = None, maps: bool = True):
        super().__init__()
        config = model.config
        if config.attention != "pca":
            raise ValueError("ExportNet rewrites Predictive Context Attention networks only")
        self.maps, self.conditioned, self.width = maps, _conditioned(model), config.width
        c = config.width
        cp = _padded(c)

        blocks_a = [[_spec(v) for v in _convs(b)] for b in model.encoder_a]
        blocks_b = [[_spec(v) for v in _convs(b)] for b in model.encoder_b]
        blocks_a[0], blocks_b[0] = _compose_first(blocks_a[0]), _compose_first(blocks_b[0])
        encoder, cin, first = [], 1, True
        for block_a, block_b in zip(blocks_a, blocks_b, strict=True):
            for i, (sa, sb) in enumerate(zip(block_a, block_b, strict=True)):
                last = i == len(block_a) - 1
                cout = cin if _is_depthwise(sa) else _padded(sa[0].shape[0])
                encoder.append(_both_streams(sa, sb, cin, cout, _leaky if last else None, dense=first))
                cin, first = cout, False
        if cin != cp:
            raise ValueError("unexpected encoder width")
        self.encoder = nn.Sequential(*encoder)

        att_a, att_b = model.attention_a, model.attention_b
        context = []
        for att in (att_a, att_b):
            w = att.context.weight * att.centre_mask
            w = w.detach().to("cpu", torch.float32).clone()
            w[:, :, 1, 1] = -1.0  # predicted - x
            context.append(_spec(att.context, w))
        self.context = _both_streams(*context, cp, cp, _absolute)
        self.head1, self.head2 = _bottlenecks(att_a.head, att_b.head, cp)

        if maps:
            reduce = _reducer(c, channel)
            ws, wa = torch.zeros(4, 2 * cp, 1, 1), torch.zeros(4, 2 * cp, 1, 1)
            ws[0, :c, 0, 0], ws[1, cp : cp + c, 0, 0] = reduce, reduce
            wa[2, :c, 0, 0], wa[3, cp : cp + c, 0, 0] = reduce, reduce
            self.surprise_map = _Conv(ws, torch.zeros(4))
            self.attention_map = _Conv(wa, torch.zeros(4))

        decoder = [[_spec(v) for v in _convs(b)] for b in model.decoder]
        if len(decoder[-1]) != 1 or any(len(b) == 0 for b in decoder):
            raise ValueError("unexpected decoder")
        layers, cin = [], cp
        if self.conditioned:  # the mean must exist as a tensor: f * scale + shift
            eye = torch.eye(cp)[:, :, None, None] * 0.5
            self.mean = _Conv(torch.cat([eye, eye], 1), torch.zeros(cp))
            _register_film(self, model, cp)
            start = 0
        else:  # (fa + fb) / 2 folded into the first block
            start = 1
            layers, cin = _fold_mean(decoder[0], cp)
        for block in decoder[start:-1]:
            for i, spec in enumerate(block):
                cout = cin if _is_depthwise(spec) else _padded(spec[0].shape[0])
                layers.append(_one_stream(spec, cin, cout, _leaky if i == len(block) - 1 else None))
                cin = cout
        self.output = config.output
        w, b, d, g = decoder[-1][0]
        if self.output != "intensity":  # the blend weight's + 1/2 (and the mix's gain's + 1) in the bias
            b = b + torch.tensor([0.5, 1.0, 0.0][: b.shape[0]])
        # the head's last 1x1 without its activation: a fused one would run on all 16 channels
        # of the padded block; after the one (or three) channels are taken out it costs 1/16 of that
        layers.append(_one_stream((w, b, d, g), cin, w.shape[0]))
        _relu_pairs(layers[-2], layers[-1], w.shape[1])
        self.decoder = nn.Sequential(*layers)

    def forward(self, a, b):
        x = self.encoder(torch.cat([a, b], 1))
        surprise = self.context(x)  # |predicted - x|
        attention = self.head2(self.head1(surprise))
        f = x + x * attention
        if self.conditioned:
            f = self.mean(f) * self.film_scale + self.film_shift
        out = self.decoder(f)
        weight = None  # the mix weight (N, 1, H, W) of a blend or mix head
        if self.output == "mix":  # clamp(gain * (w a + (1 - w) b) + offset, 0, 1), gain = 1 + g
            w, gain, offset = out.split(1, dim=1)
            weight = w.clamp(0.0, 1.0)
            fused = (gain * (b + weight * (a - b)) + offset).clamp(0.0, 1.0).squeeze(1)
        elif self.output == "blend":  # w = clamp(z + 1/2, 0, 1), the 1/2 in the bias; fused = w a + (1 - w) b
            out = out.squeeze(1)  # a view in ONNX Runtime; [:, 0] would be a Gather (a copy)
            clipped = out.clamp(0.0, 1.0)
            fused = b.squeeze(1) + clipped * (a.squeeze(1) - b.squeeze(1))
            weight = clipped.unsqueeze(1)
        else:
            fused = torch.sigmoid(out.squeeze(1))
        if not self.maps:
            return fused
        maps = self.surprise_map(surprise) + self.attention_map(attention)
        return fused, maps if weight is None else torch.cat([maps, weight], 1)


class GenericNet(nn.Module):
    """Any :class:`LightFusionNet` with its maps reduced over channels, for export.

    Inputs and outputs as :class:`ExportNet`, except that ``maps`` has only
    the two attention channels (and the mix weight) when the attention
    variant computes no surprise. It runs the model's own modules in the order of
    ``LightFusionNet.forward``.
    """

    same_size = False

    def __init__(self, model: LightFusionNet, channel: int | None = None, maps: bool = True):
        super().__init__()
        self.model = model
        self.maps = maps
        self.conditioned = _conditioned(model)
        if self.conditioned:
            _register_film(self, model, model.config.width)
        self.register_buffer("reducer", _reducer(model.config.width, channel)[None, :, None, None])

    def forward(self, a, b):
        m = self.model
        fa, sa, aa = m.attention_a(m.encoder_a(a))
        fb, sb, ab = m.attention_b(m.encoder_b(b))
        f = (fa + fb) * 0.5
        if self.conditioned:
            f = f * self.film_scale + self.film_shift
        fused, weight = head_output(m.config.output, a, b, m.decoder(f))
        fused = fused[:, 0]
        if not self.maps:
            return fused
        maps = (aa, ab) if sa is None else (sa, sb, aa, ab)
        reduced = [F.conv2d(t, self.reducer) for t in maps]
        if weight is not None:
            reduced.append(weight)
        return fused, torch.cat(reduced, 1)


def export_net(model: LightFusionNet, channel: int | None = None, maps: bool = True) -> nn.Module:
    """The module to export: :class:`ExportNet` when it applies, else :class:`GenericNet`."""
    import copy

    try:
        return ExportNet(model, channel, maps).eval()
    except (ValueError, AttributeError, IndexError, TypeError, RuntimeError):
        return GenericNet(copy.deepcopy(model).float().cpu(), channel, maps).eval()


def _annotate_shapes(data: bytes) -> bytes:
    """Give every image-shaped tensor of the graph the symbolic batch, height and width.

    ONNX shape inference loses the spatial size after a dilated convolution;
    with it stated, ONNX Runtime keeps ``x * a`` and ``x + ...`` in the
    blocked layout instead of converting both operands back and forth.
    Only for graphs whose image-shaped tensors all have the inputs' size.
    """
    import onnx

    graph_model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
    graph = graph_model.graph
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    constants |= {t.name for t in graph.initializer}
    for info in graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if info.name in constants or len(dims) != 4:
            continue
        for axis, name in _AXES.items():
            dims[axis].Clear()
            dims[axis].dim_param = name
    return graph_model.SerializeToString()


def export_onnx(
    model: LightFusionNet, channel: int | None = None, maps: bool = True
) -> tuple[bytes, list[str], bool]:
    """Export the network (with channel-reduced maps, or without maps) to an in-memory ONNX model.

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no
    extra package; batch, height and width are dynamic. Returns the
    serialised model, its output names (``fused``, and ``maps`` when asked
    for) and whether it holds the :data:`FILM` constants of a conditioned
    network (set to its default balance).
    """
    net = export_net(model, channel, maps)
    sample = torch.rand(1, 1, 32, 32)
    names = ["fused", "maps"] if maps else ["fused"]
    axes = dict.fromkeys(["a", "b", *names], _AXES)
    axes["fused"] = {0: "batch", 1: "height", 2: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            net, (sample, sample), buffer,
            input_names=["a", "b"], output_names=names, dynamic_axes=axes,
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    data = buffer.getvalue()
    return (_annotate_shapes(data) if net.same_size else data), names, net.conditioned


def with_film(data: bytes, scale: np.ndarray, shift: np.ndarray) -> bytes:
    """The exported graph ``data`` with its :data:`FILM` constants set to ``scale`` and ``shift`` ``(C,)``.

    Channels past ``C`` (the padding) keep scale 1 and shift 0.
    """
    import onnx
    from onnx import numpy_helper

    graph_model = onnx.load_from_string(data)
    found = 0
    for init in graph_model.graph.initializer:
        if init.name in FILM:
            value = np.asarray(scale if init.name == FILM[0] else shift, np.float32).reshape(-1)
            full = numpy_helper.to_array(init).copy()
            if value.shape[0] > full.size:
                raise ValueError(f"{init.name} has {full.size} channels, not {value.shape[0]}")
            full.reshape(-1)[: value.shape[0]] = value
            init.CopyFrom(numpy_helper.from_array(full, init.name))
            found += 1
    if found != len(FILM):
        raise ValueError("the exported graph has no balance constants")
    return graph_model.SerializeToString()


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

    Remembered per model object until one of its tensors is replaced or
    changed in place (torch counts in-place changes in ``Tensor._version``),
    so that asking again costs microseconds, not a pass over the weights.
    """
    stamp = (id(model.config), *((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers())))
    known = _fingerprints.get(model)
    if known is not None and known[0] == stamp:
        return known[1]
    h = hashlib.blake2b(repr(model.config).encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    digest = h.hexdigest()
    _fingerprints[model] = (stamp, digest)
    return digest


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
    prefix for ONNX Runtime's own profile (``lightfusion bench --profile``).
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

