"""What the evaluation's tables hold: their rows (methods), their columns (measures), and ranks.

Shared by the code that computes the numbers (:mod:`.scoring`,
:mod:`.quality_bar`, :mod:`.ablation`) and the code that writes them down
(:mod:`.report` and its ``report_*`` modules), so that neither imports the
other.

Columns
-------
Every column is a :class:`Measure` of one fused image, scored pair by pair
and averaged over a test set. The ten metrics of
:mod:`napari_lightfusion.metrics` come first (computed together by
``metrics.evaluate``). A column's name, direction, decimals and line under
"How to read this" are its :class:`~napari_lightfusion.metric_registry.Metric`.
To add a measure, describe it in :mod:`napari_lightfusion.metric_registry`
and append one :class:`Measure` with a ``compute`` function to
:data:`EXTRA_MEASURES`: the scores, the means, every table
(``docs/results.md``, ``lightfusion-research score``, ``docs/ablations.md``,
best/second marks included) and "How to read this" pick it up from there.
The quality bar keeps to the ten metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..baselines import BASELINES
from ..colour import grey
from ..metric_registry import HOT_SPOT, TEN, Metric, higher_is_better
from ..metrics import anatomy_kept, function_kept


@dataclass(frozen=True)
class Measure:
    """One column of the tables: a :class:`~napari_lightfusion.metric_registry.Metric` and how it is computed.

    ``compute(fused, mri, other) -> float`` gets the arrays a method sees and
    returns (floats in [0, 1]; ``other`` and ``fused`` grey or RGB); it is
    ``None`` for the ten metrics, which ``metrics.evaluate`` computes
    together. ``note``: what the documents add to the metric's line under
    "How to read this".
    """

    metric: Metric
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = None
    note: str = ""

    @property
    def name(self) -> str:
        """The column's name (the metric's)."""
        return self.metric.name

    @property
    def decimals(self) -> int:
        """Decimals the tables print."""
        return self.metric.decimals

    @property
    def help(self) -> str:
        """The line that explains the column under "How to read this"."""
        return self.metric.explained + self.note

    @property
    def higher_is_better(self) -> bool:
        """Whether a higher value is better."""
        return self.metric.higher_is_better


#: The ten metrics of :data:`napari_lightfusion.metrics.METRICS`.
METRIC_MEASURES: tuple[Measure, ...] = tuple(Measure(m) for m in TEN)


def _in_hot_spot(kept: Callable) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    """A hot-spot measure of :mod:`napari_lightfusion.metrics` on the arrays a method sees (0..1 -> 0..255)."""

    def compute(fused, mri, other) -> float:
        return kept(grey(fused) * 255.0, np.asarray(mri, np.float64) * 255.0, grey(other) * 255.0)

    return compute


#: Measures beyond the ten metrics, each with its ``compute`` function, in column order.
EXTRA_MEASURES: tuple[Measure, ...] = (
    Measure(HOT_SPOT[0], _in_hot_spot(anatomy_kept), " Not one of the ten metrics, not in the quality bar."),
    Measure(HOT_SPOT[1], _in_hot_spot(function_kept), " Not in the quality bar."),
)

#: Every column of the tables, in order.
MEASURES: tuple[Measure, ...] = (*METRIC_MEASURES, *EXTRA_MEASURES)

#: The column names, in order.
COLUMNS: tuple[str, ...] = tuple(m.name for m in MEASURES)

#: Decimals per column in the tables.
DECIMALS: dict[str, int] = {m.name: m.decimals for m in MEASURES}

#: Name of the network's row in the tables.
LIGHTFUSIONNET = "LightFusionNet"

#: The rows of Table 1, in table order; also the contenders of the quality bar.
TABLE1_METHODS: tuple[str, ...] = (*BASELINES, LIGHTFUSIONNET)

#: Cross-dataset evaluation (the paper's Table 2): test set -> preset trained on the other set.
CROSS = {"PET-MRI": "SPECT-MRI", "SPECT-MRI": "PET-MRI"}


def cross_name(preset: str) -> str:
    """Table label of the network with another dataset's preset."""
    return f"{LIGHTFUSIONNET} ({preset} weights)"


def ranks(means: Mapping[str, Mapping[str, float]], column: str, methods: Iterable[str]) -> dict[str, int | None]:
    """Competition rank of each method on ``column`` (1 = best; ties share a rank).

    A method's rank is one plus the number of methods with a strictly better
    value (higher, or lower for a column that is better low); a NaN value
    gets ``None`` and is not counted.
    """
    sign = 1.0 if higher_is_better(column) else -1.0
    values = {m: sign * float(means[m][column]) for m in methods}
    finite = [v for v in values.values() if np.isfinite(v)]
    return {m: (1 + sum(other > v for other in finite)) if np.isfinite(v) else None for m, v in values.items()}
