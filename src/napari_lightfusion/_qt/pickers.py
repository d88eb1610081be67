"""The two layer pickers (anatomical, functional): magicgui combo boxes that follow the viewer.

The choices are the viewer's image layers that the plugin did not write;
they follow layers being added, removed, moved and renamed (a renamed
layer stays picked: picks are kept by identity, not by name). Until the
user picks a layer, the pair is guessed from the layers (names, file names,
colour) on every change.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFormLayout, QWidget

from ..roles import guess_roles
from . import layer_io


def guess_pair(layers) -> tuple:
    """The (anatomical, functional) guess among ``layers``' image layers (names, file names, colour).

    The two layers opened last, when they are of one shape: a second pair
    opened is the pair guessed. Otherwise every layer, newest first on ties.
    """
    images = layer_io.image_layers(layers)
    newest = images[-2:]
    if len(images) > 2 and layer_io.spatial_shape(newest[0]) == layer_io.spatial_shape(newest[1]):
        return guess_roles(newest)
    return guess_roles(images[::-1])


class PairPicker(QWidget):
    """Anatomical and functional pickers; ``changed`` is emitted when the picked pair changes."""

    changed = Signal()

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.auto = True  # guess the pair until the user picks a layer
        self._last = (None, None)
        self.anatomical = ComboBox(choices=self._choices, tooltip=(
            "Grey structural image (MRI, CT, phase contrast); fused as its contrast limits show it"))
        self.functional = ComboBox(choices=self._choices, tooltip=(
            "Functional image (PET/SPECT, usually colour; CT; fluorescence); its colour is kept"))
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Anatomical", self.anatomical.native)
        form.addRow("Functional", self.functional.native)
        for combo in (self.anatomical, self.functional):
            combo.native.activated.connect(self._on_user_pick)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved):
            ev.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _choices(self, _widget=None) -> list[tuple[str, object]]:
        return [(layer.name, layer) for layer in layer_io.image_layers(self.viewer.layers)]

    def pair(self) -> tuple:
        """The picked (anatomical, functional) layers (None where nothing is picked)."""
        layers = [ly for _, ly in self._choices()]
        return tuple(next((ly for ly in layers if ly is combo.value), None)
                     for combo in (self.anatomical, self.functional))

    def set_pair(self, anatomical, functional) -> None:
        """Pick two layers, as a user would (the guesses stop)."""
        self.auto = False
        self._set(anatomical, functional)

    def _set(self, anatomical, functional) -> None:
        for combo, layer in ((self.anatomical, anatomical), (self.functional, functional)):
            if layer is not None and layer in combo.choices:
                combo.value = layer
        self._emit_if_changed()

    def _on_layers_changed(self, event=None) -> None:
        if event is not None and event.type in ("inserted", "removed"):
            method = "connect" if event.type == "inserted" else "disconnect"
            getattr(event.value.events.name, method)(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        """Follow the viewer's layers; keep the picks, or guess them again."""
        picked = self._last
        for combo in (self.anatomical, self.functional):
            combo.reset_choices()
        layers = [ly for _, ly in self._choices()]
        if self.auto or any(p is not None and not any(p is ly for ly in layers) for p in picked):
            picked = guess_pair(self.viewer.layers)
        self._set(*picked)

    def _on_user_pick(self, *_):
        self.auto = False
        self._emit_if_changed()

    def _emit_if_changed(self) -> None:
        now = self.pair()
        if now[0] is not self._last[0] or now[1] is not self._last[1]:
            self._last = now
            self.changed.emit()
