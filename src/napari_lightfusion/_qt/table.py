"""The metric table of the dock: one column per method, the best value per metric in bold.

Rows are the metrics and, for colour pairs, the two hot-spot measures
(higher is better, ↑) and the time (lower is better, ↓); every row
header has a tooltip with the metric's one-line meaning. Labels, arrows,
tooltips and cell formats come from :mod:`napari_lightfusion.metric_registry`.
The columns share the dock's width, so five methods fit without
horizontal scrolling; a long method name is shortened in the header and
given in full in its tooltip.
"""

from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QFont
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..metric_registry import ROWS, higher_is_better, metric
from ..session.jobs import NETWORK

#: Short header of a column (full name in its tooltip).
SHORT = {NETWORK: "LFNet", "average": "avg", "laplacian": "Lap", "alpha": "α"}
#: Background of the best value of a row.
BEST = QColor(70, 120, 70)
#: A cell whose metric is not defined (nan: SSIM of an image under 7 x 7, Qabf without edges).
UNDEFINED = "—"


def row_label(row: str) -> str:
    """A row header: the metric's short label and its direction ("SSIM ↑"); the time's unit is in its cells."""
    info = metric(row)
    return f"{info.header} {info.arrow}"


def row_tooltip(row: str) -> str:
    """A row header's tooltip: the metric's one-line meaning and its direction."""
    info = metric(row)
    return f"{info.meaning} ({'higher' if info.higher_is_better else 'lower'} is better)"


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
            self.verticalHeaderItem(r).setToolTip(row_tooltip(row))
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
            info = metric(row)
            best = best_columns(table, row) if len(table) > 1 else set()
            for c, column in enumerate(table):
                value = table[column].get(row, math.nan)
                defined = value is not None and math.isfinite(value)
                item = QTableWidgetItem(info.cell(value) if defined else UNDEFINED)
                item.setData(Qt.ItemDataRole.UserRole, float(value) if value is not None else math.nan)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(f"{column}: {info.meaning}")
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
        return {
            self.horizontalHeaderItem(c).toolTip()
            for c in range(self.columnCount())
            if self.item(r, c) is not None and self.item(r, c).font().bold()
        }
