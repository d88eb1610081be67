"""The fast path's export: LightFusionNet rewritten into an equivalent network and exported to ONNX in memory.

ONNX Runtime's CPU provider keeps a graph in its blocked ``NCHWc`` layout
(16 channels a block on AVX-512, 8 on AVX2) only where every operation
allows it; :mod:`napari_lightfusion.fastpath` runs what is made here.
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
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .export_blocks import (
    FILM,
    Conv,
    absolute,
    block_convs,
    both_streams,
    bottlenecks,
    compose_first,
    conv_spec,
    fold_mean,
    is_conditioned,
    is_depthwise,
    leaky,
    map_reducer,
    one_stream,
    padded,
    register_film,
    relu_pairs,
)
from .model import LightFusionNet, head_output

#: ONNX opset of the exported graph (ONNX Runtime >= 1.17 runs it).
OPSET = 17
#: Symbolic names of the dynamic axes of every image-shaped tensor in the graph.
_AXES = {0: "batch", 2: "height", 3: "width"}


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
        self.maps, self.conditioned, self.width = maps, is_conditioned(model), config.width
        c = config.width
        cp = padded(c)

        blocks_a = [[conv_spec(v) for v in block_convs(b)] for b in model.encoder_a]
        blocks_b = [[conv_spec(v) for v in block_convs(b)] for b in model.encoder_b]
        blocks_a[0], blocks_b[0] = compose_first(blocks_a[0]), compose_first(blocks_b[0])
        encoder, cin, first = [], 1, True
        for block_a, block_b in zip(blocks_a, blocks_b, strict=True):
            for i, (sa, sb) in enumerate(zip(block_a, block_b, strict=True)):
                last = i == len(block_a) - 1
                cout = cin if is_depthwise(sa) else padded(sa[0].shape[0])
                encoder.append(both_streams(sa, sb, cin, cout, leaky if last else None, dense=first))
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
            context.append(conv_spec(att.context, w))
        self.context = both_streams(*context, cp, cp, absolute)
        self.head1, self.head2 = bottlenecks(att_a.head, att_b.head, cp)

        if maps:
            reduce = map_reducer(c, channel)
            ws, wa = torch.zeros(4, 2 * cp, 1, 1), torch.zeros(4, 2 * cp, 1, 1)
            ws[0, :c, 0, 0], ws[1, cp : cp + c, 0, 0] = reduce, reduce
            wa[2, :c, 0, 0], wa[3, cp : cp + c, 0, 0] = reduce, reduce
            self.surprise_map = Conv(ws, torch.zeros(4))
            self.attention_map = Conv(wa, torch.zeros(4))

        decoder = [[conv_spec(v) for v in block_convs(b)] for b in model.decoder]
        if len(decoder[-1]) != 1 or any(len(b) == 0 for b in decoder):
            raise ValueError("unexpected decoder")
        layers, cin = [], cp
        if self.conditioned:  # the mean must exist as a tensor: f * scale + shift
            eye = torch.eye(cp)[:, :, None, None] * 0.5
            self.mean = Conv(torch.cat([eye, eye], 1), torch.zeros(cp))
            register_film(self, model, cp)
            start = 0
        else:  # (fa + fb) / 2 folded into the first block
            start = 1
            layers, cin = fold_mean(decoder[0], cp)
        for block in decoder[start:-1]:
            for i, spec in enumerate(block):
                cout = cin if is_depthwise(spec) else padded(spec[0].shape[0])
                layers.append(one_stream(spec, cin, cout, leaky if i == len(block) - 1 else None))
                cin = cout
        self.output = config.output
        w, b, d, g = decoder[-1][0]
        if self.output != "intensity":  # the blend weight's + 1/2 (and the mix's gain's + 1) in the bias
            b = b + torch.tensor([0.5, 1.0, 0.0][: b.shape[0]])
        # the head's last 1x1 without its activation: a fused one would run on all 16 channels
        # of the padded block; after the one (or three) channels are taken out it costs 1/16 of that
        layers.append(one_stream((w, b, d, g), cin, w.shape[0]))
        relu_pairs(layers[-2], layers[-1], w.shape[1])
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
        self.conditioned = is_conditioned(model)
        if self.conditioned:
            register_film(self, model, model.config.width)
        self.register_buffer("reducer", map_reducer(model.config.width, channel)[None, :, None, None])

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


def export_onnx(model: LightFusionNet, channel: int | None = None, maps: bool = True) -> tuple[bytes, list[str], bool]:
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
            net,
            (sample, sample),
            buffer,
            input_names=["a", "b"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
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
