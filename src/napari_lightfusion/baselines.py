"""Classical fusion methods to compare LightFusionNet with.

The widget offers them next to the network and the evaluation tables score
them with the same metrics. They see exactly what the network sees: both
images go through :func:`napari_lightfusion.inputs.prepare_pair` (same
intensity normalisation, same choice of anatomical and functional image,
same stacks and RGB(A) handling) and, except for the alpha blend, the fused
luminance goes back under the functional image's colour with
:meth:`~napari_lightfusion.inputs.PreparedPair.finish`, as in
:func:`napari_lightfusion.fuse`.

Methods (the names in :data:`BASELINES`):

``"average"``
    Pixel mean of the two grey streams.
``"max"``
    Pixel maximum of the two grey streams.
``"laplacian"``
    Laplacian-pyramid fusion (Burt & Adelson 1983, "The Laplacian pyramid
    as a compact image code", IEEE Trans. Commun. 31(4); selection rule of
    Burt & Kolczynski 1993, "Enhanced image capture through fusion", ICCV):
    at every detail level the coefficient with the larger magnitude is kept,
    the coarsest (base) level is averaged, and the pyramid is collapsed.
``"alpha"``
    What a radiology (PACS) viewer shows for an overlay: the functional
    image at :data:`ALPHA` (40 %) opacity over the grey anatomical image.
    For a colour functional image the blend is done in RGB, so its colour
    is *not* the luminance swap that the other methods (and the network)
    use; for a grey pair it is ``(1 - ALPHA) * anatomical + ALPHA *
    functional``.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.filters import gaussian
from skimage.transform import pyramid_reduce, resize

from .inputs import prepare_pair

#: The method names, in the order the widget and the tables list them.
BASELINES = ("average", "max", "laplacian", "alpha")

#: Opacity of the functional image in the ``"alpha"`` overlay (the 40 % a
#: radiology viewer typically uses for PET/SPECT over CT/MRI).
ALPHA = 0.4

#: Most detail levels of the Laplacian pyramid; fewer are used when the
#: image is too small (see :func:`laplacian_levels`).
LAPLACIAN_LEVELS = 4

# Smoothing of the pyramid's REDUCE and EXPAND for a factor of 2: the
# default of skimage.transform.pyramid_reduce / pyramid_expand (2 * 2 / 6).
_SIGMA = 2.0 / 3.0


def _check_name(name: str) -> str:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    return name


def laplacian_levels(shape: tuple[int, ...], levels: int = LAPLACIAN_LEVELS) -> int:
    """How many detail levels a Laplacian pyramid of an image of ``shape`` gets.

    At most ``levels``, and only as many halvings as keep the coarsest level
    at least 2 pixels on its shorter side: 0 for images up to 2 pixels on a
    side (the method is then the average), 1 for 3 or 4, 2 for 5 to 8,
    3 for 9 to 16 and ``levels`` (4) from 17 pixels on.
    """
    side = min(shape[-2:])
    n = 0
    while n < levels and math.ceil(side / 2 ** (n + 1)) >= 2:
        n += 1
    return n


def _expand(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Burt & Adelson's EXPAND to an exact ``shape``.

    The recipe of ``skimage.transform.pyramid_expand`` (bilinear upsampling,
    then Gaussian smoothing), but to the size of the finer level rather than
    twice the coarse one, so that odd sizes line up.
    """
    up = resize(image, shape, order=1, mode="reflect", anti_aliasing=False)
    return gaussian(up, sigma=_SIGMA, mode="reflect", preserve_range=True)


def _laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` detail images, finest first, then the base (Gaussian) level."""
    pyramid = []
    current = image
    for _ in range(levels):
        smaller = pyramid_reduce(current, downscale=2, sigma=_SIGMA, order=1, mode="reflect", preserve_range=True)
        pyramid.append(current - _expand(smaller, current.shape))
        current = smaller
    pyramid.append(current)
    return pyramid


def _collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`_laplacian_pyramid` (exact up to rounding)."""
    image = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        image = detail + _expand(image, detail.shape)
    return image


def laplacian_fusion(anatomical: np.ndarray, functional: np.ndarray, levels: int | None = None) -> np.ndarray:
    """Laplacian-pyramid fusion of two 2D grey images of the same shape.

    Source: Burt & Adelson 1983 (the pyramid) with the maximum-magnitude
    selection of Burt & Kolczynski 1993. Both images are decomposed into
    ``levels`` detail levels (default :func:`laplacian_levels`) and a base
    level; at each detail pixel the coefficient with the larger absolute
    value is kept (equal magnitudes are averaged, so the method does not
    depend on the argument order), the base levels are averaged, and the
    fused pyramid is collapsed. Returns float64, not clipped.
    """
    a = np.asarray(anatomical, dtype=np.float64)
    b = np.asarray(functional, dtype=np.float64)
    if levels is None:
        levels = laplacian_levels(a.shape)
    pa = _laplacian_pyramid(a, levels)
    pb = _laplacian_pyramid(b, levels)
    fused = []
    for da, db in zip(pa[:-1], pb[:-1]):
        ma, mb = np.abs(da), np.abs(db)
        fused.append(np.where(ma > mb, da, np.where(mb > ma, db, 0.5 * (da + db))))
    fused.append(0.5 * (pa[-1] + pb[-1]))
    return _collapse(fused)


def fuse_grey(name: str, anatomical: np.ndarray, functional: np.ndarray) -> np.ndarray:
    """Fuse two grey images with the baseline ``name``; for the evaluation code.

    ``anatomical`` and ``functional``: float arrays in [0, 1] of the same
    shape, ``(H, W)`` (a leading stack axis ``(Z, H, W)`` is also accepted;
    the Laplacian pyramid is then built slice by slice). They are used as
    given (no normalisation, unlike :func:`fuse_baseline`). Only ``"alpha"``
    depends on which is which: ``0.6 * anatomical + 0.4 * functional``.
    Returns float32 in [0, 1] of the same shape. Sources: see the module
    docstring. Raises ``ValueError`` for an unknown name or mismatched
    shapes. Inputs are never modified.
    """
    _check_name(name)
    a = np.asarray(anatomical, dtype=np.float64)
    b = np.asarray(functional, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the images differ in shape: {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"give two (H, W) images or (Z, H, W) stacks, not shape {a.shape}")
    if name == "average":
        out = 0.5 * (a + b)
    elif name == "max":
        out = np.maximum(a, b)
    elif name == "alpha":
        out = (1.0 - ALPHA) * a + ALPHA * b
    elif a.ndim == 2:
        out = laplacian_fusion(a, b)
    else:
        out = np.stack([laplacian_fusion(sa, sb) for sa, sb in zip(a, b)])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def fuse_baseline(name: str, a: np.ndarray, b: np.ndarray, **kwargs) -> np.ndarray:
    """Fuse two registered images (or stacks) with the classical method ``name``.

    For comparing LightFusionNet with the methods in :data:`BASELINES` (see
    the module docstring for each and its source). Takes the same arrays
    and keyword arguments as :func:`napari_lightfusion.inputs.prepare_pair`
    (``a_limits``, ``b_limits``, ``a_rgb``, ``b_rgb``) and handles them
    exactly as :func:`napari_lightfusion.fuse` does; returns what
    ``fuse(...).fused`` would be in layout: float32 in [0, 1], ``(..., H, W)``
    for a grey pair and ``(..., H, W, 3)`` when either input is colour.

    Colour: for ``"average"``, ``"max"`` and ``"laplacian"`` the fused
    luminance takes the place of the functional image's luminance and its
    chrominance is kept (as for the network). ``"alpha"`` blends in RGB:
    ``0.6 * anatomical grey (as RGB) + 0.4 * functional RGB``.

    Raises ``ValueError`` for an unknown name and for inputs that
    ``prepare_pair`` rejects. Inputs are never modified.
    """
    _check_name(name)
    pair = prepare_pair(a, b, **kwargs)
    if name == "alpha" and pair.colour is not None:
        grey = pair.anatomical.astype(np.float64)[..., None]
        out = (1.0 - ALPHA) * grey + ALPHA * pair.colour.astype(np.float64)
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        return out if pair.stacked else out[0]
    return pair.finish(fuse_grey(name, pair.anatomical, pair.functional))
