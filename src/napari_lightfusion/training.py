"""The one training core: what ``lightfusion train`` (the presets) and fine-tuning both run.

Each caller is a recipe over it: :mod:`napari_lightfusion.research.train`
trains a network from scratch on the atlas, :mod:`napari_lightfusion.finetune`
adapts a preset to the user's pairs. What they share is here:

* :class:`~napari_lightfusion.objective.Objective` (its own module) - the
  loss, its weights and the balance handling: a balance-conditioned network
  draws b per batch and the loss moves with b; a weight file's sidecar says
  which objective made it.
* :class:`Crops` - seeded random crops with random flips from training
  arrays ``(K, h, w)`` of any sizes (K = 2, or 3 with the hot-spot mask of
  :func:`~napari_lightfusion.objective.with_hot_spots` for the losses that need it,
  or 4 with each pair's hot-spot ceiling after it for the ceiling term).
* :func:`make_optimiser` - Adam, the balance layer in its own group, and a
  step schedule (the learning rate times ``lr_gamma`` every ``lr_step`` steps).
* :func:`validate` - the loss and Qabf, SSIM, VIF (MI on request) on
  held-out arrays at the objective's default b; :func:`held_out_score` is
  the one number runs are ranked by (the geometric mean of Qabf, SSIM, VIF).
* :func:`train_steps` - the loop: steps or a time budget, cancel, a
  validation every ``validate_every`` steps and at the end, the best state
  kept (or the last), a :class:`Progress` yielded per step. On the CPU the
  network trains in the channels-last memory layout, where mkldnn's
  depthwise (dilated) convolutions run about twice as fast forward and
  backward (``docs/finetune.md``, "Time per step"); it is handed back in the
  usual layout.

Seeded: the same arrays, seed and step count give the same weights on the
same machine, device and thread count (on the CPU; CUDA may differ in the
last bits).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import metrics, statistical_metrics
from .model import LightFusionNet
from .objective import Objective

#: The measures held-out parts are scored on (besides the loss); :func:`held_out_score` combines them.
#: Not MI: with it, the SPECT-MRI preset outscored the CT-MRI one on CT-MRI pairs, and CT pairs were
#: fine-tuned with its loss (docs/finetune.md, rule 2).
SCORED = ("Qabf", "SSIM", "VIF")

_METRIC_FUNCTIONS = {"Qabf": metrics.qabf, "SSIM": metrics.ssim, "VIF": metrics.vif, "MI": statistical_metrics.mi}


class Crops:
    """Seeded random crops with random horizontal and vertical flips, from arrays ``(K, h, w)`` of any sizes.

    An array is drawn in proportion to the number of crop positions it has.
    """

    def __init__(self, images: Sequence[np.ndarray], crop: int, seed: int):
        if not images:
            raise ValueError("no training images")
        self.images = list(images)
        self.crop = min(crop, *(min(im.shape[1:]) for im in self.images))
        c = self.crop
        area = np.array([(im.shape[1] - c + 1) * (im.shape[2] - c + 1) for im in self.images], np.float64)
        self.p = area / area.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, device="cpu") -> tuple[torch.Tensor, ...]:
        """``(anatomical, functional, hot spot or None, ceiling or None)``: ``(size, 1, crop, crop)`` on ``device``.

        The planes a training array lacks are None.
        """
        c = self.crop
        crops = []
        for i in self.rng.choice(len(self.images), size=size, p=self.p):
            image = self.images[i]
            y = self.rng.integers(image.shape[1] - c + 1)
            x = self.rng.integers(image.shape[2] - c + 1)
            patch = image[:, y : y + c, x : x + c]
            if self.rng.random() < 0.5:
                patch = patch[:, :, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1, :]
            crops.append(patch)
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(crops), dtype=np.float32)).to(device)
        planes = [batch[:, k : k + 1] if batch.shape[1] > k else None for k in range(4)]
        return tuple(planes)


def make_optimiser(model: LightFusionNet, lr: float, film_lr_scale: float = 1.0) -> torch.optim.Adam:
    """Adam over the network; the balance (FiLM) layer, if any, at ``film_lr_scale`` times ``lr``."""
    film = [p for n, p in model.named_parameters() if n.startswith("film.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("film.")]
    groups = [{"params": rest}] + ([{"params": film, "lr": lr * film_lr_scale}] if film else [])
    return torch.optim.Adam(groups, lr=lr)


@torch.no_grad()
def validate(
    model: LightFusionNet, images: Sequence[np.ndarray], objective: Objective, measures: Sequence[str] = SCORED
) -> dict:
    """Mean loss and ``measures`` of ``model`` on ``(K, h, w)`` held-out arrays, at the default b.

    Runs on the model's device. The measures take the images on 0..255 as :mod:`metrics` expects; nan
    values (an image without edges) are left out of the means.
    """
    model.eval()
    objective = objective.for_model(model)
    device = next(model.parameters()).device
    scores = {name: [] for name in ("loss", *measures)}
    for image in images:
        pair = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None].to(device)
        a, b, hot = pair[:1], pair[1:2], pair[2:3] if len(pair) > 2 else None
        fused = model(a, b, balance=objective.balance) if model.conditioned else model(a, b)
        loss, _ = objective.loss(fused, a, b, objective.balance, hot)
        scores["loss"].append(float(loss))
        if measures:
            f = fused[0, 0].float().cpu().numpy().astype(np.float64) * 255.0
            sa, sb = image[0].astype(np.float64) * 255.0, image[1].astype(np.float64) * 255.0
            for name in measures:
                scores[name].append(float(_METRIC_FUNCTIONS[name](f, sa, sb)))
    out = {}
    for name, values in scores.items():
        finite = [v for v in values if np.isfinite(v)]
        out[name] = float(np.mean(finite)) if finite else float("nan")
    return out


def held_out_score(values: Mapping) -> float:
    """The geometric mean of Qabf, SSIM and VIF: higher is better, and a ratio of two says by how much.

    Scale-free, so no measure dominates by its range. A measure that is nan
    (VIF of parts under 17 x 17 pixels, Qabf without edges: a property of
    the held-out parts, the same for every network) is left out; nan when
    all are. 0 when any is 0 or below (a result that lost everything).
    """
    parts = [v for v in (values.get(name, float("nan")) for name in SCORED) if np.isfinite(v)]
    if not parts:
        return float("nan")
    if min(parts) <= 0:
        return 0.0
    return float(math.exp(sum(math.log(v) for v in parts) / len(parts)))


def lower_loss(values: Mapping) -> float:
    """A rank for :func:`train_steps` when only the loss is validated: minus the loss."""
    return -float(values["loss"])


def share_used(step: int, steps: int | None, seconds: float, budget: float | None) -> float:
    """How much of ``steps`` steps or a ``budget`` of seconds is used, whichever is nearer its end, in [0, 1]."""
    parts = [step / steps] if steps else []
    if budget:
        parts.append(seconds / budget)
    return float(min(1.0, max(parts, default=0.0)))


@dataclass(frozen=True)
class Schedule:
    """How long and how fast: steps or a time budget (whichever ends first), batch, crop, learning rate."""

    steps: int | None = None
    seconds: float | None = None
    batch_size: int = 4
    crop: int = 64
    lr: float = 2e-3
    lr_step: int | None = None  # optimiser steps between learning-rate decays (None: constant)
    lr_gamma: float = 0.5
    anneal: bool = False  # the learning rate falls along a half cosine to 0 by the end of the steps or budget
    validate_every: int | None = 100  # steps between validations (None: only at the start and the end)
    seed: int = 0

    def __post_init__(self):
        if self.steps is None and self.seconds is None:
            raise ValueError("give a number of steps or a time budget")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"the time budget must be positive, not {self.seconds} s")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, not {self.lr}")
        if self.anneal and self.lr_step:
            raise ValueError("choose a step schedule (lr_step) or annealing, not both")

    def lr_factor(self, step: int, seconds: float) -> float:
        """The learning rate of a step, as a share of ``lr``: 1, or the half cosine when annealing."""
        if not self.anneal:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * share_used(step, self.steps, seconds, self.seconds)))


@dataclass(frozen=True)
class Progress:
    """One report of :func:`train_steps`: after ``step`` optimiser steps (step 0: the start, validated).

    ``loss`` and ``terms`` are that step's training loss and its terms (nan
    and empty at step 0); ``validation`` holds the loss and the measures
    when this step was validated, else None; ``best`` is the best
    validation so far (reached at ``best_step``); ``lr`` the learning rate
    the step used.
    """

    step: int
    steps: int | None
    seconds: float
    budget: float | None
    loss: float
    validation: dict | None
    best: dict
    best_step: int
    lr: float = float("nan")
    terms: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """How much of the step count or time budget is used, in [0, 1]."""
        return share_used(self.step, self.steps, self.seconds, self.budget)


@dataclass
class Run:
    """What :func:`train_steps` did; the model holds the kept state (the best, or the last)."""

    steps: int
    stopped: str  # "steps", "time" or "cancelled"
    best: dict
    best_step: int
    crop: int
    seconds: float
    validations: list[tuple[int, dict]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    @property
    def median_step_ms(self) -> float:
        """Median wall time of one step (batch, forward, backward, update), ms; nan without steps."""
        return float(np.median(self.step_seconds) * 1000) if self.step_seconds else float("nan")


def cancel_check(cancel) -> Callable[[], bool]:
    """``cancel`` (None, a ``threading.Event`` or a function returning True to stop) as a function."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ValueError("cancel must be a threading.Event or a function returning True to stop")


def train_step(model: LightFusionNet, objective: Objective, crops: Crops, optimiser, batch_size: int, device="cpu"):
    """One optimiser step on ``batch_size`` crops, b drawn by ``objective``: the loss and its terms (tensors)."""
    a, b, hot, ceiling = crops.batch(batch_size, device)
    balance = objective.draw(crops.rng)
    fused = model(a, b, balance=balance) if model.conditioned else model(a, b)
    loss, terms = objective.loss(fused, a, b, balance, hot, ceiling)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss, terms


def train_steps(
    model: LightFusionNet,
    objective: Objective,
    train: Sequence[np.ndarray],
    held: Sequence[np.ndarray],
    schedule: Schedule,
    *,
    device="cpu",
    cancel=None,
    keep: str = "best",
    rank: Callable[[Mapping], float] = held_out_score,
    measures: Sequence[str] = SCORED,
    started: float | None = None,
    first: dict | None = None,
) -> Generator[Progress, None, Run]:
    """Train ``model`` (in place, on ``device``) on crops of ``train``; yield a :class:`Progress` per step.

    ``held`` is validated at step 0 (or ``first`` is its validation already
    made), every ``schedule.validate_every`` steps and after the last step;
    ``rank`` orders validations (higher is better). ``keep="best"`` leaves
    the best validated state in the model (the starting one if nothing beat
    it), ``"last"`` the last. ``started`` (a ``time.perf_counter()``) is
    when the time budget began, if before this call. The arrays carry the
    hot-spot plane when the objective needs one (:func:`~napari_lightfusion.objective.with_hot_spots`).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {keep!r}")
    start = time.perf_counter() if started is None else started
    cancelled = cancel_check(cancel)
    objective = objective.for_model(model)
    crops = Crops(train, schedule.crop, schedule.seed)
    torch.manual_seed(schedule.seed)
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)
    optimiser = make_optimiser(model, schedule.lr, objective.film_lr_scale if model.conditioned else 1.0)
    decay = (
        torch.optim.lr_scheduler.StepLR(optimiser, schedule.lr_step, schedule.lr_gamma) if schedule.lr_step else None
    )
    peaks = [group["lr"] for group in optimiser.param_groups]

    def check(step: int) -> dict:
        values = validate(model, held, objective, measures) if held else {"loss": float("nan")}
        run.validations.append((step, values))
        if step == 0 or (held and rank(values) > rank(run.best)):
            run.best, run.best_step = values, step
            if keep == "best":
                best_state[0] = copy.deepcopy(model.state_dict())
        return values

    run = Run(steps=0, stopped="steps", best={}, best_step=0, crop=crops.crop, seconds=0.0)
    best_state = [copy.deepcopy(model.state_dict()) if keep == "best" else None]
    if first is not None:
        run.validations.append((0, first))
        run.best = first
    else:
        check(0)
    yield Progress(
        0,
        schedule.steps,
        time.perf_counter() - start,
        schedule.seconds,
        float("nan"),
        run.validations[0][1],
        run.best,
        0,
    )

    def report(step: int, lr: float, validation: dict | None, terms: dict | None = None) -> Progress:
        """The :class:`Progress` after ``step`` optimiser steps."""
        elapsed = time.perf_counter() - start
        return Progress(
            step,
            schedule.steps,
            elapsed,
            schedule.seconds,
            run.losses[-1],
            validation,
            run.best,
            run.best_step,
            lr,
            terms or {},
        )

    step = 0
    while True:
        elapsed = time.perf_counter() - start
        if cancelled():
            run.stopped = "cancelled"
            break
        if schedule.steps is not None and step >= schedule.steps:
            run.stopped = "steps"
            break
        if schedule.seconds is not None and elapsed >= schedule.seconds:
            if step == 0:
                raise ValueError(
                    f"a budget of {schedule.seconds:.3g} s is too small for one step: preparing the pairs "
                    f"and the first validation took {elapsed:.2g} s"
                )
            run.stopped = "time"
            break
        model.train()
        tick = time.perf_counter()
        if schedule.anneal:
            factor = schedule.lr_factor(step, elapsed)
            for group, peak in zip(optimiser.param_groups, peaks, strict=True):
                group["lr"] = peak * factor
        lr = optimiser.param_groups[0]["lr"]
        loss, terms = train_step(model, objective, crops, optimiser, schedule.batch_size, device)
        if decay is not None:
            decay.step()
        step += 1
        run.steps = step
        run.losses.append(loss.item())
        run.step_seconds.append(time.perf_counter() - tick)
        validation = None
        if schedule.validate_every and step % schedule.validate_every == 0:
            validation = check(step)
        yield report(step, lr, validation, {k: v.item() for k, v in terms.items()})

    if step and run.validations[-1][0] != step:  # score the last state too
        validation = check(step)
        yield report(step, lr, validation)
    model.to(memory_format=torch.contiguous_format)
    if keep == "best":
        model.load_state_dict(best_state[0])
    run.seconds = time.perf_counter() - start
    return run
