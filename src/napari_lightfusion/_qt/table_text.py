"""The dock's metric table as text: cells as shown, TSV for the clipboard, CSV for a file.

A table is ``{column: {row: value}}`` as :func:`.jobs.metric_rows` makes
it (columns: the network, then the baselines; rows: :data:`.jobs.ROWS`).
No Qt here.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from .jobs import ROWS


def format_value(value: float) -> str:
    """A table cell: four significant digits, "nan" for undefined."""
    return "nan" if value is None or not np.isfinite(value) else f"{value:.4g}"


def to_rows(table: dict[str, dict[str, float]], fmt=format_value) -> list[list[str]]:
    """Header ``["metric", column...]`` then one row per metric, cells as text."""
    columns = list(table)
    return [["metric", *columns]] + [[row] + [fmt(table[c].get(row, float("nan"))) for c in columns] for row in ROWS]


def to_tsv(table: dict[str, dict[str, float]]) -> str:
    """The table as tab-separated text, as pasted into a spreadsheet."""
    return "\n".join("\t".join(row) for row in to_rows(table)) + "\n" if table else ""


def to_csv(table: dict[str, dict[str, float]]) -> str:
    """The table as CSV text with full precision (``repr`` of each float)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(to_rows(table, fmt=repr) if table else [])
    return buffer.getvalue()
