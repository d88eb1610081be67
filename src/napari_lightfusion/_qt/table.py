"""The metric table of the dock: one column per method, the best value per metric in bold.

Rows are the metrics and, for colour pairs, the two hot-spot measures
(higher is better, ↑) and the time (lower is better, ↓); every row
header has a tooltip with the metric's one-line meaning. The columns
share the dock's width, so five methods fit without horizontal
scrolling; a long method name is shortened in the header and given in
full in its tooltip.
"""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..metrics import HOT_SPOT_MEASURES, METRICS
from .jobs import NETWORK, ROWS, TIME

#: One-line meaning of each row (row-header tooltips).
MEANING = {
    "EN": "Entropy of the fused image, bits: how much information it holds",
    "SD": "Standard deviation: contrast of the fused image",
    "SF": "Spatial frequency: overall activity of edges and texture",
    "AG": "Average gradient: sharpness of detail",
    "MI": "Mutual information with both sources (sum), nats: information carried over",
    "SCD": "Sum of the correlations of differences: what each source adds that the other lacks",
    "CC": "Correlation coefficient with the sources (mean of both)",
    "Qabf": "Edge preservation (Xydeas-Petrovic), 0 to 1",
    "SSIM": "Structural similarity to each source, summed over both sources: can exceed 1 (at most 2)",
    "VIF": "Visual information fidelity, summed over both sources: can exceed 1",
    "anatomy kept": "Inside the functional hot spot, mean SSIM of the fused luma to the MRI: "
                    "is the anatomy still there under the uptake? (colour pairs only)",
    "function kept": "Inside the functional hot spot, mean SSIM of the fused luma to the functional luma: "
                     "are the uptake's gradations still there in brightness? (colour pairs only)",
    TIME: "Time the method took for this slice (Copy and Export CSV give seconds)",
}
#: Short header of a column (full name in its tooltip).
SHORT = {NETWORK: "LFNet", "average": "avg", "laplacian": "Lap", "alpha": "α"}
#: Background of the best value of a row.
BEST = QColor(70, 120, 70)


def cell_text(value: float | None, digits: int = 3) -> str:
    """A cell: ``digits`` significant digits, so that five methods fit the dock ("nan" when undefined).

    Copy and Export CSV keep every digit.
    """
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}g}" if abs(value) >= 10.0 ** -digits or value == 0 else f"{value:.0e}"


def time_text(seconds: float | None) -> str:
    """A time cell with its unit, readable and narrow: "210 µs", "1.2 ms", "12 ms", "1.5 s" ("nan" when undefined)."""
    if seconds is None or not math.isfinite(seconds):
        return "nan"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    ms = seconds * 1000
    if ms < 1.0:
        return f"{ms * 1000:.0f} µs"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


#: Row headers shorter than the row's name (the tooltip says it whole): five columns fit the dock.
ROW_LABELS = {TIME: "time", "anatomy kept": "anat.", "function kept": "func."}


def row_label(row: str) -> str:
    """A row header: the metric and its direction ("SSIM ↑"); the time's unit is in its cells."""
    name = ROW_LABELS.get(row, row)
    return f"{name} {'↑' if higher_is_better(row) else '↓'}"


def higher_is_better(row: str) -> bool:
    """Whether a larger value of ``row`` is better (all metrics and hot-spot measures; not the time)."""
    return row in METRICS or row in HOT_SPOT_MEASURES


def best_columns(table: dict[str, dict[str, float]], row: str) -> set[str]:
    """The column(s) holding the best finite value of ``row``."""
    values = {c: v.get(row, math.nan) for c, v in table.items()}
    finite = {c: v for c, v in values.items() if v is not None and math.isfinite(v)}
    if not finite:
        return set()
    best = (max if higher_is_better(row) else min)(finite.values())
    return {c for c, v in finite.items() if v == best}


class MetricTable(QTableWidget):
    """A read-only table of ``{column: {row: value}}`` that fits its width."""

    def __init__(self, parent=None):
        super().__init__(len(ROWS), 0, parent)
        self.setVerticalHeaderLabels([row_label(row) for row in ROWS])
        for r, row in enumerate(ROWS):
            self.verticalHeaderItem(r).setToolTip(MEANING[row] + (" (higher is better)" if higher_is_better(row)
                                                                    else " (lower is better)"))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setMinimumSectionSize(30)
        self.setStyleSheet("QTableView::item { padding: 0px 3px; }")
        self.verticalHeader().setDefaultSectionSize(20)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.data: dict = {}
        self._fit_height()

    def _fit_height(self) -> None:
        """As tall as the header and every row: the time row is never clipped, nothing scrolls."""
        header = max(self.horizontalHeader().sizeHint().height(), self.fontMetrics().height() + 8)
        self.setFixedHeight(header + self.verticalHeader().length() + 2 * self.frameWidth())

    def show_table(self, table: dict[str, dict[str, float]]) -> None:
        """Fill the table (an empty ``table`` clears it: no columns, no stale numbers)."""
        self.data = table
        self.clearContents()
        self.setColumnCount(len(table))
        bold = QFont(self.font())
        bold.setBold(True)
        for c, column in enumerate(table):
            header = QTableWidgetItem(SHORT.get(column, column))
            header.setToolTip(column)
            self.setHorizontalHeaderItem(c, header)
        for r, row in enumerate(ROWS):
            best = best_columns(table, row) if len(table) > 1 else set()
            for c, column in enumerate(table):
                value = table[column].get(row, math.nan)
                item = QTableWidgetItem(time_text(value) if row == TIME else cell_text(value))
                item.setData(Qt.ItemDataRole.UserRole, float(value) if value is not None else math.nan)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(f"{column}: {MEANING[row]}")
                if column in best:
                    item.setFont(bold)
                    item.setBackground(QBrush(BEST))
                self.setItem(r, c, item)
            # rows nobody has a value for (the hot-spot measures of a grey pair) are hidden, not "nan"
            self.setRowHidden(r, bool(table) and all(row not in values for values in table.values()))
        self._fit_height()

    def best(self, row: str) -> set[str]:
        """The highlighted column(s) of ``row`` (what the table shows in bold)."""
        r = ROWS.index(row)
        return {self.horizontalHeaderItem(c).toolTip() for c in range(self.columnCount())
                if self.item(r, c) is not None and self.item(r, c).font().bold()}
