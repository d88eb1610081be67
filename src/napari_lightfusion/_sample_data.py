"""Offline sample data: an MRI-like phantom with a PET-like colour image, and phase contrast with GFP.

Everything is synthesised here (no download, no patient data): the
anatomical image is scikit-image's bundled Shepp-Logan phantom, the
functional image a few smooth "hot spots" inside the head, coloured with a
hot-metal colour map into RGB ``uint8`` the way PET is usually shown. The
3D variant stacks ellipsoidal cross-sections so that Live mode can be tried
by scrolling through slices. The microscopy pair (:func:`microscopy_pair`)
draws cells with scikit-image and renders them as a phase-contrast image
(the anatomical one) and a GFP channel, for trying fine-tuning on a pair of
modalities the bundled presets were not trained on.
"""

from __future__ import annotations

import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from .colour import HOT

#: (y, x, z, sigma, strength) of the PET hot spots, in units of the image half-width.
_HOT_SPOTS = (
    (-0.30, -0.18, 0.10, 0.10, 1.00),
    (0.05, 0.22, -0.20, 0.13, 0.75),
    (0.35, -0.05, 0.30, 0.08, 0.90),
    (-0.05, -0.35, -0.35, 0.16, 0.45),
)


def hot_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB ``uint8`` with a black-red-yellow-white ramp."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    rgb = np.stack([np.interp(v, HOT[:, 0], HOT[:, c]) for c in (1, 2, 3)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def phantom_mri(size: int = 256) -> np.ndarray:
    """Shepp-Logan phantom as an MRI-like ``uint8`` image ``(size, size)``."""
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True, preserve_range=True)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _activity(yy: np.ndarray, xx: np.ndarray, z: float) -> np.ndarray:
    """Smooth tracer uptake at plane ``z`` (coordinates in [-1, 1]), in [0, 1]."""
    act = np.zeros(np.broadcast(yy, xx).shape)
    for y0, x0, z0, sigma, strength in _HOT_SPOTS:
        r2 = (yy - y0) ** 2 + (xx - x0) ** 2 + (z - z0) ** 2
        act += strength * np.exp(-r2 / (2 * sigma**2))
    # faint background uptake inside the skull ellipse, with a blurred edge as PET has
    radius = np.sqrt((xx / 0.69) ** 2 + (yy / 0.92) ** 2 + z**2)
    act += 0.12 / (1.0 + np.exp((radius - 1.0) / 0.03))
    return np.clip(act, 0.0, 1.0)


def phantom_pet(size: int = 256, z: float = 0.0) -> np.ndarray:
    """PET-like pseudo-colour image ``(size, size, 3)`` ``uint8`` at plane ``z``."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    return hot_colormap(_activity(yy, xx, z))


def phantom_stack(slices: int = 16, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """MRI-like ``(Z, Y, X)`` and PET-like ``(Z, Y, X, 3)`` ``uint8`` stacks.

    Each MRI slice is the phantom shrunk to the cross-section of an
    ellipsoid at that height, so the head grows and shrinks through the stack.
    """
    base = phantom_mri(size).astype(np.float64) / 255.0
    mri = np.zeros((slices, size, size), np.uint8)
    pet = np.zeros((slices, size, size, 3), np.uint8)
    for k, z in enumerate(np.linspace(-0.8, 0.8, slices)):
        scale = np.sqrt(1.0 - z**2)
        side = max(2, int(round(size * scale)))
        small = resize(base, (side, side), anti_aliasing=True, preserve_range=True)
        lo = (size - side) // 2
        mri[k, lo : lo + side, lo : lo + side] = np.round(np.clip(small, 0, 1) * 255)
        pet[k] = phantom_pet(size, z)
    return mri, pet


#: How the sample PET is shown before fusion: added over the MRI, as a clinical viewer overlays uptake, so the
#: pair reads as anatomy with uptake (not a red blob hiding the MRI) and the first Fuse visibly changes it.
OVER_ANATOMY = {"blending": "additive", "opacity": 0.7}


def make_sample_pair():
    """napari sample: the 2D phantom MRI (grey) and PET (RGB) pair, 256 x 256."""
    return [
        (phantom_mri(), {"name": "phantom MRI", "colormap": "gray"}, "image"),
        (phantom_pet(), {"name": "phantom PET", "rgb": True, **OVER_ANATOMY}, "image"),
    ]


def make_sample_stack():
    """napari sample: 16-slice phantom MRI and PET stacks, 128 x 128 each."""
    mri, pet = phantom_stack()
    return [
        (mri, {"name": "phantom MRI stack", "colormap": "gray"}, "image"),
        (pet, {"name": "phantom PET stack", "rgb": True, **OVER_ANATOMY}, "image"),
    ]


def _cells(size: int, rng: np.random.Generator, count: int):
    """Labels of roughly elliptical cells and of their nuclei, ``(size, size)`` int each."""
    from skimage.draw import ellipse

    cells = np.zeros((size, size), np.int32)
    nuclei = np.zeros((size, size), np.int32)
    label = 0
    for _ in range(count * 4):  # rejection sampling: cells touch at most a little
        if label == count:
            break
        ry, rx = rng.uniform(0.035, 0.07, 2) * size
        cy, cx = rng.uniform(0.08, 0.92, 2) * size
        angle = rng.uniform(0, np.pi)
        rr, cc = ellipse(cy, cx, ry, rx, (size, size), rotation=angle)
        if (cells[rr, cc] > 0).mean() > 0.05:
            continue
        label += 1
        cells[rr, cc] = label
        shift = rng.uniform(-0.2, 0.2, 2) * (ry, rx)
        rr, cc = ellipse(cy + shift[0], cx + shift[1], 0.45 * ry, 0.45 * rx, (size, size), rotation=angle)
        nuclei[rr, cc] = label
    return cells, nuclei


def microscopy_pair(size: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A phase-contrast-like and a GFP-like image of the same cells, ``uint16`` ``(size, size)`` each.

    Phase contrast: cells darker than the background with a bright halo at
    their edges, granular texture, uneven illumination and camera noise.
    GFP: a fluorescent protein in the cytoplasm, brighter in the nucleus,
    varying from cell to cell (some cells do not express it), blurred by
    the optics, on a dark background with shot noise.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cells, nuclei = _cells(size, rng, count=max(4, size * size // 3600))
    # ragged outlines: the ellipses' edges pushed in and out by smooth noise, each pixel kept by its nearest cell
    ragged = ndimage.gaussian_filter((cells > 0).astype(np.float64), 2.0)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3.0)
    ragged += 0.2 * noise / noise.std() * (ragged > 0.05)
    nearest = ndimage.distance_transform_edt(cells == 0, return_distances=False, return_indices=True)
    cells = np.where(ndimage.binary_fill_holes(ragged > 0.5), cells[tuple(nearest)], 0)
    nuclei = np.where(cells > 0, nuclei, 0)
    body = (cells > 0).astype(np.float64)
    inside = ndimage.gaussian_filter(body, 1.0)
    halo = np.clip(ndimage.gaussian_filter(body, 3.0) - body, 0, None)
    grain = ndimage.gaussian_filter(rng.normal(size=(size, size)), 1.2) * body
    yy, xx = np.mgrid[0:size, 0:size] / size
    light = 1.0 - 0.15 * ((yy - 0.4) ** 2 + (xx - 0.6) ** 2)
    phase = light * (0.55 - 0.18 * inside + 0.9 * halo + 0.06 * (nuclei > 0) + 0.12 * grain)
    phase = phase + rng.normal(0, 0.015, phase.shape)
    phase_counts = np.clip(phase * 3000 + 200, 0, 4095)

    expression = np.concatenate([[0.0], rng.uniform(0.2, 1.0, cells.max()) * (rng.random(cells.max()) > 0.15)])
    gfp = expression[cells] * (0.35 + 0.65 * (nuclei > 0))
    gfp = ndimage.gaussian_filter(gfp, 1.5)
    gfp_counts = rng.poisson(100 + 1500 * gfp).astype(np.float64)
    return (np.round(phase_counts).astype(np.uint16), np.clip(gfp_counts, 0, 65535).astype(np.uint16))


def make_sample_microscopy():
    """napari sample: phase contrast and GFP fluorescence of the same (synthetic) cells, 384 x 384."""
    phase, gfp = microscopy_pair()
    return [
        (phase, {"name": "phase contrast", "colormap": "gray"}, "image"),
        (gfp, {"name": "GFP", "colormap": "green", "blending": "additive"}, "image"),
    ]
