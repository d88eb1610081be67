"""The training objective of the paper (Eqs. 1-5).

All images are ``(N, 1, H, W)`` tensors in [0, 1].

* intensity: ``mean |F - max(A, B)|`` (Eq. 1)
* gradient:  ``mean | |grad F| - max(|grad A|, |grad B|) |`` with Sobel
  gradients and the Euclidean magnitude (Eq. 2)
* SSIM:      ``1 - (SSIM(F, A) + SSIM(F, B)) / 2`` (Eqs. 3-4), Gaussian
  window 11 x 11, sigma 1.5, ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with
  ``L = 1`` (the paper's "C1 = 0.01, C2 = 0.03" are these K1, K2).

Balance (not in the paper). Every term takes a balance ``beta`` in [0, 1]
that moves its target from the paper's (``beta = 0``, the anatomy-keeping
fusion the bundled presets learnt) to the functional source ``B``
(``beta = 1``):

* intensity target ``(1 - beta) max(A, B) + beta B``;
* gradient target ``(1 - beta) max(|grad A|, |grad B|) + beta |grad B|``;
* SSIM ``1 - ((1 - beta) SSIM(F, A) + (1 + beta) SSIM(F, B)) / 2``.

That is the ``"targets"`` mode. In the ``"fade"`` mode the intensity and
gradient terms keep the paper's targets but fade out as ``(1 - b)^2``, and
the SSIM term weights B by ``(1 + b^2) / 2`` (so ``beta = b^2`` there): the
middle of the range is left to the SSIM trade-off between the two sources.
The ``"hotspot"`` mode is ``"fade"`` plus a term that looks where clinicians
look: inside the functional hot spot (a mask, see
:func:`napari_lightfusion.metrics.hot_spot`), one minus the mean of
``(1 - b) SSIM7(F, A) + b SSIM7(F, B)``, with the 7 x 7 uniform-window SSIM
map of the hot-spot measures (:func:`ssim7_map`); it is weighted
``1 - (1 - b)^2`` so that b = 0 stays the paper's loss.

The ``"split"`` mode divides the image instead of the range: outside the
hot spot the paper's three terms (masked means), inside it only the
hot-spot term ``1 - mean((1 - b) SSIM7(F, A) + b SSIM7(F, B))``, weighted
``hot_weight`` (in units of the SSIM weight). b then moves only what
clinicians look at, from the anatomy (b = 0: the MRI kept under the
uptake) to the functional source (b = 1), and the paper's objective
governs the rest of the image at every b.

The middle term (:func:`middle_loss`, added by
:class:`napari_lightfusion.objective.Objective` for b near 0.5) is a hinge
that asks the hot spot to keep more of each source than the pixel average
``(A + B) / 2`` keeps, by a margin, pushing the smaller of the two leads:
the middle of the range should be a better compromise than a blend on
both hot-spot measures, not a point on one side of it.

A network conditioned on b (:meth:`napari_lightfusion.model.LightFusionNet.condition`)
is trained with ``beta = b`` drawn per batch, so one network offers the
whole range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms. The default is the paper's Eq. 5."""

    intensity: float = 20.0
    gradient: float = 100.0
    ssim: float = 50.0

    def to_dict(self) -> dict:
        return asdict(self)


#: The two weightings the paper gives (intensity / gradient / SSIM).
WEIGHTINGS = {"eq5": LossWeights(20.0, 100.0, 50.0), "table5": LossWeights(100.0, 50.0, 20.0)}


def _towards_b(paper_target, b_target, balance: float):
    """``(1 - balance) * paper_target + balance * b_target`` (just the first at 0)."""
    if balance == 0.0:
        return paper_target
    return paper_target + balance * (b_target - paper_target)


def _mean(values, where=None):
    """Mean of ``values``, or its mean over the pixels where ``where`` (same shape) is 1."""
    if where is None:
        return values.mean()
    return (values * where).sum() / where.sum().clamp(min=1.0)


def intensity_loss(fused, a, b, balance: float = 0.0, where=None):
    """Eq. 1: L1 distance to the element-wise maximum of the sources (moved towards B by ``balance``)."""
    return _mean((fused - _towards_b(torch.maximum(a, b), b, balance)).abs(), where)


def sobel_magnitude(image):
    """Euclidean magnitude of the 3x3 Sobel gradient, replicate-padded borders."""
    kx = _SOBEL_X.to(image)
    kernels = torch.stack([kx, kx.T]).unsqueeze(1)
    g = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernels)
    return torch.sqrt(g.square().sum(dim=1, keepdim=True) + 1e-12)


def gradient_loss(fused, a, b, balance: float = 0.0, where=None):
    """Eq. 2: L1 distance of gradient magnitudes to the larger source gradient (moved towards B's)."""
    gb = sobel_magnitude(b)
    target = _towards_b(torch.maximum(sobel_magnitude(a), gb), gb, balance)
    return _mean((sobel_magnitude(fused) - target).abs(), where)


def gaussian_1d(size: int = 11, sigma: float = 1.5):
    """The 1D factor of the 11 x 11 Gaussian SSIM window (the window is its outer product with itself)."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(t):
    """Every channel of ``(N, C, H, W)`` under the valid 11 x 11 Gaussian window: ``(N, C, H - 10, W - 10)``.

    Two 1D passes over the channels stacked into the batch: the same values
    as one 2D convolution, at about a quarter of the training step's cost
    (the 2D window's backward pass was a third of a fine-tuning step).
    """
    n, c, h, w = t.shape
    g = gaussian_1d().to(t)
    size = g.numel()
    t = F.conv2d(t.reshape(n * c, 1, h, w), g.view(1, 1, 1, size))
    t = F.conv2d(t, g.view(1, 1, size, 1))
    return t.reshape(n, c, h - size + 1, w - size + 1)


def _ssim_means(x, ys, data_range: float = 1.0, where=None) -> list:
    """Mean SSIM (Wang et al. 2004, Eq. 3) of ``x`` to each of ``ys`` over valid 11x11 Gaussian windows.

    ``x``'s local statistics are computed once for all of ``ys``, and the
    graph skips those of ``ys`` that need no gradient (the sources, in
    training). Windows count when their centre is in ``where``.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    k = len(ys)
    with torch.set_grad_enabled(torch.is_grad_enabled() and any(y.requires_grad for y in ys)):
        sources = _blur(torch.cat([*ys, *(y * y for y in ys)], dim=1))
    mine = _blur(torch.cat([x, x * x, *(x * y for y in ys)], dim=1))
    mx, vx = mine[:, :1], mine[:, 1:2] - mine[:, :1] ** 2
    if where is not None:
        where = where[..., 5:-5, 5:-5]
    means = []
    for i in range(k):
        my = sources[:, i : i + 1]
        vy = sources[:, k + i : k + i + 1] - my * my
        cxy = mine[:, 2 + i : 3 + i] - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        means.append(_mean(s, where))
    return means


def ssim(x, y, data_range: float = 1.0, where=None):
    """Mean SSIM (Wang et al. 2004, Eq. 3) over valid 11x11 Gaussian windows (whose centre is in ``where``)."""
    return _ssim_means(x, [y], data_range, where)[0]


def ssim7_map(x, y):
    """SSIM map as scikit-image computes it (7 x 7 uniform window, sample covariance, data range 1).

    Identical to ``structural_similarity(..., full=True)``'s map away from
    the 3-pixel border; at the border the padding (torch's reflect) differs
    from scikit-image's mirror by one pixel.
    """
    c1, c2 = 0.01**2, 0.03**2
    pad = (3, 3, 3, 3)

    def mean(t):
        return F.avg_pool2d(F.pad(t, pad, mode="reflect"), 7, stride=1)

    mx, my = mean(x), mean(y)
    norm = 49.0 / 48.0
    vx = (mean(x * x) - mx * mx) * norm
    vy = (mean(y * y) - my * my) * norm
    cxy = (mean(x * y) - mx * my) * norm
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def hot_spot_loss(fused, a, b, hot, balance: float):
    """One minus the hot-spot mean of ``(1 - balance) SSIM7(F, A) + balance SSIM7(F, B)``; 1 without hot pixels."""
    kept = (1.0 - balance) * ssim7_map(fused, a) + balance * ssim7_map(fused, b)
    return 1.0 - (kept * hot).sum() / hot.sum().clamp(min=1.0)


def hot_spot_kept(fused, x, hot):
    """Per image, shape ``(N,)``: the hot-spot mean of ``SSIM7(F, X)`` (:func:`ssim7_map` inside ``hot``).

    The hot-spot measures in torch: anatomy kept with ``x`` the MRI,
    function kept with ``x`` the functional luma; 0 for an image without
    hot pixels.
    """
    dims = (1, 2, 3)
    return (ssim7_map(fused, x) * hot).sum(dim=dims) / hot.sum(dim=dims).clamp(min=1.0)


def middle_loss(fused, a, b, hot, margin: float):
    """How far each image's hot spot falls short of keeping both sources better than the pixel average does.

    Per image, ``relu(margin - min(keep_A - ref_A, keep_B - ref_B))``, where
    ``keep_X`` is :func:`hot_spot_kept` of the fused image to source X and
    ``ref_X`` the same of ``(A + B) / 2`` (a constant); the mean over the
    images with hot pixels (the measures are means over pairs). Only the
    smaller lead is pushed, so the term does not trade one measure for the
    other: it moves the fused hot spot to where both lead the average
    equally, and is 0 once both lead by ``margin``.
    """
    has_hot = (hot.sum(dim=(1, 2, 3)) > 0).to(fused)
    with torch.no_grad():
        average = 0.5 * (a + b)
        ref_a, ref_b = hot_spot_kept(average, a, hot), hot_spot_kept(average, b, hot)
    lead = torch.minimum(hot_spot_kept(fused, a, hot) - ref_a, hot_spot_kept(fused, b, hot) - ref_b)
    return (torch.relu(margin - lead) * has_hot).sum() / has_hot.sum().clamp(min=1.0)


def ceiling_loss(fused, target, hot):
    """Mean ``|F - C|`` inside the hot spot: how far the fused image is from the per-image ceiling ``C``.

    ``C`` is the image that leads the pixel average most on both hot-spot
    measures at once, found per training pair by
    :func:`napari_lightfusion.research.hot_spot_ceiling.pair_ceilings`.
    A target image instead of the measures themselves (:func:`middle_loss`):
    it says *where* on the trade-off the middle of the range should land for
    each pair, so that b = 0.5 does not drift to one side between sets.
    0 without hot pixels.
    """
    return ((fused - target).abs() * hot).sum() / hot.sum().clamp(min=1.0)


def ssim_loss(fused, a, b, balance: float = 0.0, where=None):
    """Eq. 4: one minus the mean SSIM of the fused image to each source (B weighted up by ``balance``)."""
    to_a, to_b = _ssim_means(fused, [a, b], where=where)
    if balance == 0.0:
        return 1.0 - 0.5 * (to_a + to_b)
    return 1.0 - 0.5 * ((1.0 - balance) * to_a + (1.0 + balance) * to_b)


def _weight(weights: LossWeights, term: str) -> float:
    """A term's weight; the hot-spot term has the SSIM term's."""
    return getattr(weights, "ssim" if term == "hot_spot" else term)


#: How the balance changes the loss (see the module docstring).
BALANCE_MODES = ("targets", "fade", "hotspot", "split")
#: The modes whose loss needs each image's hot-spot mask (``fusion_loss(..., hot=...)``).
HOT_SPOT_MODES = ("hotspot", "split")


def fusion_loss(
    fused,
    a,
    b,
    weights: LossWeights = LossWeights(),
    balance: float = 0.0,
    mode: str = "targets",
    hot=None,
    hot_weight: float = 1.0,
):
    """Eq. 5: the weighted total, plus each term for logging; ``balance`` moves the loss towards B.

    At ``balance = 0`` every mode is the paper's loss. ``hot`` (the hot-spot
    mask, same shape as the images) is needed by the ``"hotspot"`` mode;
    ``hot_weight`` scales its hot-spot term (in units of the SSIM weight).
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], not {balance!r}")
    if mode not in BALANCE_MODES:
        raise ValueError(f"balance mode must be one of {BALANCE_MODES}, not {mode!r}")
    if mode == "targets":
        terms = {
            "intensity": intensity_loss(fused, a, b, balance),
            "gradient": gradient_loss(fused, a, b, balance),
            "ssim": ssim_loss(fused, a, b, balance),
        }
        fades = {"intensity": 1.0, "gradient": 1.0, "ssim": 1.0}
    elif mode == "split":
        if hot is None:
            raise ValueError("the split balance mode needs the hot-spot mask")
        cold = 1.0 - hot
        terms = {
            "intensity": intensity_loss(fused, a, b, where=cold),
            "gradient": gradient_loss(fused, a, b, where=cold),
            "ssim": ssim_loss(fused, a, b, where=cold),
            "hot_spot": hot_spot_loss(fused, a, b, hot, balance),
        }
        fades = {"intensity": 1.0, "gradient": 1.0, "ssim": 1.0, "hot_spot": hot_weight}
    else:
        terms = {
            "intensity": intensity_loss(fused, a, b),
            "gradient": gradient_loss(fused, a, b),
            "ssim": ssim_loss(fused, a, b, balance * balance),
        }
        fade = (1.0 - balance) ** 2
        fades = {"intensity": fade, "gradient": fade, "ssim": 1.0}
        if mode == "hotspot":
            if hot is None:
                raise ValueError("the hotspot balance mode needs the hot-spot mask")
            terms["hot_spot"] = hot_spot_loss(fused, a, b, hot, balance)
            fades["hot_spot"] = (1.0 - fade) * hot_weight
    total = sum(_weight(weights, k) * fades[k] * v for k, v in terms.items())
    return total, terms
