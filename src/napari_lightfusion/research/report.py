"""Markdown pieces shared by the documents: numbers, metric tables, the "Made by" command.

Nothing here computes a measure: the documents (:mod:`.report_results` for
``docs/results.md``, :mod:`.report_ablations` for ``docs/ablations.md``,
and ``lightfusion-research score``) are handed their numbers.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..metric_registry import arrow
from .tables import COLUMNS, DECIMALS, ranks


def fmt(value: float | None, decimals: int = 3) -> str:
    """A number as the tables print it: ``—`` for None, ``nan`` for a non-finite value."""
    if value is None:
        return "—"
    value = float(value)
    if not np.isfinite(value):
        return "nan"
    return f"{value:.{decimals}f}"


def marks(means: Mapping[str, Mapping[str, float]], rows: Sequence[str], columns: Iterable[str] = COLUMNS) -> dict:
    """``(row, column) -> "best" | "second"`` by competition rank (ties share a mark).

    Ranks the values *as printed* (rounded to :data:`.tables.DECIMALS`), so
    that two cells that read the same carry the same mark.
    """
    out = {}
    for column in columns:
        shown = {r: {column: round(float(means[r][column]), DECIMALS.get(column, 3))} for r in rows}
        for row, rank in ranks(shown, column, rows).items():
            if rank == 1:
                out[row, column] = "best"
            elif rank == 2:
                out[row, column] = "second"
    return out


def _marked(text: str, mark: str | None) -> str:
    """A cell in bold (best) or italic (second)."""
    if mark == "best":
        return f"**{text}**"
    if mark == "second":
        return f"*{text}*"
    return text


def metric_table(
    means: Mapping[str, Mapping[str, float]],
    rows: Sequence[str],
    labels: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    metrics: Sequence[str] = COLUMNS,
    mark: bool = True,
) -> str:
    """A markdown table: one row per method, one column per measure, best bold and second italic.

    ``metrics``: the measure columns (default every column of
    :data:`.tables.COLUMNS`), headed ``↑`` (higher is better) or ``↓``.
    ``extra``: more columns, ``{column: {row: text}}``, placed after the
    method name.
    """
    labels = labels or {}
    extra = extra or {}
    found = marks(means, rows, metrics) if mark else {}
    head = ["Method", *extra, *(f"{m} {arrow(m)}" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [labels.get(row, row), *(extra[c].get(row, "") for c in extra)]
        cells += [_marked(fmt(means[row][m], DECIMALS.get(m, 3)), found.get((row, m))) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line(subcommand: str, **options) -> str:
    """The ``lightfusion-research`` command line that passes ``options`` (for a document's "Made by" line).

    Options are written in the order given, ``out_dir=x`` as ``--out-dir x``;
    those that are ``None`` are left out; values are shell-quoted.
    """
    parts = ["lightfusion-research", subcommand]
    for name, value in options.items():
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", shlex.quote(str(value))]
    return " ".join(parts)


def document_head(title: str, made_by: str, limit_note: str | None) -> list[str]:
    """The first lines of a generated document: its title, how it was made, and a trial-run warning if any."""
    out = [f"# {title}", "", made_by, ""]
    if limit_note is not None:
        out += [f"> **Trial run:** {limit_note}", ""]
    return out
