"""Objective quality metrics for image fusion.

Ten metrics that image-fusion papers report, written so that the numbers
compare with published tables: the conventions are those of the Python
evaluator that most recent fusion work uses (and of the MATLAB code it
ports), which are spelled out in each docstring. EN, SD, SF, AG, MI, SCD
and CC are in :mod:`napari_lightfusion.statistical_metrics`; Qabf, SSIM and
VIF are here, with :func:`evaluate` (all ten together) and the clinical
measures inside the functional hot spot, which are not among the ten.

Conventions shared by all functions
-----------------------------------
* ``f`` is the fused image, ``a`` and ``b`` are the two sources (here the
  anatomical MRI and the functional PET/SPECT image). All three are grey
  float images on a **0..255** scale with the same ``(H, W)`` shape.
* An ``(H, W, 3)`` RGB array (or ``(H, W, 4)`` RGBA, alpha ignored) is
  accepted wherever a grey image is and is reduced to its BT.601 luminance
  ``0.299 R + 0.587 G + 0.114 B`` (:func:`napari_lightfusion.colour.luminance`).
  So, for an RGB result, the metrics are those of the BT.601 luminance of
  the fused image against the MRI and against the luminance of the
  functional source.
* Metrics that need integer grey levels (EN, MI) clip to 0..255 and round.
* Degenerate inputs never raise and never emit numpy warnings. Each
  function documents what it returns when its formula is undefined; in
  short: a Pearson correlation involving a constant image (range below
  1e-9 grey levels, i.e. constant up to rounding) counts as 0.0 (SCD, CC);
  Qabf is nan when neither source has any edge; VIF of a
  constant source is 1.0 (the reference evaluator's rule) and nan when the
  image is smaller than the first 17 x 17 window; SSIM is nan for images
  smaller than its 7 x 7 window.

A survey of these metrics is Ma, Ma & Li, "Infrared and visible image
fusion methods and applications: A survey", Information Fusion 45 (2019)
153-178.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from .metric_math import grey_image, three_images
from .metric_registry import HOT_SPOT_MEASURES, METRICS
from .statistical_metrics import ag, cc, en, mi, scd, sd, sf

__all__ = [
    "METRICS",
    "qabf",
    "ssim",
    "vif",
    "evaluate",
    "HOT_SPOT_MEASURES",
    "hot_spot",
    "anatomy_kept",
    "function_kept",
    "hot_spot_scores",
    "ssim_map",
]


# --------------------------------------------------------------------------
# edges, structure and visual information against the two sources

# Xydeas & Petrovic constants (L = 1: the weights are the edge strengths).
_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength ``g`` and orientation ``alpha`` of the Qabf metric.

    3 x 3 Sobel responses with zero padding outside the image (MATLAB
    ``filter2`` / ``convolve2d(mode='same')``, as the reference code); the
    orientation is ``arctan(sy / sx)`` in ``[-pi/2, pi/2]`` and ``pi/2``
    where ``sx == 0``.
    """
    sx = ndimage.convolve(img, _SOBEL_X, mode="constant", cval=0.0)
    sy = ndimage.convolve(img, _SOBEL_Y, mode="constant", cval=0.0)
    g = np.hypot(sx, sy)
    nz = sx != 0
    alpha = np.full(img.shape, np.pi / 2)
    alpha[nz] = np.arctan(sy[nz] / sx[nz])
    return g, alpha


def _edge_preservation(g_s, a_s, g_f, a_f) -> np.ndarray:
    """Per-pixel ``Q^{SF} = Q_g Q_alpha`` of Xydeas & Petrovic."""
    hi = np.maximum(g_s, g_f)
    lo = np.minimum(g_s, g_f)
    ratio = np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0)
    orient = 1.0 - np.abs(a_s - a_f) / (np.pi / 2)
    q_g = _TG / (1.0 + np.exp(_KG * (ratio - _DG)))
    q_a = _TA / (1.0 + np.exp(_KA * (orient - _DA)))
    return q_g * q_a


def qabf(f, a, b) -> float:
    """Edge-preservation metric Q^{AB/F} (Qabf).

    Xydeas & Petrovic, "Objective image fusion performance measure",
    Electron. Lett. 36 (2000) 308-309. With 3 x 3 Sobel responses
    ``sx, sy`` (zero padding), edge strength ``g = sqrt(sx^2 + sy^2)`` and
    orientation ``alpha = arctan(sy / sx)`` (``pi/2`` where ``sx = 0``)::

        G^{AF}     = min(g_A, g_F) / max(g_A, g_F)      (1 where both are 0)
        A^{AF}     = 1 - |alpha_A - alpha_F| / (pi / 2)
        Q^{AF}     = Tg / (1 + exp(kg (G^{AF} - Dg))) * Ta / (1 + exp(ka (A^{AF} - Da)))
        Q^{AB/F}   = sum(Q^{AF} g_A + Q^{BF} g_B) / sum(g_A + g_B)

    with ``Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22,
    Da = 0.8`` and weights ``g^L``, ``L = 1``. The maximum, for ``F`` with
    the same edges as the sources, is therefore
    ``Tg / (1 + e^{-7.5}) * Ta / (1 + e^{-4.4}) = 0.97478``, not 1.

    Where ``g_A == g_F`` the ratio is 1, as in the paper; the common Python
    and MATLAB ports write ``G = g_F`` there instead, which differs only at
    pixels of exactly equal edge strength, by at most ``Tg - Q_g(1)`` =
    5.5e-4 per pixel. Returns nan when neither source has any edge
    (``sum(g_A + g_B) = 0``, i.e. both sources are entirely zero).
    """
    f, a, b = three_images(f, a, b)
    g_f, a_f = _sobel(f)
    g_a, a_a = _sobel(a)
    g_b, a_b = _sobel(b)
    den = float((g_a + g_b).sum())
    if not den > 0.0:
        return float("nan")
    num = float((_edge_preservation(g_a, a_a, g_f, a_f) * g_a).sum()) + float(
        (_edge_preservation(g_b, a_b, g_f, a_f) * g_b).sum()
    )
    return num / den


def ssim(f, a, b) -> float:
    """Structural similarity SSIM, summed over both sources.

    ``SSIM = SSIM(F, A) + SSIM(F, B)``, each from
    :func:`skimage.metrics.structural_similarity` with its defaults (7 x 7
    uniform window, K1 = 0.01, K2 = 0.03, sample covariance) and
    ``data_range=255``. Wang, Bovik, Sheikh & Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE
    Trans. Image Process. 13 (2004) 600-612. Its maximum is 2. Returns nan
    for images smaller than 7 x 7 (the window does not fit).
    """
    f, a, b = three_images(f, a, b)
    if min(f.shape) < 7:
        return float("nan")
    return float(structural_similarity(f, a, data_range=255.0) + structural_similarity(f, b, data_range=255.0))


def _gauss1d(n: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', [n n], sigma)``."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    w = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable correlation with ``outer(w, w)``, 'valid' part only."""
    r = len(w) // 2
    out = ndimage.correlate1d(img, w, axis=0, mode="constant")
    out = ndimage.correlate1d(out, w, axis=1, mode="constant")
    return out[r : img.shape[0] - r, r : img.shape[1] - r]


def _vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain VIF of ``dist`` against ``ref`` (reference evaluator rules)."""
    sigma_nsq = 2.0
    eps = 1e-10
    num = 0.0
    den = 0.0
    scales = 0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        w = _gauss1d(n, n / 5.0)
        if scale > 1:
            if min(ref.shape) < n:
                break
            ref = _filter_valid(ref, w)[::2, ::2]
            dist = _filter_valid(dist, w)[::2, ::2]
        if min(ref.shape) < n:
            break
        # Local moments are shift invariant: centre first for accuracy, so
        # that flat regions give exact zeros.
        r = ref - ref.mean()
        d = dist - dist.mean()
        mu1 = _filter_valid(r, w)
        mu2 = _filter_valid(d, w)
        sigma1_sq = _filter_valid(r * r, w) - mu1 * mu1
        sigma2_sq = _filter_valid(d * d, w) - mu2 * mu2
        sigma12 = _filter_valid(r * d, w) - mu1 * mu2
        sigma1_sq = np.maximum(sigma1_sq, 0.0)
        sigma2_sq = np.maximum(sigma2_sq, 0.0)

        g = sigma12 / (sigma1_sq + eps)
        sv_sq = sigma2_sq - g * sigma12
        flat1 = sigma1_sq < eps
        g[flat1] = 0.0
        sv_sq[flat1] = sigma2_sq[flat1]
        sigma1_sq[flat1] = 0.0
        flat2 = sigma2_sq < eps
        g[flat2] = 0.0
        sv_sq[flat2] = 0.0
        neg = g < 0
        sv_sq[neg] = sigma2_sq[neg]
        g[neg] = 0.0
        sv_sq = np.maximum(sv_sq, eps)

        num += float(np.log10(1.0 + g * g * sigma1_sq / (sv_sq + sigma_nsq)).sum())
        den += float(np.log10(1.0 + sigma1_sq / sigma_nsq).sum())
        scales += 1
    if scales == 0:
        return float("nan")
    if not den > 0.0:
        return 1.0
    return num / den


def vif(f, a, b) -> float:
    """Visual information fidelity VIF, summed over both sources.

    ``VIF = VIFP(A, F) + VIFP(B, F)``, the pixel-domain VIF of Sheikh &
    Bovik, "Image information and visual quality", IEEE Trans. Image
    Process. 15 (2006) 430-444, with each source as the reference and the
    fused image as the distorted one; used for fusion after Han, Cai, Cao &
    Xu, "A new image fusion performance metric based on visual information
    fidelity", Information Fusion 14 (2013) 127-135. For scales
    ``s = 1..4`` with Gaussian windows ``N = 2^(4-s+1) + 1`` (17, 9, 5, 3),
    ``sigma = N / 5`` and 'valid' filtering (both images low-passed with the
    scale's window and downsampled by 2 before scales 2-4)::

        g      = sigma_RD / sigma_R^2,   sv^2 = sigma_D^2 - g sigma_RD
        VIFP   = sum log10(1 + g^2 sigma_R^2 / (sv^2 + sigma_n^2))
                 / sum log10(1 + sigma_R^2 / sigma_n^2),   sigma_n^2 = 2

    with the reference implementation's guards (eps = 1e-10; g = 0 where
    a local variance vanishes, g clipped at 0, sv^2 >= eps). VIFP(X, X) is
    1 up to ~1e-9, so the maximum for ``F = A = B`` is about 2.

    Degenerate cases: a constant source gives an empty denominator and
    counts 1.0, as in the reference evaluator (which maps that nan to 1);
    scales whose window no longer fits the image are skipped, and an image
    smaller than 17 x 17 gives nan. All four scales need at least 41 x 41.
    """
    f, a, b = three_images(f, a, b)
    return _vifp(a, f) + _vifp(b, f)


# --------------------------------------------------------------------------


def evaluate(fused, a, b) -> dict[str, float]:
    """All ten metrics of one fusion result, keyed by :data:`METRICS`.

    ``fused``, ``a`` and ``b`` are float arrays on a 0..255 scale, each
    either grey ``(H, W)`` or RGB ``(H, W, 3)`` (RGBA: alpha ignored). RGB
    arrays are reduced to BT.601 luminance with
    :func:`napari_lightfusion.colour.luminance` before any metric is
    computed: for an RGB result, the metrics are those of the BT.601
    luminance of the fused image against the MRI and against the luminance
    of the functional source. Arrays on a 0..1 scale must be multiplied by
    255 first. Raises ``ValueError`` if the (reduced) shapes differ.
    """
    f, a, b = three_images(fused, a, b)
    values = {
        "EN": en(f),
        "SD": sd(f),
        "SF": sf(f),
        "AG": ag(f),
        "MI": mi(f, a, b),
        "SCD": scd(f, a, b),
        "CC": cc(f, a, b),
        "Qabf": qabf(f, a, b),
        "SSIM": ssim(f, a, b),
        "VIF": vif(f, a, b),
    }
    return {name: float(values[name]) for name in METRICS}


# --------------------------------------------------------------------------
# clinical measures inside the hot spots (not among the ten metrics)

#: Functional luma above which a pixel counts as lit (0..255), for the median.
HOT_SPOT_LIT = 5.0
#: MRI value above which a pixel is inside the head (0..255).
HOT_SPOT_MRI = 10.0


def hot_spot(b, a) -> np.ndarray:
    """Boolean mask of the functional hot spot: where clinicians look.

    ``b`` is the functional source (its luma ``Y_f``), ``a`` the MRI, both on
    0..255. A pixel is in the hot spot when ``Y_f`` is above its median over
    the pixels with ``Y_f > 5`` and the MRI is above 10 (inside the head, so
    that uptake over background does not count). Empty when nothing is lit.
    """
    y, m = grey_image(b), grey_image(a)
    if y.shape != m.shape:
        raise ValueError(f"functional and MRI images must have the same shape, got {y.shape}, {m.shape}")
    lit = y > HOT_SPOT_LIT
    if not lit.any():
        return np.zeros(y.shape, dtype=bool)
    return (y > np.median(y[lit])) & (m > HOT_SPOT_MRI)


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scikit-image's full SSIM map (7 x 7 uniform window, data_range 255): what the hot-spot measures average."""
    return structural_similarity(x, y, win_size=7, data_range=255.0, full=True)[1]


def _mean_in_hot_spot(f, a, b, reference: str) -> float:
    f, a, b = three_images(f, a, b)
    mask = hot_spot(b, a)
    if min(f.shape) < 7 or not mask.any():
        return float("nan")
    return float(ssim_map(f, a if reference == "anatomy" else b)[mask].mean())


def anatomy_kept(f, a, b) -> float:
    """Mean SSIM of the fused image to the MRI inside the hot spot ("anatomy kept").

    ``mean over hot_spot(b, a) of SSIM_map(F, A)``, the map from
    :func:`skimage.metrics.structural_similarity` with a 7 x 7 uniform window
    and ``data_range=255`` (``full=True``; the map covers the whole image).
    1 when the MRI's structure survives under the uptake unchanged; pixel
    max, which copies the bright functional image over it, scores low.
    nan when the hot spot is empty or the image is smaller than 7 x 7.
    """
    return _mean_in_hot_spot(f, a, b, "anatomy")


def function_kept(f, a, b) -> float:
    """Mean SSIM of the fused image to the functional luma inside the hot spot ("function kept").

    ``mean over hot_spot(b, a) of SSIM_map(F, Y_f)``, the same map as
    :func:`anatomy_kept` against the functional source: 1 when the uptake's
    brightness and gradations survive in the fused luma (not only in its
    colour). nan when the hot spot is empty or the image is smaller than 7 x 7.
    """
    return _mean_in_hot_spot(f, a, b, "function")


def hot_spot_scores(fused, a, b) -> dict[str, float]:
    """Both hot-spot measures, keyed by :data:`HOT_SPOT_MEASURES`.

    Same conventions as :func:`evaluate` (0..255, RGB reduced to BT.601
    luma); ``a`` is the MRI and ``b`` the functional source. The SSIM map is
    computed once per reference.
    """
    f, a, b = three_images(fused, a, b)
    mask = hot_spot(b, a)
    if min(f.shape) < 7 or not mask.any():
        return {name: float("nan") for name in HOT_SPOT_MEASURES}
    # anatomy kept: against the MRI; function kept: against the functional luma
    return {name: float(ssim_map(f, reference)[mask].mean()) for name, reference in zip(HOT_SPOT_MEASURES, (a, b))}
