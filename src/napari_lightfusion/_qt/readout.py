"""The value of each input under the cursor, in its unit: ``MR 812 · PET 4.3 SUV``.

The dock's readout follows napari's cursor (``viewer.cursor.events.position``)
and, for the two picked layers, shows :func:`~napari_lightfusion.session.readouts.value_at`
of each.
"""

from __future__ import annotations

from qtpy.QtWidgets import QLabel

from ..session.layer_io import display_name
from ..session.readouts import value_at


class CursorReadout(QLabel):
    """``anatomical value · functional value`` under napari's cursor, for the picked pair."""

    def __init__(self, viewer, pair, parent=None):
        super().__init__(parent)
        self._viewer = viewer
        self._pair = pair  # () -> (anatomical, functional) layers, as picked
        self.setToolTip(
            "The value of each input under the cursor, in its unit (SUV, HU, ...), read from each layer's own grid"
        )
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
