"""What an image's values say about it when its names do not: grey or colour, CT or no word.

:func:`is_grey_rgb` tells an RGB file whose channels are equal (a grey
image saved as RGB) from a colour one. :func:`ct_evidence` reads whether a
grey image looks like CT: :mod:`napari_lightfusion.roles` ranks images by
their names first, and two files named ``a.png`` and ``b.png`` (or two
DICOM series without a Modality tag) say nothing, so the opening order
decided which was anatomical. CT has a signature in its values that MRI
lacks, in Hounsfield units as in a windowed 8-bit export:

* **Hounsfield units** (the lowest value at or below -900): air at about
  -1000 (or scanner padding below it), most of the body in a flat
  soft-tissue band within +-150 HU, and bone at +300 HU and above.
* **Stored as HU + 1024** (the unsigned values of a CT whose rescale was
  not applied, as a raw 16-bit export): the same bands 1024 higher, air
  near 0; accepted only when the soft tissue is also narrow (half of it
  within 40 HU, as brain parenchyma is), which an MRI whose values happen
  to straddle 1024 is not.
* **Windowed** (a PNG's 0..255, or any range without such minima, as the
  Harvard atlas CT): air at the minimum (at least 10 % of the pixels), a
  bone peak saturated at the maximum (at least 10 % of the rest in the top
  3 % of the range), little between the soft tissue and that peak, and the
  soft tissue in a narrow band (half of it within 30 % of the range).

An MRI has neither: no -1000 minima, and its brightest tissue is a tail,
not a saturated peak. On the Harvard atlas (184 CT, 894 MRI slices) the
windowed rule finds 87 % of the CT slices (it misses slices near the top of
the skull, mostly bone) and none of the MRI ones. Nothing here says "MRI":
an image that does not look like CT is simply not described.

Only a strided sample is read (at most :data:`SAMPLE_PIXELS` pixels from
each of at most three slices: first, middle, last), so a lazy (dask, zarr)
volume is never loaded; the answer is kept per array object while that
object lives, so a picker refresh does not read it again.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Most pixels per slice that a sample reads.
SAMPLE_PIXELS = 256 * 256

#: Arrays whose evidence was read: id -> (weak reference to the array, evidence).
_SEEN: dict[int, tuple[weakref.ref, str]] = {}
#: Most arrays remembered in :data:`_SEEN`.
_SEEN_MAX = 64


def sample(data, rgb: bool) -> np.ndarray:
    """A few strided slices of ``data`` as numpy (colour axis last when ``rgb``, its first 3 entries).

    The leading axes (of a stack) are read at their first, middle and last
    index; the last two spatial axes with one stride, so that a slice gives
    at most :data:`SAMPLE_PIXELS` pixels. Lazy arrays read only those.
    """
    spatial_ndim = len(data.shape) - (1 if rgb else 0)
    lead = tuple(data.shape[: spatial_ndim - 2])
    h, w = data.shape[spatial_ndim - 2], data.shape[spatial_ndim - 1]
    step = max(1, int(np.ceil(np.sqrt(h * w / SAMPLE_PIXELS))))
    spatial = (slice(None, None, step), slice(None, None, step)) + ((slice(0, 3),) if rgb else ())
    if not lead:
        return np.asarray(data[spatial])
    picks = {tuple(int(round(f * (n - 1))) for n in lead) for f in (0.0, 0.5, 1.0)}
    return np.stack([np.asarray(data[idx + spatial]) for idx in sorted(picks)])


def is_grey_rgb(data) -> bool:
    """Whether an RGB(A) image (colour on the last axis) has equal colour channels, i.e. is grey.

    Harvard MRI and CT test PNGs load as RGB images with three equal
    channels; treating them as colour made the widget guess the PET-MRI
    preset for CT-MRI pairs. The check reads a strided sample of at most
    :data:`SAMPLE_PIXELS` pixels per slice from at most three slices (first,
    middle, last), so a dask or zarr volume is not loaded. Channels count as
    equal when they differ by at most 1 % of the dtype's range (integers)
    or of the sample's range (floats), which tolerates lossy compression.
    Alpha is ignored. Returns False for data without a colour axis.
    """
    shape = tuple(data.shape)
    if len(shape) < 3 or shape[-1] not in (3, 4) or 0 in shape:
        return False
    values = sample(data, rgb=True)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.dtype.kind in "iu":
        info = np.iinfo(values.dtype)
        tol = 0.01 * (float(info.max) - float(info.min))
    else:
        finite = values[np.isfinite(values)]
        tol = 0.01 * float(np.ptp(finite)) if finite.size else 0.0
    s = values.astype(np.float64)
    diff = np.maximum(np.abs(s[..., 0] - s[..., 1]), np.abs(s[..., 0] - s[..., 2]))
    diff = diff[np.isfinite(diff)]
    return bool(diff.size == 0 or diff.max() <= tol)


def _hounsfield(v: np.ndarray) -> str:
    """The CT evidence of values with -1000-like minima, or "" when they do not read as CT."""
    air = v <= -900
    body = v[v > -500]
    if air.mean() < 0.01 or body.size < 0.01 * v.size:
        return ""
    soft = body[(body >= -150) & (body <= 150)]
    bone = body[body >= 300]
    if soft.size < 0.2 * body.size or bone.size < 0.01 * body.size:
        return ""
    air_hu, soft_hu, bone_hu = (round(float(np.median(x)), -1) for x in (v[air], soft, bone))
    return f"air at {air_hu:.0f} HU, soft tissue near {soft_hu:.0f} HU, a bone peak near {bone_hu:.0f} HU"


#: What a CT stored unsigned adds to its Hounsfield units (the usual RescaleIntercept of -1024, undone).
STORED_OFFSET = 1024


def _narrowest_half(values: np.ndarray) -> float:
    """The width of the narrowest interval holding half of ``values`` (inf when there are fewer than two)."""
    v = np.sort(values)
    half = v.size // 2
    return float((v[half:] - v[: v.size - half]).min()) if half else float("inf")


def _stored_unsigned(v: np.ndarray) -> str:
    """The CT evidence of non-negative values that read as HU + :data:`STORED_OFFSET`, or ""."""
    hu = v - STORED_OFFSET
    found = _hounsfield(hu)
    if not found or _narrowest_half(hu[(hu >= -150) & (hu <= 150)]) > 40:
        return ""
    return f"stored as HU + {STORED_OFFSET}: {found}"


def _windowed(v: np.ndarray) -> str:
    """The CT evidence of windowed values (a 0..255 export), or "" when they do not read as CT."""
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        return ""
    u = (v - lo) / (hi - lo)
    body = u[u > 0.02]
    if (u <= 0.02).mean() < 0.10 or body.size == 0:
        return ""
    bone = (body >= 0.97).mean()
    between = ((body > 0.6) & (body < 0.97)).mean()
    tissue = body[body <= 0.6]
    if bone < 0.10 or between >= 0.6 * bone or tissue.size < 0.1 * body.size:
        return ""
    if _narrowest_half(tissue) >= 0.3:
        return ""
    return "air at its lowest value, a bone peak at its highest, a narrow soft-tissue band"


def ct_evidence(data, rgb: bool = False) -> str:
    """Why ``data`` (numpy, dask or zarr; grey, or equal-channel RGB with ``rgb``) looks like CT, or "".

    The rules are in the module docstring. Returns a short phrase for a
    message ("air at -1000 HU, soft tissue near 40 HU, a bone peak near
    1100 HU"), or "" when the values do not read as CT (an MRI, a
    microscope channel, an empty or constant image, a non-numeric dtype).
    """
    shape = tuple(data.shape)
    if len(shape) - (1 if rgb else 0) < 2 or 0 in shape or np.dtype(data.dtype).kind not in "iuf":
        return ""
    key = id(data)
    seen = _SEEN.get(key)
    if seen is not None and seen[0]() is data:
        return seen[1]
    values = sample(data, rgb)
    values = (values[..., 0] if rgb else values).astype(np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 64:
        found = ""
    elif values.min() <= -900:
        found = _hounsfield(values)
    else:
        found = (_stored_unsigned(values) if values.min() >= 0 else "") or _windowed(values)
    try:
        ref = weakref.ref(data)
    except TypeError:  # an array type without weak references: read again next time
        return found
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.pop(next(iter(_SEEN)))
    _SEEN[key] = (ref, found)
    return found
