"""What fine-tuning starts from and trains with, chosen by measurement on the user's held-out parts.

:func:`choose` scores presets on the held-out parts of the user's pairs
(Qabf, SSIM and VIF, ranked by their geometric mean,
:func:`napari_lightfusion.training.held_out_score`; a few seconds for the
bundled three on 16 parts of 256 x 256) and picks:

* the **base**: the best-scoring preset of all bundled and custom ones for
  ``base="auto"``, else the one given;
* the **objective** (:class:`napari_lightfusion.objective.Objective`: loss
  weights, balance loss, default b and its share of batches, hot-spot
  weight): for ``loss="auto"``, the one the best-scoring preset was trained
  with (its sidecar). Each preset was trained for one kind of pair, and the
  one that fuses these pairs best was trained for the pair most like them:
  CT-MRI-like pairs get the CT-MRI preset's loss whatever the base is.
  A preset name takes that preset's objective; an Objective is used as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .objective import Objective, objective_of
from .training import held_out_score, validate
from .weights import all_presets, model_for, preset_path, read_sidecar

#: ``base`` and ``loss`` value that chooses by measurement.
AUTO = "auto"


@dataclass(frozen=True)
class Choice:
    """The base and the objective of a fine-tuning run, each with where it came from and why."""

    base: str
    base_reason: str
    candidates: dict  # preset name -> its held-out validation (loss under its own objective, Qabf, SSIM, VIF)
    objective: Objective
    objective_from: str
    objective_reason: str


def score_presets(held: Sequence[np.ndarray], names: Iterable[str]) -> dict[str, dict]:
    """Held-out Qabf, SSIM and VIF (and each preset's loss under its own objective), name -> validation.

    On the CPU, with the shared cached networks (:func:`napari_lightfusion.weights.model_for`).
    """
    scores = {}
    for name in names:
        path = preset_path(name)
        scores[name] = validate(model_for(weights=path), held, objective_of(read_sidecar(path)))
    return scores


def best_preset(scores: dict[str, dict]) -> str:
    """The name with the highest held-out score (the first among equals; nan scores last)."""
    return max(scores, key=lambda name: np.nan_to_num(held_out_score(scores[name]), nan=-1.0))


def choose(base: str, loss: str | Objective, held: Sequence[np.ndarray]) -> Choice:
    """The :class:`Choice` for these held-out parts (every preset is scored when either choice is "auto")."""
    names = all_presets() if AUTO in (base, loss) else [base]
    if base != AUTO and base not in names:
        names = [*names, base]
    scores = score_presets(held, names)
    listed = ", ".join(f"{n} {held_out_score(v):.3f}" for n, v in scores.items())
    if base == AUTO:
        base = best_preset(scores)
        base_reason = f"the best held-out score of {len(scores)} presets: {listed}"
    else:
        base_reason = "given" + (f"; held-out scores {listed}" if len(scores) > 1 else "")
    if isinstance(loss, Objective):
        return Choice(base, base_reason, scores, loss, "given", "given")
    if loss == AUTO:
        source = best_preset(scores)
        why = f"what {source}, the best preset on your held-out pairs, was trained with"
    else:
        source = str(loss)
        why = f"{source} given"
    return Choice(base, base_reason, scores, objective_of(read_sidecar(preset_path(source))), source, why)
