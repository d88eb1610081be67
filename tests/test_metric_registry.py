"""One description of every reported number, read by the dock, Copy/CSV, the figure and the documents."""

from __future__ import annotations

import math

import pytest

from napari_lightfusion import metric_registry as reg
from napari_lightfusion import metrics
from napari_lightfusion._qt import figure, table
from napari_lightfusion.research import report, tables
from napari_lightfusion.session import jobs


def test_the_registry_names_what_the_code_computes():
    assert reg.METRICS == metrics.METRICS == ("EN", "SD", "SF", "AG", "MI", "SCD", "CC", "Qabf", "SSIM", "VIF")
    assert reg.HOT_SPOT_MEASURES == metrics.HOT_SPOT_MEASURES == ("anatomy kept", "function kept")
    assert jobs.TIME == reg.TIME == "time (s)"  # the dock's jobs take the time row from the registry
    assert list(reg.REGISTRY) == list(reg.ROWS)
    for info in reg.REGISTRY.values():
        assert info.meaning and "\n" not in info.meaning and info.header and info.explained


def test_directions_agree_everywhere():
    for name in reg.ROWS:
        want = reg.metric(name).higher_is_better
        assert reg.higher_is_better(name) is want and table.higher_is_better(name) is want
        assert figure.DIRECTIONS[name] == ("↑" if want else "↓") == reg.arrow(name)
    assert not reg.higher_is_better(reg.TIME) and reg.higher_is_better("a name it does not know")
    assert (*reg.METRICS, *reg.HOT_SPOT_MEASURES) == tables.COLUMNS
    assert all(m.higher_is_better == reg.metric(m.name).higher_is_better for m in tables.MEASURES)


def test_the_dock_the_figure_and_the_documents_use_the_same_names():
    assert [table.row_label(r) for r in reg.ROWS][-3:] == ["anat. ↑", "func. ↑", "time ↓"]
    assert table.row_tooltip("Qabf") == reg.metric("Qabf").meaning + " (higher is better)"
    head = report.metric_table({"m": dict.fromkeys(tables.COLUMNS, 0.5)}, ["m"]).splitlines()[0]
    assert head.endswith("| anatomy kept ↑ | function kept ↑ |")  # the runtime's names, not "Anatomy kept"
    assert {m.name: m.decimals for m in reg.REGISTRY.values() if m.name != reg.TIME} == tables.DECIMALS


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.123456, "0.123"),
        (12.3456, "12.3"),
        (1234.5, "1.23e+03"),
        (0.0, "0"),
        (0.00012, "1e-04"),
        (math.nan, "nan"),
        (None, "nan"),
        (math.inf, "nan"),
    ],
)
def test_dock_cells_have_three_significant_digits(value, text):
    assert reg.metric("SSIM").cell(value) == reg.significant(value) == text


def test_the_time_row_is_shown_with_its_unit_and_copied_in_seconds():
    time = reg.metric(reg.TIME)
    assert time.unit == "s" and time.cell(0.0123) == "12 ms" and time.cell(2.5) == "2.5 s"
    assert reg.exact(0.0123) == "0.0123" and reg.exact(None) == "nan" and reg.exact(math.nan) == "nan"
