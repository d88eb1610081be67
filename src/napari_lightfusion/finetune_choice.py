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
  A preset name takes that preset's objective; an Objective is used as it is;
* the **head**: that preset's output head when it mixes the two sources and
  the base's does not, or when it is a blend and the base's a mix
  (:func:`fitted_head`, :func:`with_output`).

And what it ends with: :func:`decide` keeps the fine-tuned state with the
best held-out score among those that beat the base by ``min_gain`` and
lower no measure (Qabf, SSIM, VIF) by more than :data:`MAX_DROP` against
the best preset on the held-out parts (failing any, against the base);
else the base. :func:`keeps_measures` is the same rule as the rank the
training loop keeps its best state by.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .objective import Objective, objective_of
from .training import SCORED, held_out_score, validate
from .weights import all_presets, model_for, preset_path, read_sidecar

#: ``base`` and ``loss`` value that chooses by measurement.
AUTO = "auto"

#: The most any one held-out measure (Qabf, SSIM, VIF) may fall, relative to the base's, for a fine-tuned
#: state to be kept. The held-out score is a geometric mean, so a large gain in one measure can hide a large
#: loss in another (SPECT-MRI fine-tuned on CT-MRI pairs: Qabf -25.5 %, VIF +32.8 %, "improved",
#: docs/crossfit.md), and a user would call a blurrier image worse. 3 % is the "within 3 %" of the
#: fine-tuning target (issue 20, :data:`napari_lightfusion.research.crossfit.WITHIN`): a fall that small
#: counts as keeping the measure, about the spread of a measure over 16 held-out parts.
MAX_DROP = 0.03


@dataclass(frozen=True)
class Choice:
    """The base and the objective of a fine-tuning run, each with where it came from and why."""

    base: str
    base_reason: str
    candidates: dict  # preset name -> its held-out validation (loss under its own objective, Qabf, SSIM, VIF)
    objective: Objective
    objective_from: str
    objective_reason: str
    head: str | None = None  # the output head to train instead of the base's (:func:`fitted_head`)


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
    head, note = fitted_head(model_for(base), source)
    objective = objective_of(read_sidecar(preset_path(source)))
    return Choice(base, base_reason, scores, objective, source, "; ".join(filter(None, (why, note))), head)


def lowered(values: Mapping, base: Mapping, max_drop: float = MAX_DROP) -> dict[str, float]:
    """The measures ``values`` lowers by more than ``max_drop`` against ``base``: name -> relative change (< 0).

    A measure the base has no value for (nan: a property of the held-out
    parts) is not compared; one the base has and ``values`` lacks is lost (-1).
    """
    out = {}
    for name in SCORED:
        old, new = float(base.get(name, math.nan)), float(values.get(name, math.nan))
        if not np.isfinite(old):
            continue
        if not np.isfinite(new):
            out[name] = -1.0
        elif new < old - max_drop * abs(old):
            out[name] = (new - old) / abs(old)
    return out


def keeps_measures(
    base: Mapping, max_drop: float = MAX_DROP, reference: Mapping | None = None, min_gain: float = 0.0
) -> Callable[[Mapping], tuple[int, float]]:
    """A rank for :func:`~napari_lightfusion.training.train_steps` and :func:`decide`: ``(tier, held-out score)``.

    Tier 2: the state beats the base's score by ``min_gain`` and lowers no
    measure by more than ``max_drop`` against ``reference``, the best preset
    on the held-out parts (the base when it is the best, or when
    ``reference`` is None): it is as good as the best the user could have
    had on every measure. Tier 1, only when the reference is not the base:
    it beats the base and lowers no measure against the base. Tier 0:
    neither (a score that rises by lowering a measure: blurrier, or less
    of a source). Higher ranks are better; within a tier, the higher score.
    """
    floor = held_out_score(base) * (1.0 + min_gain)
    reference = base if reference is None else reference

    def rank(values: Mapping) -> tuple[int, float]:
        score = float(np.nan_to_num(held_out_score(values), nan=-math.inf))
        if score >= floor and not lowered(values, reference, max_drop):
            return 2, score
        if score >= floor and not lowered(values, base, max_drop):  # never when the reference is the base
            return 1, score
        return 0, -math.inf  # never kept, and never displaces a state that is

    return rank


@dataclass(frozen=True)
class Decision:
    """What a fine-tuning run ends with.

    ``improved``: a fine-tuned state is kept, ``step`` (0: the base) with
    validation ``values`` (the base's when not improved). ``tuned``: the
    kept state when improved, else the best-scoring fine-tuned state (None
    without one); ``lost``: the measures ``tuned`` lowers by more than the
    tolerance against the base (name -> relative change), empty when none does.
    """

    improved: bool
    step: int
    values: dict
    tuned: dict | None = None
    tuned_step: int = 0
    lost: dict = field(default_factory=dict)


def decide(
    before: Mapping,
    validations: Iterable[tuple[int, Mapping]],
    min_gain: float,
    max_drop: float = MAX_DROP,
    reference: Mapping | None = None,
) -> Decision:
    """Keep the best-ranked fine-tuned state (:func:`keeps_measures`) when it has a tier; else the base.

    ``before`` is the base's held-out validation, ``reference`` the best
    preset's (None: the base), ``validations`` the ``(step, validation)``
    of the run (step 0, the base, is skipped). Ties go to the earlier
    state, as in the training loop. When the kept state lowers a measure
    against the base (it keeps every one against the reference), ``lost``
    says which.
    """
    rank = keeps_measures(before, max_drop, reference, min_gain)
    tuned = [(step, dict(values)) for step, values in validations if step]
    if not tuned:
        return Decision(False, 0, dict(before))
    best_step, best = max(tuned, key=lambda sv: rank(sv[1]))  # max keeps the first of equals
    if rank(best)[0]:
        return Decision(True, best_step, best, best, best_step, lowered(best, before, max_drop))
    top_step, top = max(tuned, key=lambda sv: np.nan_to_num(held_out_score(sv[1]), nan=-1.0))
    return Decision(False, 0, dict(before), top, top_step, lowered(top, before, max_drop))


def refusal(before: Mapping, tuned: Mapping, lost: Mapping[str, float], max_drop: float = MAX_DROP) -> str:
    """One line: the measures the best fine-tuned state would have lowered, by how much ("" when none)."""
    if not lost:
        return ""
    drops = " and ".join(
        f"{name} by {-change:.1%} ({before[name]:.3f} -> {tuned[name]:.3f})" for name, change in lost.items()
    )
    return (
        f"the best fine-tuned state would have lowered {drops} on your held-out pairs, more than the "
        f"{max_drop * 100:g}% any measure may fall (its score {held_out_score(tuned):.3f}, the base's "
        f"{held_out_score(before):.3f})"
    )


def fitted_head(model, objective_from: str) -> tuple[str | None, str]:
    """The output head a fine-tune of ``model`` should train, and a note saying why (``(None, "")``: keep it).

    The head of the preset whose objective is used (``objective_from``, the
    target pair's) when it mixes the two sources (:data:`napari_lightfusion.model.MIXING_OUTPUTS`) and

    * the base's does not: an "intensity" base, which must learn to
      synthesise the grey levels and edges a mixture keeps, takes a "blend"
      or "mix" head;
    * the base's is a "mix" and the target's a "blend": under a blend
      objective (CT-MRI's) the mix head's contrast gain buys edges with the
      sources' grey levels (PET-MRI -> CT-MRI: held-out Qabf 0.49 -> 0.63
      but VIF 0.64 -> 0.56, MI 15 % below the CT-MRI preset's), which a
      blend keeps by construction.

    A "blend" base keeps its own under a "mix" objective: made a mix, it lost
    the MI it had on PET-MRI pairs (``docs/finetune.md``, ``docs/crossfit.md``).
    A target that is not a preset keeps the base's head.
    """
    from .model import MIXING_OUTPUTS

    try:
        target = model_for(objective_from).config.output
    except ValueError:  # an Objective given as such, or a weight file that is gone: nothing to follow
        return None, ""
    own = model.config.output
    if target not in MIXING_OUTPUTS or target == own or (own in MIXING_OUTPUTS and target != "blend"):
        return None, ""
    return target, f"output head {target} as the {objective_from} preset's, not the base's {own}"


def with_output(model, output: str):
    """``model`` with a mixing head (``output``: "blend" or "mix") in place of its own, every other weight kept.

    A new network (``model`` is not changed). The head is the decoder's
    last 1x1 convolution, and the new one starts at the even mixture (zero
    weights: ``w = 1/2``, no gain, no offset): an "intensity" head's logits
    mean nothing to a mixing head, and a "mix" head's weight logits, kept
    as a blend's, fix the mixture within 100 steps, after which the held-out
    scores no longer move (PET-MRI -> CT-MRI, ``docs/crossfit.md``).
    """
    from .model import MIXING_OUTPUTS, LightFusionNet

    if output not in MIXING_OUTPUTS:
        raise ValueError(f"{output!r} is not a mixing head ({', '.join(MIXING_OUTPUTS)})")
    new = LightFusionNet(replace(model.config, output=output))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.2.")}
    missing = new.load_state_dict(state, strict=False).missing_keys
    assert set(missing) == {"decoder.2.weight", "decoder.2.bias"}, missing  # only the head is new
    head = new.decoder[2]
    head.weight.data.zero_()
    head.bias.data.zero_()
    return new.to(next(model.parameters()).device)
