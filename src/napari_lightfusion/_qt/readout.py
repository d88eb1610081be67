"""The value of each input under the cursor, in its unit: ``MR 812 · PET 4.3 SUV``.

A radiologist reads uptake off the image by pointing at it. The dock's
readout follows napari's cursor (``viewer.cursor.events.position``) and,
for the two picked layers, looks up the voxel under it in each layer's own
grid (``layer.world_to_data``: the PET on its 3 mm grid, the MR on its
1 mm one, after any Align) and shows its stored value with the unit the
reader recorded (``metadata["clinical"]["unit"]``: SUV, Bq/ml, HU).
Outside a layer it says so. Reading one voxel of a lazy layer reads one
chunk, which napari has usually cached for display already.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel

from ..resample import full_resolution
from .layer_io import display_name, is_colour


def unit_of(layer) -> str:
    """The physical unit of a layer's values, as its reader recorded it ("" when unknown)."""
    clinical = (getattr(layer, "metadata", None) or {}).get("clinical") or {}
    return str(clinical.get("unit") or "")


def value_at(layer, world) -> str:
    """A layer's value at world position ``world``, as text with its unit ("outside" off the image)."""
    data = full_resolution(layer)
    point = np.asarray(layer.world_to_data(world), dtype=float)
    spatial = data.shape[:-1] if is_colour(layer) else data.shape
    point = point[-len(spatial):]
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


class CursorReadout(QLabel):
    """``anatomical value · functional value`` under napari's cursor, for the picked pair."""

    def __init__(self, viewer, pair, parent=None):
        super().__init__(parent)
        self._viewer = viewer
        self._pair = pair  # () -> (anatomical, functional) layers, as picked
        self.setToolTip("The value of each input under the cursor, in its unit (SUV, HU, ...), "
                        "read from each layer's own grid")
        alive = [True]

        def follow(event=None):
            if alive[0]:
                self.update_text()

        def stop(*_):  # the dock is gone: its label must not be drawn again
            alive[0] = False
            viewer.cursor.events.position.disconnect(follow)

        viewer.cursor.events.position.connect(follow)
        self.destroyed.connect(stop)
        self.update_text()

    def update_text(self) -> None:
        """Redraw for the cursor's current position."""
        layers = [ly for ly in self._pair() if ly is not None]
        position = self._viewer.cursor.position
        if not layers or position is None:
            self.setText("")
            return
        parts = [f"{display_name(ly)} {value_at(ly, position)}" for ly in dict.fromkeys(layers)]
        self.setText("Under the cursor: " + " · ".join(parts))


def uptake_text(outcome) -> str:
    """The line under the metric table for an SUV functional image: SUVmax and SUVmean in the hot spot."""
    uptake = getattr(outcome, "uptake", None)
    if not uptake:
        return ""
    if not uptake["voxels"]:
        return "No hot spot on this slice (nothing above the median uptake inside the anatomy)."
    name = outcome.request.context["names"][1]
    return (f"{name}: SUVmax {uptake['SUVmax']:.2f}, SUVmean {uptake['SUVmean']:.2f} in the hot spot "
            f"({uptake['voxels']} voxels of this slice)")
