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
``metrics.evaluate``). To add a measure, append one :class:`Measure` with a
``compute`` function to :data:`EXTRA_MEASURES`: the scores, the means, every
table (``docs/results.md``, ``lightfusion score``, ``docs/ablations.md``,
best/second marks included) and "How to read this" pick it up from there.
The quality bar keeps to the ten metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..baselines import BASELINES
from ..colour import grey
from ..metrics import anatomy_kept, function_kept


@dataclass(frozen=True)
class Measure:
    """One column of the tables.

    ``compute(fused, mri, other) -> float`` gets the arrays a method sees and
    returns (floats in [0, 1]; ``other`` and ``fused`` grey or RGB); it is
    ``None`` for the ten metrics, which ``metrics.evaluate`` computes
    together. ``decimals`` is how the tables print it, ``help`` the line
    that explains it under "How to read this".
    """

    name: str
    decimals: int
    help: str
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray], float] | None = None
    higher_is_better: bool = True


#: The ten metrics of :data:`napari_lightfusion.metrics.METRICS`, with how to print and read them.
METRIC_MEASURES: tuple[Measure, ...] = (
    Measure("EN", 3, "entropy of the fused image's 256-level histogram, in bits: how many grey levels it really "
            "uses (noise raises it too)."),
    Measure("SD", 2, "standard deviation of the fused image on 0..255: global contrast."),
    Measure("SF", 2, "spatial frequency, root mean square of neighbour differences: how much edge and texture "
            "activity there is."),
    Measure("AG", 3, "average gradient magnitude: sharpness."),
    Measure("MI", 3, "mutual information of the fused image with each source, summed, in nats: how much of each "
            "source's grey-level structure survives."),
    Measure("SCD", 3, "sum of the correlations of differences: what the fused image adds to one source should "
            "look like the other source (at most 2)."),
    Measure("CC", 3, "mean Pearson correlation of the fused image with the two sources (at most 1)."),
    Measure("Qabf", 3, "Xydeas–Petrovic edge preservation: the share of the sources' edge strength and "
            "orientation found in the fused image (at most about 0.975)."),
    Measure("SSIM", 3, "structural similarity of the fused image to each source, summed (at most 2)."),
    Measure("VIF", 3, "visual information fidelity of the fused image to each source, summed (about 2 when all "
            "three images are equal)."),
)

def _in_hot_spot(kept: Callable) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    """A hot-spot measure of :mod:`napari_lightfusion.metrics` on the arrays a method sees (0..1 -> 0..255)."""

    def compute(fused, mri, other) -> float:
        return kept(grey(fused) * 255.0, np.asarray(mri, np.float64) * 255.0, grey(other) * 255.0)

    return compute


def _hot_spot_measures() -> tuple[Measure, ...]:
    where = ("inside the functional hot spot (luma above its median over the lit pixels, MRI > 10), mean "
             "SSIM map (7×7, scikit-image)")
    return (
        Measure("Anatomy kept", 3, f"{where} between the fused luma and the MRI: is the anatomy still "
                "there under the uptake? Not one of the ten metrics, not in the quality bar.",
                _in_hot_spot(anatomy_kept)),
        Measure("Function kept", 3, f"{where} between the fused luma and the functional luma: are the "
                "uptake's gradations still there in brightness? Not in the quality bar.",
                _in_hot_spot(function_kept)),
    )


#: Measures beyond the ten metrics, each with its ``compute`` function, in column order.
EXTRA_MEASURES: tuple[Measure, ...] = _hot_spot_measures()

#: Every column of the tables, in order.
MEASURES: tuple[Measure, ...] = (*METRIC_MEASURES, *EXTRA_MEASURES)

#: The column names, in order.
COLUMNS: tuple[str, ...] = tuple(m.name for m in MEASURES)

#: Decimals per column in the tables.
DECIMALS: dict[str, int] = {m.name: m.decimals for m in MEASURES}

_HIGHER_IS_BETTER = {m.name: m.higher_is_better for m in MEASURES}

#: Name of the network's row in the tables.
LIGHTFUSIONNET = "LightFusionNet"

#: The rows of Table 1, in table order; also the contenders of the quality bar.
TABLE1_METHODS: tuple[str, ...] = (*BASELINES, LIGHTFUSIONNET)

#: Cross-dataset evaluation (the paper's Table 2): test set -> preset trained on the other set.
CROSS = {"PET-MRI": "SPECT-MRI", "SPECT-MRI": "PET-MRI"}


def cross_name(preset: str) -> str:
    """Table label of the network with another dataset's preset."""
    return f"{LIGHTFUSIONNET} ({preset} weights)"


def higher_is_better(column: str) -> bool:
    """Whether a higher value of ``column`` is better (True for the ten metrics and unknown names)."""
    return _HIGHER_IS_BETTER.get(column, True)


def ranks(means: Mapping[str, Mapping[str, float]], column: str, methods: Iterable[str]) -> dict[str, int | None]:
    """Competition rank of each method on ``column`` (1 = best; ties share a rank).

    A method's rank is one plus the number of methods with a strictly better
    value (higher, or lower for a column that is better low); a NaN value
    gets ``None`` and is not counted.
    """
    sign = 1.0 if higher_is_better(column) else -1.0
    values = {m: sign * float(means[m][column]) for m in methods}
    finite = [v for v in values.values() if np.isfinite(v)]
    return {
        m: (1 + sum(other > v for other in finite)) if np.isfinite(v) else None
        for m, v in values.items()
    }
