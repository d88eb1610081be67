"""Scoring fusion results: the measures of one result, and of every method on a test set.

Every result is scored on a 0..255 scale with
``metrics.evaluate(fused * 255, mri * 255, grey(other) * 255)``, where
:func:`napari_lightfusion.colour.grey` is the BT.601 luminance of a colour
image (the grey image itself otherwise); an RGB result is reduced to its
BT.601 luminance by ``evaluate``. The measures of
:data:`.tables.EXTRA_MEASURES` are then computed on the arrays the method
saw and returned.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..colour import grey
from ..metrics import evaluate
from ..pair_data import load_pairs, split_names
from .methods import Method, resolve_methods
from .tables import COLUMNS, EXTRA_MEASURES


def score(fused: np.ndarray, mri: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Every column of the tables (:data:`.tables.COLUMNS`) for one result, with the module's convention."""
    values = evaluate(np.asarray(fused, np.float64) * 255.0, np.asarray(mri, np.float64) * 255.0, grey(other) * 255.0)
    for measure in EXTRA_MEASURES:
        values[measure.name] = float(measure.compute(fused, mri, other))
    return values


def nanmean(values: Iterable[float]) -> float:
    """Mean of the finite values (NaN when there are none)."""
    values = np.asarray(list(values), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclass
class EvalTable:
    """Per-pair scores of several methods on one test set, and their means.

    ``scores[method][i]`` is the dict of measures of ``pairs[i]``;
    ``seconds`` the total wall time each method spent fusing (not scoring).
    """

    dataset: str
    pairs: list[str]
    scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """The methods, in table order."""
        return list(self.scores)

    def mean(self, method: str) -> dict[str, float]:
        """Mean of each column over the pairs (NaN values, if any, left out)."""
        rows = self.scores[method]
        return {column: nanmean(r[column] for r in rows) for column in COLUMNS}

    @property
    def means(self) -> dict[str, dict[str, float]]:
        """``means[method][column]``: the numbers of Table 1."""
        return {method: self.mean(method) for method in self.scores}

    def to_dict(self) -> dict:
        """Everything as plain data (for JSON)."""
        return {
            "dataset": self.dataset,
            "pairs": self.pairs,
            "means": self.means,
            "scores": self.scores,
            "seconds": self.seconds,
        }


def evaluate_dataset(
    data_root: Path,
    dataset: str,
    methods: Mapping[str, Method] | Iterable[str] | None = None,
    *,
    names: list[str] | None = None,
    limit: int | None = None,
    progress: bool = False,
    split: str = "test",
) -> EvalTable:
    """Score ``methods`` on every pair of ``data_root/test/<dataset>``.

    ``methods``: a mapping of table name -> method (a callable
    ``(mri, other) -> fused`` in [0, 1]), or names among the defaults
    (:func:`.methods.default_methods`: the four baselines and
    "LightFusionNet", the bundled preset of ``dataset``); ``None`` means all
    defaults. ``names`` picks pairs by file name, ``limit`` keeps the first
    ``limit`` (for a quick trial). ``split="validation"`` scores the
    validation pairs carved out of ``train/`` instead (:func:`.data.split_names`). Returns an
    :class:`EvalTable`; its ``means`` are Table 1.
    """
    folder, split_pairs = split_names(data_root, split, dataset)
    methods = resolve_methods(methods, dataset)
    if names is None:
        names = split_pairs
    if limit is not None:
        names = names[: max(0, int(limit))]
    table = EvalTable(dataset, list(names), {m: [] for m in methods}, dict.fromkeys(methods, 0.0))
    iterator: Iterable[str] = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, desc=f"evaluate {dataset}", unit="pair")
    for name in iterator:
        (pair,) = load_pairs(data_root, folder, dataset, [name])
        for label, method in methods.items():
            start = time.perf_counter()
            fused = method(pair.anatomical, pair.other)
            table.seconds[label] += time.perf_counter() - start
            table.scores[label].append(score(fused, pair.anatomical, pair.other))
    return table
