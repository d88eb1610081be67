"""What the dock reads out in words: an input's value under the cursor in its unit, and the uptake in the hot spot.

A radiologist reads uptake off the image by pointing at it. :func:`value_at`
looks up the voxel under a world point in a layer's own grid
(``layer.world_to_data``: the PET on its 3 mm grid, the MR on its 1 mm one,
after any Align) and gives its stored value with the unit the reader
recorded (``metadata["clinical"]["unit"]``: SUV, Bq/ml, HU); outside the
layer it says so. Reading one voxel of a lazy layer reads one chunk, which
napari has usually cached for display already. :func:`uptake_text` is the
SUV line under the metric table.
"""

from __future__ import annotations

import numpy as np

from ..resample import full_resolution
from .layer_io import is_colour


def unit_of(layer) -> str:
    """The physical unit of a layer's values, as its reader recorded it ("" when unknown)."""
    clinical = (getattr(layer, "metadata", None) or {}).get("clinical") or {}
    return str(clinical.get("unit") or "")


def value_at(layer, world) -> str:
    """A layer's value at world position ``world``, as text with its unit ("outside" off the image)."""
    data = full_resolution(layer)
    point = np.asarray(layer.world_to_data(world), dtype=float)
    spatial = data.shape[:-1] if is_colour(layer) else data.shape
    point = point[-len(spatial) :]
    index = tuple(int(round(v)) for v in point)
    if len(index) != len(spatial) or any(not 0 <= i < n for i, n in zip(index, spatial)):
        return "outside"
    value = np.asarray(data[index])
    if is_colour(layer) and np.ptp(value[:3]) > 0:
        return "RGB " + " ".join(f"{int(v)}" if value.dtype.kind in "iu" else f"{float(v):.2f}" for v in value[:3])
    value = value[0] if is_colour(layer) else value  # a grey image stored as RGB (the Harvard PNGs): its grey
    number = float(value)
    text = f"{number:.0f}" if value.dtype.kind in "iub" or abs(number) >= 100 else f"{number:.3g}"
    unit = unit_of(layer)
    return f"{text} {unit}" if unit else text


def uptake_text(outcome) -> str:
    """The line under the metric table for an SUV functional image: SUVmax and SUVmean in the hot spot."""
    uptake = getattr(outcome, "uptake", None)
    if not uptake:
        return ""
    if not uptake["voxels"]:
        return "No hot spot on this slice (nothing above the median uptake inside the anatomy)."
    name = outcome.request.origin.names[1]
    return (
        f"{name}: SUVmax {uptake['SUVmax']:.2f}, SUVmean {uptake['SUVmean']:.2f} in the hot spot "
        f"({uptake['voxels']} voxels of this slice)"
    )
