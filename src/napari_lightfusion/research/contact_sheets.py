"""Contact sheets: a grid of source, baseline, fused and map images per test pair, as a PNG.

The results document shows one sheet per dataset (``contact_<dataset>.png``
beside ``docs/results.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..baselines import BASELINES, fuse_baseline
from ..pair_data import DATASETS, Pair, load_pairs, pair_names
from .tables import LIGHTFUSIONNET

#: Grey of the lines between contact-sheet tiles (the images have black backgrounds).
GAP_GREY = 96

#: Viridis sampled at 0, 1/8, ..., 1 (the values of vispy/matplotlib's
#: "viridis"), interpolated linearly by :func:`colormap`.
_VIRIDIS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.279, 0.175, 0.483],
        [0.230, 0.321, 0.545],
        [0.173, 0.447, 0.558],
        [0.128, 0.565, 0.551],
        [0.155, 0.682, 0.503],
        [0.363, 0.787, 0.387],
        [0.669, 0.862, 0.195],
        [0.993, 0.906, 0.144],
    ]
)


# --------------------------------------------------------------------------
# images


def stretch(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map ``values`` linearly so its ``low``-th..``high``-th percentiles span [0, 1] (clipped)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        return np.zeros_like(values)
    return np.clip(np.nan_to_num((values - lo) / (hi - lo)), 0.0, 1.0)


def colormap(values: np.ndarray) -> np.ndarray:
    """Colour values in [0, 1] with viridis (dark blue -> yellow): ``(..., 3)`` floats in [0, 1]."""
    x = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_VIRIDIS))
    return np.stack([np.interp(x, stops, _VIRIDIS[:, c]) for c in range(3)], axis=-1)


def to_rgb8(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A float image in [0, 1] (grey or RGB) as uint8 RGB; ``None`` is a dark grey tile."""
    if image is None:
        return np.full((*shape, 3), 40, np.uint8)
    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.round(image[..., :3] * 255.0).astype(np.uint8)


def text_strip(labels: Sequence[str], width: int, gap: int, height: int = 24) -> np.ndarray:
    """A white-on-black header row with ``labels`` centred over columns of ``width`` (Pillow draws the text)."""
    from PIL import Image, ImageDraw, ImageFont

    total = len(labels) * width + (len(labels) - 1) * gap
    strip = np.zeros((height, total, 3), np.uint8)
    canvas = Image.fromarray(strip)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        font = ImageFont.load_default()
    for i, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x = i * (width + gap) + max(0, (width - (right - left)) // 2)
        y = max(0, (height - (bottom - top)) // 2 - top)
        draw.text((x, y), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def assemble_sheet(rows: Sequence[Sequence[np.ndarray | None]], labels: Sequence[str], gap: int = 4) -> np.ndarray:
    """Tiles (float [0, 1] grey/RGB, or ``None``) in a grid under a header of ``labels``."""
    first = next(t for row in rows for t in row if t is not None)
    shape = first.shape[:2]
    h, w = shape
    ncols = len(labels)
    total_w = ncols * w + (ncols - 1) * gap
    parts = [text_strip(labels, w, gap)]
    for row in rows:
        if len(row) != ncols:
            raise ValueError(f"a row has {len(row)} tiles for {ncols} labels")
        line = np.full((h, total_w, 3), GAP_GREY, np.uint8)
        for i, tile in enumerate(row):
            line[:, i * (w + gap) : i * (w + gap) + w] = to_rgb8(tile, shape)
        parts += [np.full((gap, total_w, 3), GAP_GREY, np.uint8), line]
    return np.concatenate(parts, axis=0)


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 image with :func:`skimage.io.imsave`."""
    from skimage.io import imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(str(path), np.asarray(image, np.uint8), check_contrast=False)
    return path


# --------------------------------------------------------------------------
# the sheet of a test set


def contact_pairs(data_root: Path, dataset: str, count: int = 3) -> list[Pair]:
    """``count`` test pairs spread evenly over the sorted test set (first, middle, last)."""
    names = pair_names(data_root, "test", dataset)
    picked = names if len(names) <= count else [names[int(round(i))] for i in np.linspace(0, len(names) - 1, count)]
    return load_pairs(data_root, "test", dataset, picked)


def contact_columns(dataset: str) -> list[str]:
    """Column labels of the contact sheet of ``dataset``."""
    other = DATASETS[dataset][1]
    return ["MRI", other, *BASELINES, LIGHTFUSIONNET, f"attention {other}", f"surprise {other}"]


def contact_sheet(pairs: list[Pair], dataset: str, preset: str | None = None) -> np.ndarray:
    """The contact sheet image (uint8 RGB) of ``pairs``, columns as :func:`contact_columns`.

    Attention and surprise are the network's mean maps over channels for
    the stream of the functional (non-MRI) image, each stretched between
    its 1st and 99th percentile and coloured with :func:`colormap`.
    """
    from ..fusion import fuse

    rows = []
    for pair in pairs:
        result = fuse(pair.anatomical, pair.other, preset=preset or dataset, device="cpu", maps=True)
        surprise = None if result.surprise is None else result.surprise[1]
        tiles = [
            pair.anatomical,
            pair.other,
            *(fuse_baseline(name, pair.anatomical, pair.other) for name in BASELINES),
            result.fused,
            colormap(stretch(result.attention[1])),
            None if surprise is None else colormap(stretch(surprise)),
        ]
        rows.append(tiles)
    return assemble_sheet(rows, contact_columns(dataset))
