"""LightFusionNet: the dual-stream fusion network of the paper.

    anatomical ──► encoder A ──► attention A ──┐
                                               ├─ mean ──► decoder ──► 1x1 ──► sigmoid / blend / mix
    functional ──► encoder B ──► attention B ──┘

* Encoders: blocks of depthwise-separable convolution (depthwise 3x3 then
  pointwise 1x1, Chollet 2017), base width ``C``; the depthwise dilation
  grows 1, 2, 3 so the receptive field grows block by block (3, 7, 13 px).
* Predictive Context Attention (PCA): a depthwise 3x3 convolution whose
  centre tap is masked out predicts every feature from its eight
  neighbours; the *surprise* is ``|predicted - actual|``; a 1x1 bottleneck
  with reduction ratio ``R`` and a sigmoid turn the surprise into attention
  ``a``; the output is ``x + x * a``. The paper does not say how the
  context prediction is built; the masked depthwise convolution is the
  cheapest predictor that cannot see the value it predicts (otherwise the
  identity would be learnt and the surprise would vanish).
* Fusion: element-wise mean of the two refined feature maps (no parameters).
* Decoder: two depthwise-separable blocks, a 1x1 convolution, a sigmoid.
  With ``output="intensity"`` (the paper's reading, the default) the
  sigmoid *is* the fused image. With ``output="blend"`` the last layer gives a
  per-pixel weight ``w = clamp(z + 1/2, 0, 1)`` (a hard sigmoid whose
  gradient cannot die at saturation, :func:`blend_weight`) and the fused
  image is ``w * a + (1 - w) * b``: every fused
  value is then a mixture of the two source values at that pixel, which
  keeps their grey levels (the mutual-information metric rewards that) and
  would tell the user which input won where. Measured, though, the
  paper's losses drive the blend weight to 1 (the MRI) almost everywhere
  on PET-MRI at 64-pixel crops: the "fused" image becomes one of the
  inputs (``docs/ablations.md``, Table D). On CT-MRI, trained on 96-pixel
  crops, it mixes (the bundled CT-MRI preset). With ``output="mix"`` the
  head has three channels: the blend weight, a contrast gain and an offset
  (:func:`head_output`); a mixture of two textures has less contrast than
  either, and the gain gives it back. The bundled PET-MRI preset uses it,
  trained with the "split" balance loss (:mod:`napari_lightfusion.losses`).
  The default stays the paper's reading, which the paper's tables use.

Balance (not in the paper): with ``ModelConfig.balance`` set, the network
is conditioned on a scalar ``b`` in [0, 1], from "anatomy first" (0) to
"function first" (1). A tiny MLP (1 -> 8 -> 2C, :class:`BalanceFiLM`) turns
``b`` into a per-channel scale and shift of the fused features before the
decoder (feature-wise linear modulation, Perez et al. 2018); training
samples ``b`` per batch and moves the loss's targets with it
(:mod:`napari_lightfusion.losses`). ``balance=None`` (the default) is the
paper's unconditioned network, with exactly its parameters and outputs.

Ablation options (Tables 3 and 4 of the paper) are constructor arguments:
``width`` (C), ``reduction`` (R), ``attention`` ("pca", "conv", "channel",
"spatial"), ``conv`` ("dsc" or "standard") and ``output`` ("intensity",
"blend" or "mix").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ATTENTIONS = ("pca", "conv", "channel", "spatial")
CONVS = ("dsc", "standard")
OUTPUTS = ("blend", "intensity", "mix")
#: The output heads that mix the two inputs, and so have a per-pixel mix weight (:func:`head_output`).
MIXING_OUTPUTS = ("blend", "mix")
ENCODER_DILATIONS = (1, 2, 3)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network; stored beside its weights."""

    width: int = 16
    reduction: int = 4
    attention: str = "pca"
    conv: str = "dsc"
    output: str = "intensity"
    #: None: the paper's unconditioned network. A float: conditioned on the
    #: balance b in [0, 1], and this is its default b.
    balance: float | None = None

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {self.attention!r}")
        if self.conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, not {self.conv!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, not {self.output!r}")
        if self.width < 2 or self.reduction < 1 or self.width // self.reduction < 1:
            raise ValueError(f"width {self.width} and reduction {self.reduction} do not fit")
        if self.balance is not None:
            check_balance(self.balance)

    def to_dict(self) -> dict:
        return asdict(self)


def check_balance(balance, auto: bool = False) -> float:
    """``balance`` as a float, or a one-line ValueError unless it is a number in [0, 1].

    ``auto``: the caller also takes ``"auto"``, and the message says so.
    """
    also = " or 'auto'" if auto else ""
    try:
        value = float(balance)
    except (TypeError, ValueError):
        raise ValueError(f"balance must be a number in [0, 1]{also}, not {balance!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"balance must be in [0, 1]{also}, not {balance!r}")
    return value


def conv_block(cin: int, cout: int, kind: str, dilation: int = 1) -> nn.Sequential:
    """One 3x3 feature block: depthwise-separable or standard, then LeakyReLU."""
    if kind == "dsc":
        layers = [nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin), nn.Conv2d(cin, cout, 1)]
    else:
        layers = [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)]
    return nn.Sequential(*layers, nn.LeakyReLU(0.1, inplace=True))


class Bottleneck(nn.Sequential):
    """1x1 conv C -> C/R, ReLU, 1x1 conv C/R -> C: the attention head."""

    def __init__(self, channels: int, reduction: int):
        hidden = max(1, channels // reduction)
        super().__init__(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))


class PredictiveContextAttention(nn.Module):
    """Attention from the surprise of a feature given its 3x3 neighbourhood."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.context = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        mask = torch.ones(1, 1, 3, 3)
        mask[..., 1, 1] = 0.0
        self.register_buffer("centre_mask", mask, persistent=False)
        self.head = Bottleneck(channels, reduction)

    def forward(self, x):
        weight = self.context.weight * self.centre_mask
        predicted = F.conv2d(x, weight, self.context.bias, padding=1, groups=x.shape[1])
        surprise = (predicted - x).abs()
        attention = torch.sigmoid(self.head(surprise))
        return x + x * attention, surprise, attention


class ConvAttention(nn.Module):
    """Ablation "PCA -> Conv": the same head on the features, no context prediction."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.head = Bottleneck(channels, reduction)

    def forward(self, x):
        attention = torch.sigmoid(self.head(x))
        return x + x * attention, None, attention


class ChannelAttention(nn.Module):
    """Ablation "PCA -> CA": squeeze-and-excitation (Hu et al. 2018), one weight per channel."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.head = Bottleneck(channels, reduction)

    def forward(self, x):
        attention = torch.sigmoid(self.head(x.mean(dim=(2, 3), keepdim=True)))
        return x + x * attention, None, attention.expand_as(x)


class SpatialAttention(nn.Module):
    """Ablation "PCA -> SA": CBAM spatial attention (Woo et al. 2018), one weight per pixel."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        attention = torch.sigmoid(self.conv(pooled))
        return x + x * attention, None, attention.expand_as(x)


_ATTENTION_MODULES = {
    "pca": PredictiveContextAttention,
    "conv": ConvAttention,
    "channel": ChannelAttention,
    "spatial": SpatialAttention,
}


class _InwardClamp(torch.autograd.Function):
    """``clamp(x, 0, 1)`` whose gradient still flows at a bound when descent moves ``x`` back inside.

    A sigmoid (or a plain clamp) stops the gradient once it saturates: the
    blend weight then freezes at 0 or 1 everywhere and the "fused" image is
    one of the inputs (measured: both loss weightings did that on CT-MRI and
    PET-MRI within the first epochs). Here a saturated weight can still leave
    the bound, while the gradients that would push it further out are
    dropped so that the pre-activation does not drift away.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        outward = ((x > 1) & (grad < 0)) | ((x < 0) & (grad > 0))  # descent steps by -grad
        return grad.masked_fill(outward, 0.0)


def blend_weight(logit: torch.Tensor) -> torch.Tensor:
    """The blend head's per-pixel weight ``clamp(logit + 1/2, 0, 1)`` (a hard sigmoid) in [0, 1]."""
    x = logit + 0.5
    return _InwardClamp.apply(x) if x.requires_grad else x.clamp(0.0, 1.0)


def head_output(output: str, a: torch.Tensor, b: torch.Tensor, head: torch.Tensor):
    """``(fused, weight)`` from the decoder's last layer ``head``, for the output head ``output``.

    "intensity": ``sigmoid(head)``, no weight (None). "blend": the per-pixel
    weight ``w =`` :func:`blend_weight` ``(head)`` and ``w a + (1 - w) b``.
    "mix": ``head`` is ``(N, 3, H, W)``, the blend weight's logit, a
    contrast gain ``g`` and an offset ``o``, and the fused image is
    ``clamp((1 + g) (w a + (1 - w) b) + o, 0, 1)``. The mixture says which
    source each pixel's value comes from (``w``, the widget's "mix weight"
    map); the gain and offset let the network stretch the mixture's contrast
    (a mixture of two textures has less contrast than either: what an
    average loses inside the hot spots).
    """
    if output == "intensity":
        return torch.sigmoid(head), None
    w = blend_weight(head[:, :1])
    mixed = b + w * (a - b)  # = w a + (1 - w) b
    if output == "blend":
        return mixed, w
    return ((1.0 + head[:, 1:2]) * mixed + head[:, 2:3]).clamp(0.0, 1.0), w


class BalanceFiLM(nn.Module):
    """b -> per-channel (scale, shift) of the fused features: Linear(1, 8), tanh, Linear(8, 2C).

    The last layer starts at zero, so an untrained conditioning is the
    identity (scale 1, shift 0) for every b; 18C + 16 parameters (304 at
    C = 16).
    """

    HIDDEN = 8

    def __init__(self, channels: int):
        super().__init__()
        self.hidden = nn.Linear(1, self.HIDDEN)
        self.out = nn.Linear(self.HIDDEN, 2 * channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, balance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.out(torch.tanh(self.hidden(balance.reshape(1, 1)))).reshape(2, -1)
        return 1.0 + scale, shift


class Encoder(nn.Sequential):
    """One modality's feature extractor: 1 -> C channels, growing receptive field."""

    def __init__(self, width: int, conv: str):
        blocks = [conv_block(1, width, conv, ENCODER_DILATIONS[0])]
        blocks += [conv_block(width, width, conv, d) for d in ENCODER_DILATIONS[1:]]
        super().__init__(*blocks)


class LightFusionNet(nn.Module):
    """Fuse a one-channel anatomical and a one-channel functional image.

    ``forward(a, b)`` takes two ``(N, 1, H, W)`` tensors in [0, 1] and
    returns the fused ``(N, 1, H, W)`` image in [0, 1]. With
    ``return_maps=True`` it also returns a dict with per-stream
    ``"surprise"`` and ``"attention"`` tuples of ``(N, C, H, W)`` tensors
    (the surprise entries are ``None`` for attention variants that do not
    compute one). The maps are computed on every pass anyway, so asking for
    them costs nothing. ``balance`` (b in [0, 1], None = the configuration's
    default) conditions a network built with ``ModelConfig.balance``; the
    unconditioned network ignores it.
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        super().__init__()
        self.config = config or ModelConfig(**kwargs)
        c, r = self.config.width, self.config.reduction
        attention = _ATTENTION_MODULES[self.config.attention]
        self.encoder_a = Encoder(c, self.config.conv)
        self.encoder_b = Encoder(c, self.config.conv)
        self.attention_a = attention(c, r)
        self.attention_b = attention(c, r)
        self.decoder = nn.Sequential(
            conv_block(c, c, self.config.conv),
            conv_block(c, c // 2, self.config.conv),
            nn.Conv2d(c // 2, 3 if self.config.output == "mix" else 1, 1),
        )
        self.film = BalanceFiLM(c) if self.config.balance is not None else None

    @property
    def has_weight(self) -> bool:
        """Whether the output head has a per-pixel mix weight (the "blend" and "mix" heads)."""
        return self.config.output in MIXING_OUTPUTS

    @property
    def conditioned(self) -> bool:
        """True when the network takes a balance (``ModelConfig.balance`` is set)."""
        return self.film is not None

    def condition(self, balance: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, shift)``, each ``(C,)``, for balance ``b`` in [0, 1].

        The fused features become ``f * scale + shift`` (per channel) before
        the decoder. ``None`` means the configuration's default b. An
        unconditioned network returns ones and zeros (the identity) for any
        valid b. Out of [0, 1]: ValueError.
        """
        c = self.config.width
        ref = self.decoder[-1].weight
        if balance is None:
            balance = self.config.balance if self.conditioned else 0.0
        value = check_balance(balance)
        if not self.conditioned:
            return torch.ones(c, dtype=ref.dtype, device=ref.device), torch.zeros(c, dtype=ref.dtype, device=ref.device)
        return self.film(torch.tensor(value, dtype=ref.dtype, device=ref.device))

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that influence one output pixel.

        Tiled inference needs at least this much overlap to reproduce the
        untiled result (see :attr:`is_local` for the one variant that has no
        bounded neighbourhood).
        """
        encoder = sum(ENCODER_DILATIONS)
        context = 1 if self.config.attention == "pca" else 0
        context = 3 if self.config.attention == "spatial" else context
        return encoder + context + 2

    @property
    def maps_radius(self) -> int:
        """Pixels on each side that influence a pixel of the maps: :attr:`receptive_radius` less the decoder.

        Within this many pixels of the edge the zero padding reaches the maps: a
        flat background's features are a constant (the biases), the padding 0, so
        the context prediction fails there and the surprise (and the attention made
        from it) runs in a stripe along every edge. The widget shows no map there.
        """
        return self.receptive_radius - 2

    @property
    def is_local(self) -> bool:
        """True when every output pixel depends only on a bounded neighbourhood."""
        return self.config.attention != "channel"

    def forward(self, a, b, return_maps: bool = False, balance: float | None = None):
        fa, sa, aa = self.attention_a(self.encoder_a(a))
        fb, sb, ab = self.attention_b(self.encoder_b(b))
        fused_features = (fa + fb) * 0.5
        if self.conditioned:
            scale, shift = self.condition(balance)
            fused_features = fused_features * scale[None, :, None, None] + shift[None, :, None, None]
        elif balance is not None:
            check_balance(balance)  # the paper's network ignores b, but a bad one is still an error
        fused, weight = head_output(self.config.output, a, b, self.decoder(fused_features))
        if not return_maps:
            return fused
        return fused, {"surprise": (sa, sb), "attention": (aa, ab), "weight": weight}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: LightFusionNet, height: int = 256, width: int = 256) -> int:
    """Multiply-accumulates of one forward pass on one ``height x width`` pair.

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts
    convolutions as 2 FLOPs per multiply-accumulate; the figure returned is
    MACs (= counted FLOPs / 2). Element-wise work (activations, the
    attention product, the mean) is not counted, as in common counters, and
    the paper's "0.29 G FLOPS" matches this MAC convention.
    """
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, x)
    return counter.get_total_flops() // 2
