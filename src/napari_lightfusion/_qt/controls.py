"""The dock's controls and their layout (no behaviour: the widget wires them)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..baselines import BASELINES
from ..engine import available_devices
from ..model import ModelConfig
from ..weights import all_presets
from . import outputs
from .pickers import PairPicker
from .progress import JobProgress
from .table import MetricTable

ALL_BASELINES = "all baselines"
#: Text of each "Show map" choice, in the order of :data:`outputs.MAP_CHOICES` (a result with a mix
#: weight adds "mix weight", :data:`outputs.WEIGHT_CHOICE`, after them).
MAP_TEXT = ("none (fused image)", "surprise: anatomical", "surprise: functional",
            "attention: anatomical", "attention: functional")
#: Tooltip of each control.
TIPS = {
    "preset": "Network weights; guessed from the inputs' names and colours, choose to override",
    "balance": ("Networks trained with a balance only: left keeps more anatomy, right more function; "
                "re-fuses the current slice as you move it"),
    "show_map": ("Show one surprise or attention map, or the mix weight of a network that mixes its inputs, "
                 "(with its colour bar) over the grey anatomical image"),
    "channel": "Maps: mean over the network's channels, or one channel (shown at once from the last result)",
    "baseline": "Classical method(s) in the metric table and in Compare",
    "live": "Re-fuse the current slice when the slider, an input's data or contrast changes",
    "compare_btn": "Fuse, add the baseline result(s) and show everything side by side, labelled",
    "figure_btn": "Save one PNG of the labelled tiles with the metric table beneath",
    "cancel_btn": "Stop a running job between slices; no layer is half-written",
    "volume_btn": ("Write the fused volume slice by slice: an OME-Zarr folder (resumable), a NIfTI file with the "
                   "anatomical affine, or a DICOM series that joins the anatomical study"),
}


def combo(items, data=None, tips=None) -> QComboBox:
    """A combo box of ``items`` (with item ``data`` and item tooltips when given)."""
    box = QComboBox()
    for i, text in enumerate(items):
        box.addItem(text, None if data is None else data[i])
        if tips is not None:
            box.setItemData(i, tips[i], Qt.ItemDataRole.ToolTipRole)
    return box


def row(*widgets) -> QHBoxLayout:
    """The widgets side by side."""
    out = QHBoxLayout()
    for w in widgets:
        out.addWidget(w)
    return out


def build_controls(w, viewer) -> None:
    """Create the controls as attributes of the widget ``w`` and lay them out in it.

    They go in ``w.body`` (laid out top to bottom), inside a vertical
    scroll area ``w.scroll`` that fills ``w``.
    """
    w.pickers = PairPicker(viewer)
    w.resample_btn = QPushButton("Resample functional onto anatomical grid")
    w.resample_btn.setVisible(False)
    w.preset = combo(all_presets())
    w.balance = QSlider(Qt.Orientation.Horizontal)
    w.balance.setRange(0, 100)
    w.balance.setValue(50)
    w.balance.setEnabled(False)
    w.balance_label = QLabel("b —")
    w.balance_label.setMinimumWidth(48)
    w.balance_label.setToolTip("b = 0: keep the anatomy in the hot spots; b = 1: keep the function; "
                               "— : the preset's network takes no balance")
    w.device = combo(["auto", *available_devices()])
    w.show_map = combo(MAP_TEXT, list(outputs.MAP_CHOICES),
                       ["the fused image, no map"] + [outputs.MAP_MEANING[c.kind] for c in outputs.MAP_CHOICES[1:]])
    width = ModelConfig().width
    w.channel = combo(["mean of all"] + [f"channel {k}" for k in range(width)], [None, *range(width)])
    w.baseline = combo([*BASELINES, ALL_BASELINES])
    w.fuse_btn, w.cancel_btn = QPushButton("Fuse"), QPushButton("Cancel")
    w.cancel_btn.setEnabled(False)
    w.live = QCheckBox("Live (follow slice and contrast)")
    w.compare_btn, w.figure_btn = QPushButton("Compare"), QPushButton("Export figure…")
    w.figure_btn.setEnabled(False)
    w.volume_btn = QPushButton("Export fused volume…")
    w.volume_btn.setVisible(False)
    w.shot_btn = QPushButton("Save screenshot…")
    w.progress = JobProgress()
    w.status = QLabel("Pick two registered images and press Fuse.")
    w.status.setWordWrap(True)
    w.table = MetricTable()
    w.copy_btn, w.csv_btn = QPushButton("Copy"), QPushButton("Export CSV…")

    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.addRow(w.pickers)
    form.addRow(w.resample_btn)
    form.addRow("Preset", w.preset)
    form.addRow("Balance", row(QLabel("anatomy 0"), w.balance, QLabel("1 function"), w.balance_label))
    form.addRow("Device", w.device)
    form.addRow("Show map", w.show_map)
    form.addRow("Map channel", w.channel)
    form.addRow("Baseline", w.baseline)
    metrics = QGroupBox("Metrics (current slice)")
    box = QVBoxLayout(metrics)
    box.addWidget(w.table)
    w.uptake = QLabel()
    w.uptake.setWordWrap(True)
    w.uptake.setToolTip("The functional image's own values (SUV) inside the hot spot the anatomy/function "
                        "rows measure: uptake above its median, inside the anatomy")
    box.addWidget(w.uptake)
    box.addLayout(row(w.copy_btn, w.csv_btn))
    w.body = QWidget()  # the controls, in a scroll area: a short dock scrolls instead of squashing rows
    layout = QVBoxLayout(w.body)
    layout.addLayout(form)
    layout.addLayout(row(w.fuse_btn, w.cancel_btn))
    layout.addWidget(w.live)
    layout.addWidget(w.progress)
    layout.addWidget(w.status)
    layout.addLayout(row(w.compare_btn, w.figure_btn))
    layout.addWidget(w.volume_btn)
    layout.addWidget(metrics)
    layout.addWidget(w.shot_btn)
    for name, tip in TIPS.items():
        getattr(w, name).setToolTip(tip)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(w.body)
    w.scroll = scroll
    outer = QVBoxLayout(w)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)


def collapsible(title: str, content) -> tuple[QToolButton, object]:
    """A header button that shows and hides ``content`` (collapsed at first)."""
    button = QToolButton()
    button.setText(title)
    button.setCheckable(True)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.ArrowType.RightArrow)
    content.setVisible(False)

    def toggle(on: bool) -> None:
        button.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        content.setVisible(on)

    button.toggled.connect(toggle)
    return button, content
