"""The two layer pickers (anatomical, functional): magicgui combo boxes that follow the viewer.

The choices are the viewer's image layers that the plugin did not write;
they follow layers being added, removed, moved and renamed (a renamed
layer stays picked: picks are kept by identity, not by name). Until the
user picks a layer, the pair is guessed from the layers (names, file names,
colour, values that look like CT) on every change, and a note under the
pickers says when the roles were guessed from the images or from the
opening order alone; "Swap" exchanges the two. When a picked layer is
removed, the other stays picked and the removed one's picker is left empty
(the note says so) until the user picks again or opens another image.
"""

from __future__ import annotations

from magicgui.widgets import ComboBox
from napari.layers import Image
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from ..roles import guess_roles, role_note
from ..session import layer_io


def image_layers(layers) -> list:
    """The layers a user can pick: napari Image layers not written by this plugin."""
    return [ly for ly in layers if isinstance(ly, Image) and not layer_io.is_output(ly)]


def guess_pair(layers) -> tuple:
    """The (anatomical, functional) guess among ``layers``' image layers (names, file names, colour).

    The two layers opened last, when they are of one shape: a second pair
    opened is the pair guessed. Otherwise every layer, newest first on ties.
    """
    images = image_layers(layers)
    newest = images[-2:]
    if len(images) > 2 and layer_io.spatial_shape(newest[0]) == layer_io.spatial_shape(newest[1]):
        return guess_roles(newest)
    return guess_roles(images[::-1])


def unpickable(layer, layers) -> str:
    """Why ``layer`` cannot be picked for fusion ("'labels' is not an image layer (Labels)")."""
    name = getattr(layer, "name", repr(layer))
    if not isinstance(layer, Image):
        return f"'{name}' is not an image layer ({type(layer).__name__}): LightFusion fuses image layers"
    if layer_io.is_output(layer):
        return f"'{name}' was written by LightFusion: pick the images it was fused from"
    if not any(layer is ly for ly in layers):
        return f"'{name}' is not a layer of this viewer"
    return f"'{name}' cannot be picked"


class PairPicker(QWidget):
    """Anatomical and functional pickers; ``changed`` is emitted when the picked pair changes."""

    changed = Signal()

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.auto = True  # guess the pair until the user picks a layer
        self._last = (None, None)
        self._removed = ""  # name of a picked layer that was removed while its picker stays empty
        self.anatomical = ComboBox(
            choices=self._choices,
            nullable=True,
            tooltip=("Grey structural image (MRI, CT, phase contrast); fused as its contrast limits show it"),
        )
        self.functional = ComboBox(
            choices=self._choices,
            nullable=True,
            tooltip=("Functional image (PET/SPECT, usually colour; CT; fluorescence); its colour is kept"),
        )
        self.swap_btn = QPushButton("Swap")
        self.swap_btn.setToolTip("Exchange the two images: the anatomical one becomes the functional one")
        self.swap_btn.clicked.connect(self.swap)
        self.note = QLabel("")  #: how the roles were guessed, or which input was removed
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Anatomical", self.anatomical.native)
        row = QHBoxLayout()
        row.addWidget(self.functional.native, 1)
        row.addWidget(self.swap_btn)
        form.addRow("Functional", row)
        form.addRow(self.note)
        for combo in (self.anatomical, self.functional):
            combo.native.activated.connect(self._on_user_pick)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved):
            ev.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _choices(self, _widget=None) -> list[tuple[str, object]]:
        return [(layer.name, layer) for layer in image_layers(self.viewer.layers)]

    def pair(self) -> tuple:
        """The picked (anatomical, functional) layers (None where nothing is picked)."""
        layers = [ly for _, ly in self._choices()]
        return tuple(
            next((ly for ly in layers if ly is combo.value), None) for combo in (self.anatomical, self.functional)
        )

    def set_pair(self, anatomical, functional) -> None:
        """Pick two layers, as a user would (the guesses stop); None leaves a picker empty.

        Raises ``ValueError`` naming a layer that cannot be picked (not an
        image layer, written by this plugin, not in the viewer), and then
        changes nothing.
        """
        choices = [ly for _, ly in self._choices()]
        for layer in (anatomical, functional):
            if layer is not None and not any(layer is ly for ly in choices):
                raise ValueError(unpickable(layer, self.viewer.layers))
        self.auto = False
        self._removed = ""
        self._set(anatomical, functional)

    def swap(self) -> None:
        """Exchange the anatomical and functional picks (the guesses stop)."""
        a, b = self.pair()
        self.set_pair(b, a)

    def _set(self, anatomical, functional) -> None:
        for combo, layer in ((self.anatomical, anatomical), (self.functional, functional)):
            if layer is None or layer in combo.choices:
                combo.value = layer
        self._emit_if_changed()

    def _on_layers_changed(self, event=None) -> None:
        if event is not None and event.type in ("inserted", "removed"):
            method = "connect" if event.type == "inserted" else "disconnect"
            getattr(event.value.events.name, method)(self.refresh)
        self.refresh(event)

    def refresh(self, event=None) -> None:
        """Follow the viewer's layers: keep the picks, or guess them again.

        A removed pick leaves its picker empty and the other pick kept (no
        new guess: it would pair the remaining image with an unrelated
        one); an image opened while a picker is empty fills it, the roles
        of the two guessed again.
        """
        picked = self._last
        for combo in (self.anatomical, self.functional):
            combo.reset_choices()
        layers = [ly for _, ly in self._choices()]
        alive = tuple(p if p is not None and any(p is ly for ly in layers) else None for p in picked)
        gone = [p.name for p, q in zip(picked, alive) if p is not None and q is None]
        kept = [p for p in alive if p is not None]
        added = getattr(event, "value", None) if getattr(event, "type", None) == "inserted" else None
        if gone and kept:
            self.auto, self._removed, picked = False, gone[0], alive
        elif self.auto or not kept:
            self.auto = self.auto or bool(gone)
            picked = guess_pair(self.viewer.layers)
        elif None in alive and any(added is ly for ly in layers) and added is not kept[0]:
            self._removed = ""
            picked = guess_roles([kept[0], added])
        self._set(*picked)

    def _on_user_pick(self, *_):
        self.auto = False
        self._removed = ""
        self._emit_if_changed()

    def _emit_if_changed(self) -> None:
        now = self.pair()
        self.swap_btn.setEnabled(any(ly is not None for ly in now))
        self._show_note(*now)
        if now[0] is not self._last[0] or now[1] is not self._last[1]:
            self._last = now
            self.changed.emit()

    def _show_note(self, anatomical, functional) -> None:
        """The note under the pickers: a removed input, or how guessed roles were decided."""
        empty = "anatomical" if anatomical is None else "functional" if functional is None else ""
        if self._removed and empty:
            text = f"'{self._removed}' was removed: pick the {empty} image again."
        else:
            text = (role_note(anatomical, functional) or "") if self.auto else ""
        self.note.setText(text)
        self.note.setVisible(bool(text))
