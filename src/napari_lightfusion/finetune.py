"""Fine-tuning a preset on the user's own registered pairs, in minutes on a CPU: the recipe.

The network's losses need no labels and it has about 3k parameters, so it
adapts to a new pair of modalities (GFP and phase contrast, PET and CT,
another scanner) from a few of the user's images. :func:`finetune` (the
API; ``lightfusion finetune`` and the widget's fine-tuning section call it)
is a thin recipe over the training core, :mod:`napari_lightfusion.training`:

1. **Held out.** The pairs are normalised as ``fuse`` normalises them
   (:func:`napari_lightfusion.inputs.prepare_pair`) and part is held out
   (:func:`napari_lightfusion.pair_data.split_prepared`: every fifth slice,
   or an edge band of each slice when there are fewer than five); at most
   ``max_validation`` held-out parts are scored, the rest is trained on.
2. **Base chosen by measurement** (:mod:`napari_lightfusion.finetune_choice`).
   ``base="auto"`` (the default) scores every bundled and custom preset on
   the held-out parts (Qabf, SSIM, VIF, ranked by their geometric mean,
   :func:`~napari_lightfusion.training.held_out_score`) and starts from the
   best; a name or a weight file starts from that one.
3. **Loss fitted to the pair.** ``loss="auto"`` takes the objective (loss
   weights, balance loss, default b and its share of batches, hot-spot
   weight) that the best-scoring preset on these held-out parts was trained
   with, so CT-MRI-like pairs get the CT-MRI preset's loss whatever the
   base. A preset name (or an :class:`~napari_lightfusion.objective.Objective`)
   chooses it instead. A conditioned base takes the objective's default b,
   and the head of the objective's preset when it mixes (:func:`~napari_lightfusion.finetune_choice.fitted_head`).
4. **Never worse.** The held-out score is tracked every ``validate_every``
   steps and at the end. A state is kept only when it beats the base's
   score by ``min_gain`` (relative) and lowers none of Qabf, SSIM and VIF
   by more than ``max_drop`` (:data:`MAX_DROP`, 3 %) against the *best
   preset on the held-out parts* (:attr:`FinetuneResult.reference`; the
   base itself under ``base="auto"``): what the user could have had on
   every measure. Failing such a state, one that lowers no measure against
   the base will do. The best-scoring state of the first kind there is is
   kept (:func:`~napari_lightfusion.finetune_choice.decide`); with none,
   the result is the base itself and says so (:attr:`FinetuneResult.improved`
   is False, :data:`KEPT_BASE`; :attr:`FinetuneResult.refusal` names a
   measure that would have fallen). A kept state that is below the base on
   a measure (a base that scores high on VIF by keeping the MRI, tuned to
   CT pairs) says that too, in the verdict.

Adam 5e-3 falling along a half cosine to 0 at the end of the steps or the
time budget, batch 4, 96 x 96 crops with flips (64 x 64 had left PET-MRI -> CT-MRI
5.7 % short on Qabf, ``docs/crossfit.md``), every batch at the default b
(``default_share=1``: in minutes, training where the network is used and
validated measured better than spreading the batches over b, see
``docs/finetune.md``); it stops after ``steps``
steps or ``minutes`` of wall time (preparing and scoring included), or when
cancelled. Seeded: the same pairs, seed and step count give the same
weights on the same machine and thread count.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .engine import resolve_device
from .finetune_choice import (
    AUTO,
    MAX_DROP,
    best_preset,
    choose,
    decide,
    keeps_measures,
    refusal,
    score_presets,
    with_output,
)
from .generators import Steps, run_to_end
from .losses import LossWeights
from .model import LightFusionNet
from .objective import Objective, with_hot_spots
from .pair_data import as_prepared, folder_pairs, parse_pair, read_image_file, read_pairs, split_prepared
from .training import SCORED, Progress, Schedule, held_out_score, train_steps, validate
from .weights import model_for, preset_path, sha256

__all__ = [
    "KEPT_BASE",
    "MAX_DROP",
    "FinetuneConfig",
    "FinetuneResult",
    "Progress",
    "finetune",
    "finetune_steps",
    "score_presets",
    "folder_pairs",
    "parse_pair",
    "read_image_file",
    "read_pairs",
    "validate",
]

#: What a run that did not beat its base says (the widget and the command line show it as it is).
KEPT_BASE = "kept the base: fine-tuning did not improve Qabf/SSIM/VIF on your held-out pairs"


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune; the defaults are the measured recipe."""

    steps: int | None = None  # stop after this many optimiser steps ...
    minutes: float | None = 2.0  # ... or this much wall time, whichever comes first
    batch_size: int = 4
    crop: int = 96  # crop edge; smaller when the training parts are smaller
    lr: float = 5e-3  # the peak: annealing spends most steps well below it
    anneal: bool = True  # the learning rate falls along a half cosine to 0 over the steps or the time budget
    seed: int = 0
    validate_every: int = 100  # steps between validations
    holdout: float = 0.2  # share of the slices (or of each slice) held out
    max_validation: int = 16  # held-out parts scored at most (evenly chosen; the rest is trained on)
    min_gain: float = 0.005  # relative gain of the held-out score that counts as an improvement
    loss_weights: LossWeights | None = None  # None: the objective's
    default_share: float | None = 1.0  # share of batches at the default b; None: the objective's (see below)
    max_drop: float = MAX_DROP  # relative fall of any one held-out measure that refuses a state (see MAX_DROP)

    def __post_init__(self):
        if self.steps is None and self.minutes is None:
            raise ValueError("give a number of steps or a time budget in minutes")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"the time budget must be positive, not {self.minutes} minutes")
        if self.batch_size < 1 or self.crop < 16 or self.validate_every < 1 or self.max_validation < 1:
            raise ValueError("batch size, validation interval and validation count must be >= 1, crop >= 16")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be between 0 and 0.5, not {self.holdout}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if not self.min_gain >= 0:
            raise ValueError(f"min_gain must be at least 0, not {self.min_gain}")
        if not 0.0 <= self.max_drop < 1.0:
            raise ValueError(f"max_drop must be in [0, 1), not {self.max_drop}")
        if self.default_share is not None and not 0.0 <= self.default_share <= 1.0:
            raise ValueError(f"default_share must be in [0, 1], not {self.default_share}")

    def schedule(self) -> Schedule:
        return Schedule(
            steps=self.steps,
            seconds=None if self.minutes is None else 60.0 * self.minutes,
            batch_size=self.batch_size,
            crop=self.crop,
            lr=self.lr,
            anneal=self.anneal,
            validate_every=self.validate_every,
            seed=self.seed,
        )


@dataclass
class FinetuneResult:
    """The weights fine-tuning returns and how they were found.

    ``model`` (on the CPU, in evaluation mode) is the best state on the
    held-out parts that lowers no measure by more than ``config.max_drop``
    against ``reference`` (the best preset there; failing any, against the
    base), or the base itself when none beat it (``improved`` False,
    ``best_step`` 0). ``lost`` holds the measures a state lowers against
    the base by more than ``config.max_drop``: the kept one's, or the
    best-scoring fine-tuned state's (``best_tuned``) when the base was kept.
    ``before`` and ``after`` are the held-out loss, Qabf, SSIM and VIF of the base and of ``model``;
    ``candidates`` the held-out scores of every preset weighed for the
    base and the loss. ``stopped``: "steps", "time" or "cancelled".
    ``seconds`` is the wall time of the whole call, ``cpu_seconds`` the
    process's CPU time over it (all threads).
    """

    model: LightFusionNet
    base: str
    base_sha256: str
    base_reason: str
    reference: str  # the best preset on the held-out parts: every measure is kept against it (module docstring)
    objective: Objective
    objective_from: str
    objective_reason: str
    improved: bool
    steps: int
    best_step: int
    seconds: float
    cpu_seconds: float
    stopped: str
    before: dict
    after: dict
    device: str
    config: FinetuneConfig
    crop: int
    train_images: int
    validation_images: int
    candidates: dict[str, dict] = field(default_factory=dict)
    best_tuned: dict | None = None  # the best fine-tuned state's validation (also when the base was kept)
    lost: dict[str, float] = field(default_factory=dict)  # measures best_tuned lowers vs the base -> relative change
    losses: list[float] = field(default_factory=list)
    validations: list[tuple[int, dict]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    @property
    def loss_weights(self) -> LossWeights:
        return self.objective.weights

    @property
    def kept_base(self) -> bool:
        return not self.improved

    @property
    def median_step_ms(self) -> float:
        """Median wall time of one training step (batch, forward, backward, update), ms; nan without steps."""
        return float(np.median(self.step_seconds) * 1000) if self.step_seconds else float("nan")

    @property
    def cancelled(self) -> bool:
        return self.stopped == "cancelled"

    @property
    def refusal(self) -> str:
        """One line, when the base was kept over a state that lowers a measure: which, by how much; else ""."""
        if self.improved or not self.best_tuned:
            return ""
        return refusal(self.before, self.best_tuned, self.lost, self.config.max_drop)

    @property
    def verdict(self) -> str:
        """One sentence: improved by how much, or :data:`KEPT_BASE` (with the best the run reached)."""
        before = held_out_score(self.before)
        if self.improved:
            after = held_out_score(self.after)
            below = ""
            if self.lost:  # kept against the best preset, not against the base
                below = (
                    "; below the base on "
                    + ", ".join(f"{name} {change:+.1%}" for name, change in self.lost.items())
                    + f", but within {self.config.max_drop:.0%} of {self.reference}, the best preset on your "
                    "held-out pairs, on every measure"
                )
            gain = f"{after / before - 1:+.1%}; " if before > 0 else ""  # 0: the base lost a measure entirely
            return (
                f"improved on your held-out pairs: score {before:.3f} -> {after:.3f} "
                f"({gain}{_scores(self.before)} -> {_scores(self.after)}){below}"
            )
        tried = "" if not self.best_tuned else f", best fine-tuned {held_out_score(self.best_tuned):.3f}"
        if self.lost:
            tried += " lowering " + ", ".join(f"{name} {change:+.1%}" for name, change in self.lost.items())
        return f"{KEPT_BASE} (score of '{self.base}' {before:.3f}{tried}); the result is '{self.base}' unchanged"

    def report(self) -> list[str]:
        """What the command line prints and the widget shows: base, loss, held-out scores, refusal, verdict."""
        ended = {"steps": "the step limit", "time": "the time budget", "cancelled": "cancelled"}[self.stopped]
        return [
            f"base: {self.base} ({self.base_reason})",
            f"loss: {self.objective.describe()} ({self.objective_reason})",
            f"held-out ({self.validation_images} part(s); score = geometric mean of Qabf, SSIM, VIF): "
            f"before {_scores(self.before)}, score {held_out_score(self.before):.3f}; "
            f"after {_scores(self.after)}, score {held_out_score(self.after):.3f}",
            f"{self.steps} steps in {self.seconds:.0f} s on {self.device} ({ended}; median "
            f"{self.median_step_ms:.0f} ms a step)" + (f", best at step {self.best_step}" if self.improved else ""),
            *([self.refusal] if self.refusal else []),
            self.verdict,
        ]

    def sidecar(self, **extra) -> dict:
        """What to store beside the weights (:func:`napari_lightfusion.weights.save_weights`)."""
        train = {k: v for k, v in asdict(self.config).items() if k != "loss_weights"}
        return {
            "dataset": None,
            "finetune": {
                "base": self.base,
                "base_sha256": self.base_sha256,
                "base_reason": self.base_reason,
                "reference": self.reference,
                "candidates": {name: _jsonable(v) for name, v in self.candidates.items()},
                "objective_from": self.objective_from,
                "objective_reason": self.objective_reason,
                "improved": self.improved,
                "lost": {name: round(change, 6) for name, change in self.lost.items()},
                **train,
                "steps_taken": self.steps,
                "best_step": self.best_step,
                "stopped": self.stopped,
                "crop_used": self.crop,
                "median_step_ms": None if not self.step_seconds else round(self.median_step_ms, 2),
                "train_images": self.train_images,
                "validation_images": self.validation_images,
                "device": self.device,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            },
            "objective": self.objective.to_dict(),
            "train_seconds": round(self.seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "loss_weights": self.loss_weights.to_dict(),
            "validation": {"before": _jsonable(self.before), "after": _jsonable(self.after)},
            **extra,
        }


def _jsonable(values: dict) -> dict:
    """Metric dict with nan as None (JSON has no nan)."""
    return {k: (None if not np.isfinite(v) else round(float(v), 6)) for k, v in values.items()}


def _scores(values: dict) -> str:
    return ", ".join(f"{name} {values[name]:.3f}" for name in SCORED)


def _evenly(count: int, limit: int) -> list[int]:
    """At most ``limit`` of the indices ``0 .. count - 1``, evenly spaced, in order."""
    if count <= limit:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def _fitted(model: LightFusionNet, objective: Objective) -> LightFusionNet:
    """``model`` with the objective's default b (a conditioned network keeps its conditioning)."""
    if model.conditioned and objective.balance is not None and objective.balance != model.config.balance:
        model.config = replace(model.config, balance=float(objective.balance))
    return model


def finetune_steps(
    pairs: Iterable,
    base: str = AUTO,
    *,
    loss: str | Objective = AUTO,
    config: FinetuneConfig | None = None,
    device: str = "auto",
    cancel=None,
) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune step by step: yields a :class:`Progress` per step, returns the :class:`FinetuneResult`.

    Step 0 is the base on the held-out parts. Arguments as for :func:`finetune`.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    config = config or FinetuneConfig()
    device = resolve_device(device)
    if base != AUTO:
        preset_path(base)  # an unknown preset fails before the pairs are read
    prepared = [as_prepared(pair) for pair in pairs]
    if not prepared:
        raise ValueError("no image pairs to fine-tune on")
    train, held = split_prepared(prepared, config.holdout)
    scored = set(_evenly(len(held), config.max_validation))
    train += [part for i, part in enumerate(held) if i not in scored]
    held = with_hot_spots([part for i, part in enumerate(held) if i in scored])
    train = with_hot_spots(train)

    choice = choose(base, loss, held)
    # without a ceiling term: its per-pair targets take minutes per hundred pairs, more than a fine-tune has
    objective = replace(choice.objective, ceiling_weight=0.0)
    if config.loss_weights is not None:
        objective = replace(objective, weights=config.loss_weights)
    if config.default_share is not None:
        objective = replace(objective, default_share=config.default_share)
    base, candidates = choice.base, choice.candidates
    base_path = preset_path(base)
    base_model = model_for(weights=base_path)
    fresh = copy.deepcopy(base_model) if choice.head is None else with_output(base_model, choice.head)
    model = _fitted(fresh, objective).to(device)  # a new network: never train the shared cached model
    before = {**candidates[base], "loss": validate(base_model, held, objective, ())["loss"]}  # on the CPU

    # the state kept: the best that keeps every measure of the best preset on these parts (or else of the base)
    reference_name = best_preset(candidates)
    reference = candidates[reference_name]
    rank = keeps_measures(before, config.max_drop, reference, config.min_gain)
    options = dict(device=device, cancel=cancel, rank=rank, started=start, first=before)
    steps = Steps(train_steps(model, objective, train, held, config.schedule(), **options))
    yield from steps
    run = steps.value
    decision = decide(before, run.validations, config.min_gain, config.max_drop, reference)  # the same rule
    improved = decision.improved and decision.step == run.best_step  # the model holds the state at run.best_step
    if not improved:
        model = copy.deepcopy(base_model)
    return FinetuneResult(
        model=model.cpu().eval(),
        base=str(base),
        base_sha256=sha256(base_path),
        base_reason=choice.base_reason,
        reference=reference_name,
        objective=objective.for_model(model),
        objective_from=choice.objective_from,
        objective_reason=choice.objective_reason,
        improved=improved,
        steps=run.steps,
        best_step=run.best_step if improved else 0,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        stopped=run.stopped,
        before=before,
        after=run.best if improved else before,
        device=str(device),
        config=config,
        crop=run.crop,
        train_images=len(train),
        validation_images=len(held),
        candidates=candidates,
        best_tuned=decision.tuned,
        lost=decision.lost,
        losses=run.losses,
        validations=run.validations,
        step_seconds=run.step_seconds,
    )


def finetune(
    pairs: Iterable,
    base: str = AUTO,
    *,
    loss: str | Objective = AUTO,
    config: FinetuneConfig | None = None,
    device: str = "auto",
    progress: Callable[[Progress], object] | None = None,
    cancel=None,
    **options,
) -> FinetuneResult:
    """Fine-tune on ``pairs`` and return the best weights, or the base if nothing beat it (module docstring).

    ``pairs``: ``(anatomical, functional)`` array pairs as :func:`fuse`
    takes them, or :class:`~napari_lightfusion.inputs.PreparedPair`.
    ``base``: "auto" (the best preset on the held-out parts), a bundled or
    custom preset name or a weight file. ``loss``: "auto" (the objective of
    the best preset on the held-out parts), a preset name whose objective
    to use, or an :class:`~napari_lightfusion.objective.Objective`.
    ``config`` or keyword ``options`` (``steps=200, minutes=None, seed=1``,
    any :class:`FinetuneConfig` field) set the recipe. ``device``: "auto"
    (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps". ``progress`` is
    called with every :class:`Progress`; ``cancel`` (an event or a function
    returning True) stops at the next step, keeping the best state so far.
    Raises ``ValueError`` with one line for inputs it cannot use.
    """
    config = replace(config or FinetuneConfig(), **options)
    return run_to_end(finetune_steps(pairs, base, loss=loss, config=config, device=device, cancel=cancel), progress)
