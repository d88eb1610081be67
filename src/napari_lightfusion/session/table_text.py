"""The dock's metric table as text: TSV for the clipboard, CSV for a file, every digit kept.

A table is ``{column: {row: value}}`` as :func:`.jobs.metric_rows` makes
it (columns: the network, then the baselines; rows:
:data:`napari_lightfusion.metric_registry.ROWS`). Each value is written as
the ``repr`` of its float (:func:`napari_lightfusion.metric_registry.exact`),
so that a pasted or saved number is the one computed; the time row is in
seconds.
"""

from __future__ import annotations

import csv
import io

from ..metric_registry import ROWS, exact


def to_rows(table: dict[str, dict[str, float]]) -> list[list[str]]:
    """Header ``["metric", column...]`` then one row per metric, every value with all its digits.

    Rows that no column has (the hot-spot measures of a grey pair) are left
    out, as the dock hides them; a metric a column has but could not compute
    is "nan".
    """
    columns = list(table)
    rows = [row for row in ROWS if any(row in table[c] for c in columns)]
    return [["metric", *columns]] + [[row] + [exact(table[c].get(row, float("nan"))) for c in columns] for row in rows]


def to_tsv(table: dict[str, dict[str, float]]) -> str:
    """The table as tab-separated text, as pasted into a spreadsheet."""
    return "\n".join("\t".join(row) for row in to_rows(table)) + "\n" if table else ""


def to_csv(table: dict[str, dict[str, float]]) -> str:
    """The table as CSV text."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(to_rows(table) if table else [])
    return buffer.getvalue()
