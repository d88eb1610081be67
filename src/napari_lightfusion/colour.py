"""Colour handling shared by the network, the baselines and the metrics.

Functional images (PET, SPECT) arrive as RGB pseudo-colour. As in the paper,
they are split into luminance and chrominance: the network fuses the
luminance with the anatomical image, the chrominance of the functional image
is kept, and the result goes back to RGB with the fused luminance exactly
(:func:`with_luma` desaturates a colour that cannot take it).

The transform is the analogue YUV of ITU-R BT.601 (the "YUV" of the paper):

    Y = 0.299 R + 0.587 G + 0.114 B
    U = 0.492 (B - Y)
    V = 0.877 (R - Y)

The fusion needs only Y (:func:`luminance`); :func:`with_luma` puts the
fused Y in and keeps U and V where they fit (the tests check that in YUV,
with ``tests/yuv.py``). All functions take and return float arrays in
[0, 1] with the colour on the last axis.
"""

from __future__ import annotations

import numpy as np

#: BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``(..., 3)`` RGB array (the Y of BT.601's YUV)."""
    return rgb[..., :3] @ LUMA_WEIGHTS


def grey(image: np.ndarray) -> np.ndarray:
    """One grey plane of an image, as float64: the BT.601 luma of RGB(A), a grey image as it is.

    An ``(H, W, 3)`` or ``(H, W, 4)`` array (alpha ignored) is reduced with
    :func:`luminance`; anything else (a grey ``(H, W)`` image) comes back
    unchanged but for the dtype.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return luminance(image)
    return image


#: Pixels of one band of :func:`with_luma`: its dozen float32 temporaries of this size stay in a core's
#: cache (whole 512 x 512 planes spill out of it: 7.2 ms a slice, against 2.4 ms in bands of 8,192 pixels).
BAND_PIXELS = 32768


def with_luma(rgb: np.ndarray, luma: np.ndarray, fused_y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Give colours a new luma and keep their hue: the colour step of every fusion of a colour pair.

    ``rgb`` ``(..., 3)`` in [0, 1] (or uint8, read as value / 255), ``luma`` its BT.601 luma ``(...)`` and
    ``fused_y`` the luma the fusion computed (clipped to [0, 1]). Each pixel
    becomes ``fused_y + s * (rgb - luma)``: the colour's chrominance scaled
    by the largest ``s <= 1`` that keeps R, G and B in [0, 1].

    Where the whole chrominance fits (``s = 1``) this is BT.601's "replace Y,
    keep U and V". Where it does not, as in a bright, saturated PET hot spot
    given a brighter luma, the colour is desaturated rather than clipped
    channel by channel: clipping would change the luma the fusion computed
    (and the hue), so what the reader sees would not be what the network
    was trained to produce. The luma of the result is always ``fused_y``.
    Keeps float32 (and uint8) input float32. Works plane by plane (R, G, B apart:
    reductions over a colour axis of three entries are slow in numpy) and
    in bands of rows of about :data:`BAND_PIXELS` (this step runs on every
    fused colour slice). ``out``: an ``(..., 3)`` array of the result's type
    to write into (a slice of a stack's output), else a new one.
    """
    if rgb.dtype == np.uint8:
        dtype = np.dtype(np.float32)
    else:
        dtype = np.result_type(rgb.dtype, np.float32) if rgb.dtype.kind == "f" else np.dtype(np.float64)
    fused_y = np.asarray(fused_y)
    out = np.empty((*fused_y.shape, 3), dtype) if out is None else out
    if fused_y.ndim < 2:
        _with_luma_band(rgb, luma, fused_y, out, dtype)
        return out
    rows = max(1, BAND_PIXELS // max(1, fused_y.shape[-1]))
    for lead in np.ndindex(*fused_y.shape[:-2]):
        for row in range(0, fused_y.shape[-2], rows):
            band = (*lead, slice(row, row + rows))
            _with_luma_band(rgb[band], luma[band], fused_y[band], out[band], dtype)
    return out


def unit_plane(plane: np.ndarray) -> np.ndarray:
    """One colour plane in [0, 1]: a uint8 one as ``value * float32(1 / 255)``, exactly as
    :func:`napari_lightfusion.inputs.to_unit` computes it (so a colour image kept as bytes
    fuses to the same bits as its float copy would); any other plane as it is."""
    return np.multiply(plane, np.float32(1.0 / 255.0), dtype=np.float32) if plane.dtype == np.uint8 else plane


def _with_luma_band(rgb: np.ndarray, luma, fused_y, out: np.ndarray, dtype) -> None:
    """:func:`with_luma` on one band, written into ``out``."""
    y = np.clip(fused_y, 0.0, 1.0).astype(dtype, copy=False)
    luma = np.asarray(luma, dtype)
    chroma = [np.subtract(unit_plane(rgb[..., c]), luma, dtype=dtype) for c in range(3)]
    tiny = np.finfo(dtype).tiny
    up = np.maximum(np.maximum(chroma[0], chroma[1]), chroma[2])
    down = np.minimum(np.minimum(chroma[0], chroma[1]), chroma[2])
    np.maximum(up, tiny, out=up)
    np.negative(down, out=down)
    np.maximum(down, tiny, out=down)
    scale = np.subtract(1.0, y, dtype=dtype)
    scale /= up  # room above the luma; below it, y / down:
    np.divide(y, down, out=down)
    np.minimum(scale, down, out=scale)
    np.minimum(scale, 1.0, out=scale)
    for c, plane in enumerate(chroma):
        plane *= scale
        plane += y
        out[..., c] = np.clip(plane, 0.0, 1.0, out=plane)


#: The "hot" ramp (black, red, yellow, white) as ``(position, R, G, B)`` control points: the sample PET
#: images are drawn with it.
HOT = np.array(
    [(0.00, 0.0, 0.0, 0.0), (0.35, 0.9, 0.0, 0.0), (0.65, 1.0, 0.6, 0.0), (0.85, 1.0, 1.0, 0.3), (1.00, 1.0, 1.0, 1.0)]
)

#: The ramp PET and SPECT layers open with, and a grey functional volume is fused through on the command
#: line: black, dark red, red, orange, yellow. Its luma rises with the uptake, and unlike :data:`HOT` it ends
#: in a colour, not white: white has no chrominance, so the hottest uptake would come out of a fusion (which
#: keeps the functional image's chrominance under the fused luma) as plain grey, like tissue.
PET = np.array(
    [
        (0.00, 0.0, 0.0, 0.0),
        (0.30, 0.55, 0.0, 0.0),
        (0.60, 1.0, 0.1, 0.0),
        (0.80, 1.0, 0.55, 0.0),
        (1.00, 1.0, 1.0, 0.0),
    ]
)


def colour_table(points: np.ndarray = PET, entries: int = 256) -> np.ndarray:
    """A ramp of ``(position, R, G, B)`` control points as an ``(entries, 3)`` float32 colour table."""
    t = np.linspace(0.0, 1.0, entries)
    return np.stack([np.interp(t, points[:, 0], points[:, c]) for c in (1, 2, 3)], axis=-1).astype(np.float32)


def colourise(image: np.ndarray, limits: tuple[float, float], lut: np.ndarray) -> np.ndarray:
    """A scalar image as napari shows it through a colour table: float32 RGB in [0, 1].

    Fuse what the user sees: a grey PET or SPECT volume (in SUV, say) shown
    with a colormap is fused as that colour image, so the network fuses its
    luma and the chrominance carries the uptake (and it can be read back
    from the fused colour with the same table). ``limits`` are the layer's
    contrast limits (values below map to the first entry, above to the last),
    ``lut`` an ``(N, 3)`` or ``(N, 4)`` table (alpha dropped). NaN maps to
    the first entry. Works slice by slice on a dask array's blocks too.
    """
    low, high = (float(v) for v in limits)
    table = np.asarray(lut, np.float32)[:, :3]
    scale = (len(table) - 1) / (high - low) if high > low else 0.0
    with np.errstate(invalid="ignore"):
        index = (np.asarray(image, np.float32) - low) * scale
    index = np.clip(np.nan_to_num(index, nan=0.0), 0, len(table) - 1)
    return table[np.rint(index).astype(np.intp)]
