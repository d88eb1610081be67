"""Every number the plugin reports, described once: name, label, direction, unit, meaning and format.

The ten fusion metrics of :mod:`napari_lightfusion.metrics` (EN ... VIF, in
table order), the two hot-spot measures ("anatomy kept", "function kept")
and the time a method took for a slice. The dock's table
(``_qt/table.py``), Copy and Export CSV (``session/table_text.py``), the
exported figure (``_qt/figure.py``) and the research tables
(``research/tables.py``, which write ``docs/results.md`` and
``docs/ablations.md``) read them from here, so that a name, an arrow or a
tooltip is written in one place.

Three formats: :meth:`Metric.cell` for the dock (three significant digits,
times with their unit), :func:`exact` for Copy and CSV (every digit: the
``repr`` of the float) and :attr:`Metric.decimals` for the documents'
fixed-point tables. No Qt and no numpy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def significant(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, one below ``10**-digits`` ("1e-04"); "nan" when undefined."""
    if value is None or not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}g}" if abs(value) >= 10.0**-digits or value == 0 else f"{value:.0e}"


def duration(seconds: float | None) -> str:
    """A time with its unit, readable and narrow: "210 µs", "1.2 ms", "12 ms", "1.5 s" ("nan" when undefined)."""
    if seconds is None or not math.isfinite(seconds):
        return "nan"
    if seconds >= 1.0:
        return f"{seconds:.3g} s"
    ms = seconds * 1000
    if ms < 1.0:
        return f"{ms * 1000:.0f} µs"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


def exact(value: float | None) -> str:
    """Every digit of ``value``: the ``repr`` of the float (what Copy and CSV write); "nan" for None."""
    return "nan" if value is None else repr(float(value))


@dataclass(frozen=True)
class Metric:
    """One reported number.

    ``name``: its key in every table (the row of Copy and CSV, the column of
    the documents); ``meaning``: one line, the dock's tooltip; ``about``: the
    documents' fuller line under "How to read this" (default: ``meaning``);
    ``label``: the dock's row header (default: ``name``); ``unit``: "" when
    it has none; ``decimals``: decimals in the documents' tables.
    """

    name: str
    meaning: str
    about: str = ""
    label: str = ""
    unit: str = ""
    higher_is_better: bool = True
    decimals: int = 3

    @property
    def arrow(self) -> str:
        """The direction as an arrow: "↑" when higher is better, "↓" when lower is."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def header(self) -> str:
        """The dock's row header: :attr:`label`, or the name without one."""
        return self.label or self.name

    @property
    def explained(self) -> str:
        """The documents' line for this number: :attr:`about`, or :attr:`meaning` without one."""
        return self.about or self.meaning

    def cell(self, value: float | None) -> str:
        """The dock's cell: a time with its unit (:func:`duration`), else three significant digits."""
        return duration(value) if self.unit == "s" else significant(value)


_WHERE = (
    "inside the functional hot spot (luma above its median over the lit pixels, MRI > 10), mean "
    "SSIM map (7×7, scikit-image)"
)

#: The ten metrics of :func:`napari_lightfusion.metrics.evaluate`, in table order.
TEN: tuple[Metric, ...] = (
    Metric(
        "EN",
        meaning="Entropy of the fused image, bits: how much information it holds",
        about="entropy of the fused image's 256-level histogram, in bits: how many grey levels it really uses "
        "(noise raises it too).",
        unit="bits",
    ),
    Metric(
        "SD",
        meaning="Standard deviation: contrast of the fused image",
        about="standard deviation of the fused image on 0..255: global contrast.",
        decimals=2,
    ),
    Metric(
        "SF",
        meaning="Spatial frequency: overall activity of edges and texture",
        about="spatial frequency, root mean square of neighbour differences: how much edge and texture "
        "activity there is.",
        decimals=2,
    ),
    Metric("AG", meaning="Average gradient: sharpness of detail", about="average gradient magnitude: sharpness."),
    Metric(
        "MI",
        meaning="Mutual information with both sources (sum), nats: information carried over",
        about="mutual information of the fused image with each source, summed, in nats: how much of each "
        "source's grey-level structure survives.",
        unit="nats",
    ),
    Metric(
        "SCD",
        meaning="Sum of the correlations of differences: what each source adds that the other lacks (at most 2)",
        about="sum of the correlations of differences: what the fused image adds to one source should look like "
        "the other source (at most 2).",
    ),
    Metric(
        "CC",
        meaning="Correlation coefficient with the sources (mean of both, at most 1)",
        about="mean Pearson correlation of the fused image with the two sources (at most 1).",
    ),
    Metric(
        "Qabf",
        meaning="Edge preservation (Xydeas-Petrovic), 0 to about 0.975",
        about="Xydeas–Petrovic edge preservation: the share of the sources' edge strength and orientation found "
        "in the fused image (at most about 0.975).",
    ),
    Metric(
        "SSIM",
        meaning="Structural similarity to each source, summed over both sources: can exceed 1 (at most 2)",
        about="structural similarity of the fused image to each source, summed (at most 2).",
    ),
    Metric(
        "VIF",
        meaning="Visual information fidelity, summed over both sources: can exceed 1",
        about="visual information fidelity of the fused image to each source, summed (about 2 when all three "
        "images are equal).",
    ),
)

#: The two measures of :func:`napari_lightfusion.metrics.hot_spot_scores` (colour pairs), in table order.
HOT_SPOT: tuple[Metric, ...] = (
    Metric(
        "anatomy kept",
        meaning="Inside the functional hot spot, mean SSIM of the fused luma to the MRI: "
        "is the anatomy still there under the uptake? (colour pairs only)",
        about=f"{_WHERE} between the fused luma and the MRI: is the anatomy still there under the uptake?",
        label="anat.",
    ),
    Metric(
        "function kept",
        meaning="Inside the functional hot spot, mean SSIM of the fused luma to the functional luma: "
        "are the uptake's gradations still there in brightness? (colour pairs only)",
        about=f"{_WHERE} between the fused luma and the functional luma: are the uptake's gradations still "
        "there in brightness?",
        label="func.",
    ),
)

#: The time a method took for the slice, in seconds (the dock shows µs, ms or s).
TIME_ROW = Metric(
    "time (s)",
    meaning="Time the method took for this slice (Copy and Export CSV give seconds)",
    label="time",
    unit="s",
    higher_is_better=False,
)

#: Every number by name.
REGISTRY: dict[str, Metric] = {m.name: m for m in (*TEN, *HOT_SPOT, TIME_ROW)}

#: Names of the ten metrics, in table order.
METRICS: tuple[str, ...] = tuple(m.name for m in TEN)
#: Names of the two hot-spot measures, in table order.
HOT_SPOT_MEASURES: tuple[str, ...] = tuple(m.name for m in HOT_SPOT)
#: Name of the time row.
TIME: str = TIME_ROW.name
#: The rows of the dock's metric table, in order.
ROWS: tuple[str, ...] = (*METRICS, *HOT_SPOT_MEASURES, TIME)


def metric(name: str) -> Metric:
    """The :class:`Metric` called ``name`` (``KeyError`` for a name this module does not know)."""
    return REGISTRY[name]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of ``name`` is better (True for a name this module does not know)."""
    known = REGISTRY.get(name)
    return True if known is None else known.higher_is_better


def arrow(name: str) -> str:
    """The direction of ``name`` as an arrow, "↑" or "↓" (:func:`higher_is_better`)."""
    return "↑" if higher_is_better(name) else "↓"
