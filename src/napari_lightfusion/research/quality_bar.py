"""The quality bar: where the network stands against the baselines on one test set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..metrics import METRICS
from .tables import LIGHTFUSIONNET, TABLE1_METHODS, ranks

#: Metrics on which the network must beat pixel averaging to pass the quality bar.
QUALITY_METRICS: tuple[str, ...] = ("MI", "Qabf", "SSIM", "VIF")

#: Least number of the ten metrics on which the network must be best or
#: second-best among :data:`.tables.TABLE1_METHODS` (the evaluation issue's bar).
MIN_TOP2 = 6


@dataclass
class QualityBar:
    """Where the network stands against the baselines on one test set."""

    dataset: str
    ahead: dict[str, bool]  # metric -> network strictly above pixel average
    values: dict[str, tuple[float, float]]  # metric -> (network, average)
    top2: list[str]  # metrics where the network is best or second-best
    best: list[str]  # metrics where it is best
    min_top2: int
    contenders: tuple[str, ...]

    @property
    def ahead_of_average(self) -> bool:
        """Strictly ahead of pixel average on every one of the bar's metrics."""
        return all(self.ahead.values())

    @property
    def enough_top2(self) -> bool:
        """Best or second-best on at least ``min_top2`` metrics."""
        return len(self.top2) >= self.min_top2

    @property
    def passed(self) -> bool:
        """Both conditions of the bar."""
        return self.ahead_of_average and self.enough_top2


def quality_bar(
    means: Mapping[str, Mapping[str, float]],
    dataset: str = "",
    *,
    network: str = LIGHTFUSIONNET,
    reference: str = "average",
    contenders: Iterable[str] = TABLE1_METHODS,
    metrics: Iterable[str] = QUALITY_METRICS,
    min_top2: int = MIN_TOP2,
) -> QualityBar:
    """Check the quality bar on mean metrics ``means[method][metric]``.

    Passes when the network is strictly ahead of ``reference`` (pixel
    average) on every one of ``metrics`` (MI, Qabf, SSIM, VIF) *and* is best
    or second-best among ``contenders`` on at least ``min_top2`` of the ten
    metrics. A NaN never counts as ahead or as top-two.
    """
    contenders = tuple(contenders)
    missing = [m for m in (network, reference, *contenders) if m not in means]
    if missing:
        raise ValueError(f"the table has no row for {', '.join(missing)}")
    ahead, values = {}, {}
    for metric in metrics:
        mine, theirs = float(means[network][metric]), float(means[reference][metric])
        values[metric] = (mine, theirs)
        ahead[metric] = bool(np.isfinite(mine) and np.isfinite(theirs) and mine > theirs)
    top2, best = [], []
    for metric in METRICS:
        rank = ranks(means, metric, contenders)[network]
        if rank is not None and rank <= 2:
            top2.append(metric)
        if rank == 1:
            best.append(metric)
    return QualityBar(dataset, ahead, values, top2, best, min_top2, contenders)
