"""Seven of the ten fusion metrics, from grey-level statistics: EN, SD, SF, AG of the fused image; MI, SCD, CC.

EN, SD, SF and AG read the fused image alone (its histogram, spread,
neighbour differences and gradients); MI, SCD and CC compare it with the
two sources (joint histograms, correlations). The conventions (0..255,
RGB reduced to BT.601 luma, what degenerate inputs give) are those of
:mod:`napari_lightfusion.metrics`, which computes all ten together.
"""

from __future__ import annotations

import math

import numpy as np

from .metric_math import correlation, entropy, grey_image, grey_levels, three_images

# --------------------------------------------------------------------------
# single-image metrics


def en(f) -> float:
    """Entropy EN, in bits.

    ``EN = -sum_l p_l log2 p_l`` over the 256-bin histogram ``p`` of the
    image clipped to 0..255 and rounded to integer grey levels (``0 log 0``
    counts as 0). Shannon (1948); as a fusion metric: Roberts, van Aardt &
    Ahmed, "Assessment of image fusion procedures using entropy, image
    quality, and multispectral classification", J. Appl. Remote Sens. 2
    (2008) 023522.
    """
    f = grey_image(f)
    if f.size == 0:
        return 0.0
    return entropy(np.bincount(grey_levels(f), minlength=256), np.log2)


def sd(f) -> float:
    """Standard deviation SD (population, ``ddof=0``).

    ``SD = sqrt(mean((F - mean(F))^2))``; a contrast measure, see Ma, Ma &
    Li, Information Fusion 45 (2019) 153-178.
    """
    return float(np.std(grey_image(f)))


def sf(f) -> float:
    """Spatial frequency SF.

    ``SF = sqrt(RF^2 + CF^2)`` with ``RF^2 = mean((F[i, j] - F[i, j-1])^2)``
    (horizontal neighbours, mean over the ``H (W-1)`` differences) and
    ``CF^2 = mean((F[i, j] - F[i-1, j])^2)`` (vertical neighbours, over
    ``(H-1) W``). Eskicioglu & Fisher, "Image quality measures and their
    performance", IEEE Trans. Commun. 43 (1995) 2959-2965. An image with a
    single row or column contributes 0 for the missing direction.
    """
    f = grey_image(f)
    dx = np.diff(f, axis=1)
    dy = np.diff(f, axis=0)
    rf2 = float(np.mean(dx * dx)) if dx.size else 0.0
    cf2 = float(np.mean(dy * dy)) if dy.size else 0.0
    return math.sqrt(rf2 + cf2)


def ag(f) -> float:
    """Average gradient AG.

    ``AG = mean(sqrt((Gx^2 + Gy^2) / 2))`` with ``Gx, Gy`` from
    ``np.gradient``: central differences ``(F[j+1] - F[j-1]) / 2`` inside,
    one-sided differences at the border. Cui et al., "Detail preserved
    fusion of visible and infrared images using regional saliency
    extraction and multi-scale image decomposition", Opt. Commun. 341
    (2015) 199-209. Images with fewer than 2 rows or columns give 0.0.
    """
    f = grey_image(f)
    if min(f.shape) < 2:
        return 0.0
    gy, gx = np.gradient(f)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2.0)))


# --------------------------------------------------------------------------
# metrics against the two sources


def _mi_pair(x: np.ndarray, y: np.ndarray) -> float:
    joint = np.bincount(grey_levels(x) * 256 + grey_levels(y), minlength=256 * 256).reshape(256, 256)
    hx = entropy(joint.sum(axis=1), np.log)
    hy = entropy(joint.sum(axis=0), np.log)
    hxy = entropy(joint.ravel(), np.log)
    return max(hx + hy - hxy, 0.0)


def mi(f, a, b) -> float:
    """Mutual information MI, in nats.

    ``MI = MI(F, A) + MI(F, B)`` with ``MI(X, Y) = H(X) + H(Y) - H(X, Y)``
    (natural log) from the 256 x 256 joint histogram of the integer grey
    levels (clipped to 0..255 and rounded). Qu, Zhang & Yan, "Information
    measure for performance of image fusion", Electron. Lett. 38 (2002)
    313-315. For integer-valued images this equals scikit-learn's
    ``mutual_info_score`` used by the reference evaluator.
    """
    f, a, b = three_images(f, a, b)
    if f.size == 0:
        return 0.0
    return _mi_pair(f, a) + _mi_pair(f, b)


def scd(f, a, b) -> float:
    """Sum of the correlations of differences SCD.

    ``SCD = r(F - B, A) + r(F - A, B)`` with ``r`` the Pearson correlation:
    what the fused image adds to one source should correlate with the
    other. Aslantas & Bendes, "A new image quality metric for image fusion:
    The sum of the correlations of differences", AEU Int. J. Electron.
    Commun. 69 (2015) 1890-1896. A correlation involving a constant image
    (for instance ``F - A`` when ``F == A``) counts as 0.0.
    """
    f, a, b = three_images(f, a, b)
    return correlation(f - b, a) + correlation(f - a, b)


def cc(f, a, b) -> float:
    """Correlation coefficient CC.

    ``CC = (r(F, A) + r(F, B)) / 2`` with ``r`` the Pearson correlation.
    Deshmukh & Bhosale, "Image fusion and image quality assessment of fused
    images", Int. J. Image Process. 4 (2010) 484-508. A correlation
    involving a constant image counts as 0.0.
    """
    f, a, b = three_images(f, a, b)
    return 0.5 * (correlation(f, a) + correlation(f, b))
