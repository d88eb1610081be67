"""The dock's control kinds and layout pieces (no behaviour: the widget creates, places and wires its controls)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QScrollArea,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..model import ModelConfig
from ..session import outputs

ALL_BASELINES = "all baselines"
#: Text of each "Show map" choice, in the order of :data:`outputs.MAP_CHOICES` (a result with a mix
#: weight adds "mix weight", :data:`outputs.WEIGHT_CHOICE`, after them).
MAP_TEXT = (
    "none (fused image)",
    "surprise: anatomical",
    "surprise: functional",
    "attention: anatomical",
    "attention: functional",
)
#: Tooltip of each control, by the widget's name for it.
TIPS = {
    "preset": "Network weights; guessed from the inputs' names and colours, choose to override",
    "balance": (
        "Networks trained with a balance only: left keeps more anatomy, right more function; "
        "re-fuses the current slice as you move it"
    ),
    "balance_auto": (
        "Choose b for each pair you fuse: the b whose hot spot (uptake above its median, inside the anatomy) "
        "keeps both the MRI's structure and the functional image's best against pixel average; "
        "the slider then shows it, and untick to adjust from there. A reading mode for the hot spot: "
        "the whole image keeps less edge detail than at the preset's default b"
    ),
    "show_map": (
        "Show one surprise or attention map, or the mix weight of a network that mixes its inputs, "
        "(with its colour bar) over the grey anatomical image; Fuse computes the maps only while "
        "one is shown"
    ),
    "channel": "Maps: mean over the network's channels, or one channel (shown at once from the last result)",
    "baseline": "Classical method(s) in the metric table and in Compare",
    "live": "Re-fuse the current slice when the slider, an input's data or contrast changes",
    "compare_btn": "Fuse, add the baseline result(s) and show everything side by side, labelled",
    "figure_btn": "Save one PNG of the labelled tiles with the metric table beneath",
    "cancel_btn": "Stop a running job between slices; no layer is half-written",
    "volume_btn": (
        "Write the fused volume slice by slice: an OME-Zarr folder (resumable), a NIfTI file with the "
        "anatomical affine, or a DICOM series that joins the anatomical study"
    ),
    "uptake": (
        "The functional image's own values (SUV) inside the hot spot the anatomy/function "
        "rows measure: uptake above its median, inside the anatomy"
    ),
}


def combo(items, data=None, tips=None) -> QComboBox:
    """A combo box of ``items`` (with item ``data`` and item tooltips when given)."""
    box = QComboBox()
    for i, text in enumerate(items):
        box.addItem(text, None if data is None else data[i])
        if tips is not None:
            box.setItemData(i, tips[i], Qt.ItemDataRole.ToolTipRole)
    return box


class MapBox(QComboBox):
    """ "Show map": the fused image or one map (item data: its :class:`~napari_lightfusion.session.outputs.MapChoice`).

    Each choice's meaning is its tooltip, and the box's while it is picked;
    "mix weight" is offered while the result on show has one (:meth:`offer_weight`).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        tips = ["the fused image, no map"] + [outputs.MAP_MEANING[c.kind] for c in outputs.MAP_CHOICES[1:]]
        for i, (text, choice) in enumerate(zip(MAP_TEXT, outputs.MAP_CHOICES)):
            self.addItem(text, choice)
            self.setItemData(i, tips[i], Qt.ItemDataRole.ToolTipRole)
        self.currentIndexChanged.connect(self._show_tip)

    def _show_tip(self, *_) -> None:
        self.setToolTip(self.itemData(self.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")

    def show_choice(self, choice: outputs.MapChoice | None) -> None:
        """Pick ``choice`` (the fused image when it is not offered)."""
        self.setCurrentIndex(next((i for i in range(self.count()) if self.itemData(i) == choice), 0))

    def offer_weight(self, names: tuple[str, str] | None) -> None:
        """Offer "mix weight" for a result that has one (``names``: its inputs, for the tooltip), else not."""
        at = next((i for i in range(self.count()) if self.itemData(i) == outputs.WEIGHT_CHOICE), -1)
        if names is None:
            if at >= 0:
                self.removeItem(at)
            return
        if at < 0:
            self.addItem("mix weight", outputs.WEIGHT_CHOICE)
            at = self.count() - 1
        self.setItemData(at, outputs.weight_meaning(names), Qt.ItemDataRole.ToolTipRole)
        if self.currentIndex() == at:
            self._show_tip()


def channel_box() -> QComboBox:
    """ "Map channel": the mean of the network's channels (item data None) or one channel (its number)."""
    width = ModelConfig().width
    return combo(["mean of all"] + [f"channel {k}" for k in range(width)], [None, *range(width)])


def balance_slider() -> tuple[QSlider, QLabel]:
    """The balance slider (0..100, off until the network says it takes one) and the label that says its b."""
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(50)
    slider.setEnabled(False)
    label = QLabel("b —")
    label.setMinimumWidth(48)
    label.setToolTip(
        "b = 0: keep the anatomy in the hot spots; b = 1: keep the function; — : the preset's network takes no balance"
    )
    return slider, label


def button(text: str, *, enabled: bool = True, visible: bool = True) -> QPushButton:
    """A push button, enabled and shown as asked."""
    out = QPushButton(text)
    out.setEnabled(enabled)
    out.setVisible(visible)
    return out


def wrapped(text: str = "") -> QLabel:
    """A label whose text wraps at the dock's width."""
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def row(*widgets) -> QHBoxLayout:
    """The widgets side by side."""
    out = QHBoxLayout()
    for w in widgets:
        out.addWidget(w)
    return out


def form(rows) -> QFormLayout:
    """A form of ``rows``: a widget alone, or ``(label, widget or layout)``."""
    out = QFormLayout()
    out.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    for item in rows:
        if isinstance(item, tuple):
            out.addRow(*item)
        else:
            out.addRow(item)
    return out


def group(title: str, items) -> QGroupBox:
    """A titled box of ``items`` (widgets or layouts) from top to bottom."""
    box = QGroupBox(title)
    _fill(QVBoxLayout(box), items)
    return box


def _fill(layout: QVBoxLayout, items) -> None:
    for item in items:
        if isinstance(item, QLayout):
            layout.addLayout(item)
        else:
            layout.addWidget(item)


def scrolled(owner: QWidget, items) -> QScrollArea:
    """Lay ``items`` out top to bottom in a vertical scroll area that fills ``owner``; returns the area.

    A short dock then scrolls instead of squashing its rows.
    """
    body = QWidget()
    layout = QVBoxLayout(body)
    _fill(layout, items)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll


def collapsible(title: str, content) -> QToolButton:
    """A header button that shows and hides ``content`` (collapsed at first)."""
    header = QToolButton()
    header.setText(title)
    header.setCheckable(True)
    header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    header.setArrowType(Qt.ArrowType.RightArrow)
    content.setVisible(False)

    def toggle(on: bool) -> None:
        header.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        content.setVisible(on)

    header.toggled.connect(toggle)
    return header
