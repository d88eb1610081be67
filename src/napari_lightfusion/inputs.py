"""Turning two user images into the network's two grey streams (and back to colour).

Shared by :func:`napari_lightfusion.fuse`, the baselines and the widget so
that every method sees the same inputs.

Intensities become floats in [0, 1]:

* with ``limits=(low, high)`` (the widget passes a layer's contrast
  limits): ``(x - low) / (high - low)``, clipped, so *what is fused is what
  is seen*;
* otherwise ``bool`` is 0/1, ``uint8`` is divided by 255, a float image
  already inside [0, 1] is kept, and anything else (uint16 microscopy,
  int16 CT in Hounsfield units, other floats) is stretched from its finite
  minimum to its finite maximum.

NaN and infinite pixels are treated as missing and become 0 (black);
:func:`missing_pixels` counts them, so a caller can say so. Colour is the
last axis when it has 3 (RGB) or 4 (RGBA, alpha dropped) entries, unless the
caller says otherwise; a leading axis is a stack of slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .colour import LUMA_WEIGHTS, unit_plane, with_luma


@dataclass(frozen=True)
class PreparedPair:
    """The two grey streams of a pair, plus what is needed to put colour back.

    ``anatomical`` feeds the network's first stream and ``functional`` its
    second, each ``(Z, H, W)`` float32 in [0, 1]. ``colour`` is the RGB
    functional image ``(Z, H, W, 3)`` whose chrominance the result keeps, or
    ``None`` for a grey pair: float32 in [0, 1], or the caller's own uint8
    RGB (a view, read as value / 255 where it is used, which is what
    :func:`to_unit` makes of it: no float copy four times its size). ``swapped`` is True when the caller's second
    image went to the first stream (the caller gave the colour image first).
    ``stacked`` says whether the caller gave stacks (a leading slice axis).
    """

    anatomical: np.ndarray
    functional: np.ndarray
    colour: np.ndarray | None
    swapped: bool
    stacked: bool

    def finish(self, fused_y: np.ndarray, coloured: np.ndarray | None = None) -> np.ndarray:
        """Turn fused luminance ``(Z, H, W)`` into the caller's shape and colour.

        A colour pair keeps the colour image's hue under the fused luminance
        (:meth:`colour_part`), in float32, slice by slice so that the
        temporaries stay the size of one slice. ``coloured``: the
        ``(Z, H, W, 3)`` result already made part by part with
        :meth:`colour_part` (as :func:`napari_lightfusion.fuse` does, on
        several threads), returned in the caller's shape.
        """
        if self.colour is None:
            out = np.asarray(fused_y, np.float32)
        elif coloured is not None:
            out = coloured
        else:
            out = np.empty((*self.colour.shape[:-1], 3), np.float32)
            for z in range(out.shape[0]):
                self.colour_part(out, fused_y, (slice(z, z + 1),))
        return out if self.stacked else out[0]

    def colour_part(self, out: np.ndarray, fused_y: np.ndarray, where: tuple) -> None:
        """Write one part (``where``: ``(z, y, x)`` slices) of the colour result into ``out`` ``(Z, H, W, 3)``.

        The colour image's hue under the fused luminance
        (:func:`~napari_lightfusion.colour.with_luma`, from ``functional``,
        the colour image's Y), float32.
        """
        luma = np.asarray(fused_y[where], np.float32)
        with_luma(self.colour[where], self.functional[where], luma, out=out[where])


@dataclass(frozen=True)
class ImageView:
    """How to read one input of a fusion, so that what is fused is what the user sees.

    ``limits``: the contrast limits ``(low, high)`` stretched to [0, 1] (the
    widget passes a layer's contrast limits; None: by the image's type and
    range, as the module docstring says). ``rgb``: whether the last axis is
    colour (None: guessed by :func:`is_rgb`).
    """

    limits: tuple[float, float] | None = None
    rgb: bool | None = None


def views_of(keywords: dict) -> tuple[ImageView, ImageView]:
    """The views of the first and second image named by ``fuse``'s keywords in ``keywords``.

    ``a_limits``, ``a_rgb``, ``b_limits`` and ``b_rgb`` (a missing one is
    None), as :func:`napari_lightfusion.displayed.as_displayed` gives them
    beside the images ``a`` and ``b``.
    """
    return (
        ImageView(keywords.get("a_limits"), keywords.get("a_rgb")),
        ImageView(keywords.get("b_limits"), keywords.get("b_rgb")),
    )


def is_rgb(image: np.ndarray, rgb: bool | None = None) -> bool:
    """Whether the last axis of ``image`` is colour (explicit, or 3/4 entries on 3D+)."""
    if rgb is not None:
        return bool(rgb)
    return image.ndim >= 3 and image.shape[-1] in (3, 4)


def check_shape(image, name: str, rgb: bool) -> None:
    """Refuse, in one line naming ``name``, what :func:`fuse` cannot take: wrong dimensionality,
    empty, a colour axis that is not RGB(A), a non-image data type. Works on any array with
    ``ndim``/``size``/``shape``/``dtype`` (numpy, dask, zarr) without reading its data."""
    if image.ndim < 2:
        raise ValueError(f"{name} must be an image with at least 2 dimensions, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"{name} is empty (shape {image.shape})")
    if rgb and image.shape[-1] not in (3, 4):
        raise ValueError(f"{name} is marked colour but its last axis has {image.shape[-1]} entries")
    spatial = image.ndim - (1 if rgb else 0)
    if spatial not in (2, 3):
        raise ValueError(
            f"{name} has shape {image.shape}: give one image (Y, X) or one stack (Z, Y, X), "
            "grey or with RGB(A) as the last axis"
        )
    if not rgb and image.ndim == 3 and image.shape[-1] == 2:
        raise ValueError(f"{name} has 2 channels on the last axis; give grey or RGB(A)")
    if image.dtype.kind not in "biuf":
        raise ValueError(f"{name} has data type {image.dtype}, which is not an image type")


def missing_pixels(image, rgb: bool | None = None) -> int:
    """How many pixels of ``image`` are NaN or infinite (in any colour channel); they are fused as 0.

    Reads the image slice by slice (no temporary of its full size); an
    integer or bool image has none. ``image`` is a numpy array (or anything
    ``np.asarray`` takes without copying); ``rgb`` as for :func:`is_rgb`.
    """
    x = np.asarray(image)
    if x.dtype.kind not in "fc" or x.size == 0:
        return 0
    colour = is_rgb(x, rgb)
    planes = x if x.ndim > (3 if colour else 2) else x[None]
    count = 0
    for plane in planes:
        bad = ~np.isfinite(plane)
        count += int(np.count_nonzero(bad.any(axis=-1) if colour else bad))
    return count


def missing_note(name: str, count: int) -> str:
    """One line saying that ``count`` pixels of ``name`` are NaN or infinite and fused as 0 (black)."""
    are = "pixel is" if count == 1 else "pixels are"
    return f"{count} {are} NaN or infinite in '{name}': fused as 0 (black)"


def default_limits(dtype, low: float, high: float) -> tuple[float, float]:
    """The limits :func:`to_unit` uses, without given limits, for an image of ``dtype``
    whose finite values span ``[low, high]``.

    Lazy fusion (:mod:`napari_lightfusion.lazy`) scans a volume slice by slice
    for ``low`` and ``high`` and normalises every slice with the result, so a
    slice fused on its own is normalised as it would be in the whole stack.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return 0.0, 1.0
    if dtype == np.uint8:
        return 0.0, 255.0
    low, high = float(low), float(high)
    if dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    return low, high


def to_unit(image: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """Intensities as float32 in [0, 1] by the rules in the module docstring.

    Never modifies ``image``. Raises ``ValueError`` if nothing in it is finite.
    """
    x = np.asarray(image)
    if x.dtype == bool:
        return x.astype(np.float32)
    finite = np.isfinite(x) if x.dtype.kind == "f" else None
    if finite is not None and not finite.any():
        raise ValueError("image has no finite values (all NaN or infinite)")
    if limits is not None:
        low, high = float(limits[0]), float(limits[1])
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"contrast limits must be finite, got ({low}, {high})")
    elif x.dtype == np.uint8:
        low, high = 0.0, 255.0
    else:
        if finite is None:
            low, high = x.min(), x.max()
        else:  # the finite values' range, without copying them out
            low, high = x.min(initial=np.inf, where=finite), x.max(initial=-np.inf, where=finite)
        low, high = default_limits(x.dtype, low, high)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs are zeroed below
        out = _stretched(x, low, high)
    if finite is not None and not finite.all():
        out[~finite] = 0.0
    return out.astype(np.float32, copy=False)


def _stretched(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(x - low) / (high - low)`` clipped to [0, 1], in as few passes over the image as its type allows.

    Integers of up to 16 bits are exact in float32 and cannot overflow it:
    one subtraction, one multiplication. Floats are worked in halves, so
    that a range near the type's limit cannot overflow to inf, float32
    staying float32 (no float64 on the hot path); other types in float64.
    """
    span = high - low
    if x.dtype.kind in "iu" and x.dtype.itemsize <= 2 and np.isfinite(span):
        out = x.astype(np.float32)
        if low:
            out -= np.float32(low)
        out *= np.float32(1.0 / span) if span > 0 else np.float32(0.0)
        return np.clip(out, 0.0, 1.0, out=out)
    if x.dtype == np.float32 and (low, high) == (0.0, 1.0):
        return np.clip(x, 0.0, 1.0)  # what the halves below give, in one pass
    out = x.astype(np.float32 if x.dtype == np.float32 else np.float64)  # a copy: updated in place below
    half_span = 0.5 * high - 0.5 * low
    out *= 0.5
    out -= 0.5 * low
    if half_span > 0:
        out /= half_span
    else:
        out[...] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of float32 RGB in [0, 1] or uint8 RGB (value / 255), as float32
    (:func:`~napari_lightfusion.colour.luminance`), plane by plane (a product over a
    last axis of three entries is several times slower).

    A uint8 plane is scaled as :func:`to_unit` scales it before it is weighted, so
    that the luma is the same to the last bit whichever form the image came in
    (lazy fusion reads it with limits, as floats).
    """
    weights = (np.float32(w) for w in LUMA_WEIGHTS)
    planes = (unit_plane(rgb[..., c]) for c in range(3))
    out = None
    for weight, plane in zip(weights, planes, strict=True):
        if out is None:
            out = np.multiply(plane, weight, dtype=np.float32)
        else:
            out += weight * plane
    return out


def prepare_pair(
    a: np.ndarray,
    b: np.ndarray,
    a_limits: tuple[float, float] | None = None,
    b_limits: tuple[float, float] | None = None,
    a_rgb: bool | None = None,
    b_rgb: bool | None = None,
) -> PreparedPair:
    """Check and normalise a pair; raise ``ValueError`` saying what is wrong.

    The grey image goes to the anatomical stream; a colour image is the
    functional one (its luminance is fused, its chrominance kept). If both
    are colour, the second keeps its colour; if both are grey, the first is
    anatomical.
    """
    a, b = np.asarray(a), np.asarray(b)
    rgb = (is_rgb(a, a_rgb), is_rgb(b, b_rgb))
    check_shape(a, "first image", rgb[0])
    check_shape(b, "second image", rgb[1])
    shape_a = a.shape[:-1] if rgb[0] else a.shape
    shape_b = b.shape[:-1] if rgb[1] else b.shape
    if len(shape_a) != len(shape_b):
        raise ValueError(
            f"the images differ in dimensionality: {shape_a} and {shape_b}; "
            "fuse an image with an image or a stack with a stack"
        )
    if shape_a != shape_b:
        raise ValueError(f"the images differ in shape: {shape_a} and {shape_b}; resample one onto the other")

    units = []
    for image, colour, limits in ((a, rgb[0], a_limits), (b, rgb[1], b_limits)):
        as_bytes = colour and image.dtype == np.uint8 and limits is None  # read as value / 255 where used
        unit = image[..., :3] if as_bytes else to_unit(image[..., :3] if colour else image, limits)
        units.append(unit if len(shape_a) == 3 else unit[None])
    swapped = rgb[0] and not rgb[1]
    first, second = (1, 0) if swapped else (0, 1)
    functional_rgb = rgb[second]
    anatomical = units[first]
    functional = units[second]
    return PreparedPair(
        anatomical=_luma(anatomical) if rgb[first] else anatomical,
        functional=_luma(functional) if functional_rgb else functional,
        colour=functional if functional_rgb else None,
        swapped=swapped,
        stacked=len(shape_a) == 3,
    )
