"""The convolutions the fast path's export is built of (:mod:`napari_lightfusion.onnx_export`).

Each takes a LightFusionNet layer's weights (:func:`conv_spec`) and gives
an equivalent convolution of the rewritten graph (:class:`Conv`, 'same'
padding, an activation ONNX Runtime fuses into it): both streams in one
grouped convolution, channel counts padded to :data:`BLOCK`, the first
depthwise and pointwise pair composed, the decoder's first block folded
with the mean of the streams, the last LeakyReLU as a pair of ReLUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import LightFusionNet

#: Channel block of ONNX Runtime's blocked CPU convolutions (AVX-512: 16, AVX2: 8);
#: channel counts are padded to multiples of 16, which suits both.
BLOCK = 16


def padded(n: int) -> int:
    """``n`` rounded up to a whole number of channel blocks."""
    return -(-n // BLOCK) * BLOCK


def block_convs(block: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of one ``conv_block`` (or a bare ``Conv2d``), in order."""
    if isinstance(block, nn.Conv2d):
        return [block]
    return [m for m in block if isinstance(m, nn.Conv2d)]


def conv_spec(conv: nn.Conv2d, weight=None, bias=None) -> tuple:
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


def compose_first(convs: list[tuple]) -> list[tuple]:
    """Fold a one-channel depthwise 3x3 and the pointwise 1x1 after it into one 3x3."""
    if len(convs) != 2:
        return convs
    (wd, bd, d, gd), (wp, bp, dp, gp) = convs
    if wd.shape[:2] != (1, 1) or wp.shape[1] != 1 or wp.shape[-1] != 1 or gp != 1:
        return convs
    w = wp[:, :1] * wd  # (C,1,1,1) * (1,1,k,k) -> (C,1,k,k)
    b = wp[:, 0, 0, 0] * bd[0] + bp
    return [(w, b, d, 1)]


def map_reducer(width: int, channel: int | None) -> torch.Tensor:
    """Weights ``(width,)`` that average the channels, or pick one."""
    r = torch.zeros(width)
    if channel is None:
        r[:] = 1.0 / width
    else:
        r[channel] = 1.0
    return r


def is_depthwise(spec: tuple) -> bool:
    w, _, _, groups = spec
    return groups > 1 and groups == w.shape[0] and w.shape[1] == 1


class Conv(nn.Module):
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
SLOPE = 0.1


def leaky(x):
    return F.leaky_relu(x, SLOPE)


def absolute(x):
    """``|x|`` as a LeakyRelu of slope -1, which ONNX Runtime fuses into the convolution before it."""
    return F.leaky_relu(x, -1.0)


def both_streams(spec_a: tuple, spec_b: tuple, cin: int, cout: int, activation=None, dense=False) -> Conv:
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
    if is_depthwise(spec_a):
        w = torch.zeros(2 * cout, 1, k, k)
        w[:n], w[cout : cout + n] = wa, wb
        return Conv(w, bias, d, 2 * cout, activation)
    if g != 1:
        raise ValueError("grouped convolutions are not rewritten")
    m = wa.shape[1]
    if dense:
        w = torch.zeros(2 * cout, 2 * cin, k, k)
        w[:n, :m], w[cout : cout + n, cin : cin + m] = wa, wb
        return Conv(w, bias, d, 1, activation)
    w = torch.zeros(2 * cout, cin, k, k)
    w[:n, :m], w[cout : cout + n, :m] = wa, wb
    return Conv(w, bias, d, 2, activation)


def one_stream(spec: tuple, cin: int, cout: int, activation=None) -> Conv:
    """A decoder convolution with its channel counts padded to ``cin`` in and ``cout`` out."""
    w, b, d, g = spec
    n, k = w.shape[0], w.shape[-1]
    bias = torch.zeros(cout)
    bias[:n] = b
    if is_depthwise(spec):
        wp = torch.zeros(cout, 1, k, k)
        wp[:n] = w
        return Conv(wp, bias, d, cout, activation)
    if g != 1:
        raise ValueError("grouped convolutions are not rewritten")
    wp = torch.zeros(cout, cin, k, k)
    wp[:n, : w.shape[1]] = w
    return Conv(wp, bias, d, 1, activation)


def bottlenecks(head_a: nn.Module, head_b: nn.Module, cp: int) -> tuple[Conv, Conv]:
    """The two streams' attention heads (1x1 C -> h, ReLU, 1x1 h -> C) as two convolutions.

    The hidden channels of both streams share one padded block (stream 1 in
    ``[0, h)``, stream 2 in ``[h, 2h)``): as many multiply-accumulates as two
    grouped convolutions, but half the hidden tensor to write and read.
    """
    (w1a, b1a, _, _), (w1b, b1b, _, _) = (conv_spec(block_convs(h[0])[0]) for h in (head_a, head_b))
    (w2a, b2a, _, _), (w2b, b2b, _, _) = (conv_spec(block_convs(h[2])[0]) for h in (head_a, head_b))
    h, c = w1a.shape[:2]
    hp = padded(2 * h)
    w1, bias1 = torch.zeros(hp, 2 * cp, 1, 1), torch.zeros(hp)
    w1[:h, :c], w1[h : 2 * h, cp : cp + c] = w1a, w1b
    bias1[:h], bias1[h : 2 * h] = b1a, b1b
    w2, bias2 = torch.zeros(2 * cp, hp, 1, 1), torch.zeros(2 * cp)
    w2[:c, :h], w2[cp : cp + c, h : 2 * h] = w2a, w2b
    bias2[:c], bias2[cp : cp + c] = b2a, b2b
    return Conv(w1, bias1, activation=F.relu), Conv(w2, bias2, activation=torch.sigmoid)


#: Names of the graph constants that hold a conditioned network's FiLM scale and shift.
FILM = ("film_scale", "film_shift")


def is_conditioned(model: LightFusionNet) -> bool:
    """Whether ``model`` takes a balance (its graph then has the :data:`FILM` constants)."""
    return bool(getattr(model, "conditioned", False))


def register_film(net: nn.Module, model: LightFusionNet, channels: int) -> None:
    """Give ``net`` the :data:`FILM` buffers ``(1, channels, 1, 1)`` at the model's default balance."""
    with torch.no_grad():
        scale, shift = (t.detach().to("cpu", torch.float32) for t in model.condition(None))
    n = scale.shape[0]
    full_scale, full_shift = torch.ones(1, channels, 1, 1), torch.zeros(1, channels, 1, 1)
    full_scale[0, :n, 0, 0], full_shift[0, :n, 0, 0] = scale, shift
    net.register_buffer(FILM[0], full_scale)
    net.register_buffer(FILM[1], full_shift)


def relu_pairs(hidden: Conv, head: Conv, n: int) -> bool:
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
    if hidden.activation is not leaky or hidden.groups != 1 or head.groups != 1:
        return False
    if hidden.weight.shape[0] < 2 * n or head.weight.shape[1] < 2 * n:
        return False
    w, b, wh = hidden.weight.clone(), hidden.bias.clone(), head.weight.clone()  # zero past n (padding)
    w[n : 2 * n], b[n : 2 * n], wh[:, n : 2 * n] = -w[:n], -b[:n], -SLOPE * wh[:, :n]
    hidden.weight, hidden.bias, hidden.activation = w.contiguous(), b.contiguous(), F.relu
    head.weight = wh.contiguous()
    return True


def fold_mean(block: list[tuple], cp: int) -> tuple[list[Conv], int]:
    """The decoder's first block applied to ``(fa + fb) / 2``, on the two-stream tensor.

    Depthwise-separable: a depthwise convolution over both streams with half
    the weights, then the pointwise 1x1 with its weights repeated for the two
    halves (which sums them) and the depthwise bias moved into its bias.
    Standard: one convolution over both halves with half the weights each.
    Returns the convolutions and their output width.
    """
    if len(block) == 2 and is_depthwise(block[0]) and block[1][0].shape[-1] == 1 and block[1][3] == 1:
        (w0, b0, d0, _), (w1, b1, _, _) = block
        n, k, m = w0.shape[0], w0.shape[-1], w1.shape[0]
        wd = torch.zeros(2 * cp, 1, k, k)
        wd[:n], wd[cp : cp + n] = 0.5 * w0, 0.5 * w0
        cout = padded(m)
        wp = torch.zeros(cout, 2 * cp, 1, 1)
        wp[:m, :n], wp[:m, cp : cp + n] = w1, w1
        bias = torch.zeros(cout)
        bias[:m] = b1 + w1[:, :, 0, 0] @ b0
        return [Conv(wd, torch.zeros(2 * cp), d0, 2 * cp), Conv(wp, bias, 1, 1, leaky)], cout
    if len(block) == 1 and block[0][3] == 1:
        w0, b0, d0, _ = block[0]
        n, m, k = w0.shape[0], w0.shape[1], w0.shape[-1]
        cout = padded(n)
        w = torch.zeros(cout, 2 * cp, k, k)
        w[:n, :m], w[:n, cp : cp + m] = 0.5 * w0, 0.5 * w0
        bias = torch.zeros(cout)
        bias[:n] = b0
        return [Conv(w, bias, d0, 1, leaky)], cout
    raise ValueError("unexpected decoder block")
