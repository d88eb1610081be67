"""Fine-tuning a preset on the user's own registered pairs, in minutes on a CPU.

The network's losses need no labels (:mod:`napari_lightfusion.losses`), and
it has about 3k parameters, so it adapts to a new pair of modalities (GFP
and phase contrast, PET and CT, another scanner) from a few of the user's
own images. :func:`finetune` starts from a preset (bundled, custom or a
weight file), trains on random crops of the pairs and returns the best
weights by validation; the command line (``lightfusion finetune``) and the
widget's fine-tuning section both call it.

* Inputs are normalised by :func:`napari_lightfusion.inputs.prepare_pair`,
  exactly as :func:`napari_lightfusion.fuse` does, so what is learned is
  what is fused. A pair may be ``(a, b)`` arrays (any shape, dtype and
  channel layout ``fuse`` takes, 2D or stacks) or an already
  :class:`~napari_lightfusion.inputs.PreparedPair` (the widget passes the
  layers' contrast limits that way).
* Part of every pair is held out (:func:`split_pair`): every fifth slice of
  a stack of five or more slices, otherwise an edge band of each slice.
  Validation is the training loss and Qabf, SSIM and VIF
  (:mod:`napari_lightfusion.metrics`) on the held-out parts, before
  training, every ``validate_every`` steps and at the end.
* The recipe (``docs/design.md``, "The fine-tuning recipe"): Adam 2e-3,
  batch 4, 64 x 64 crops with random flips, the base's loss weights (its
  sidecar's ``loss_weights``). The step rate matters more than the batch
  size.
* It stops after ``steps`` steps or ``minutes`` of wall time (whichever
  comes first), or when cancelled; the weights kept are those with the
  lowest validation loss seen (the base's own if nothing beat them).
* Seeded: the same pairs, seed and step count give the same weights on the
  same machine and thread count (on the CPU; CUDA convolutions may differ
  in the last bits).
* A network conditioned on a balance (``ModelConfig.balance``) keeps its
  configuration and is fine-tuned as it was trained (``research/train.py``,
  with the settings its sidecar records: :func:`base_conditioning`): each
  batch draws b (the default b for ``default_share`` of the batches, else
  uniform in [0, 1]), conditions the network on it and shapes the loss
  with it (``balance_loss``); the balance layer learns ``film_lr_scale``
  times faster. Validation is at the default b.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .engine import resolve_device
from .generators import run_to_end
from .inputs import PreparedPair, prepare_pair
from .losses import HOT_SPOT_MODES, LossWeights, fusion_loss
from .messages import first_line
from .model import LightFusionNet
from .weights import model_for, preset_path, read_sidecar, sha256

#: Validation metrics reported (besides the loss), from :mod:`napari_lightfusion.metrics`.
VALIDATION_METRICS = ("Qabf", "SSIM", "VIF")

#: Smallest edge (pixels) of a slice that can be split into training and held-out parts.
MIN_EDGE = 32


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune; the defaults are the measured recipe."""

    steps: int | None = None  # stop after this many optimiser steps ...
    minutes: float | None = 2.0  # ... or this much wall time, whichever comes first
    batch_size: int = 4
    crop: int = 64  # crop edge; smaller when the training parts are smaller
    lr: float = 2e-3
    seed: int = 0
    validate_every: int = 50  # steps between validations
    holdout: float = 0.2  # share of each pair held out for validation
    max_validation: int = 16  # held-out images scored at most (evenly chosen)
    loss_weights: LossWeights | None = None  # None: the base's (its sidecar), else Eq. 5

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


@dataclass(frozen=True)
class Progress:
    """One report from :func:`finetune_steps`: after ``step`` optimiser steps.

    ``loss`` is the training loss of that step (nan at step 0);
    ``validation`` holds ``loss``, Qabf, SSIM and VIF on the held-out parts
    when this step was validated, else ``None``; ``best`` is the best
    validation so far, reached at ``best_step``.
    """

    step: int
    steps: int | None
    seconds: float
    budget: float | None
    loss: float
    validation: dict | None
    best: dict
    best_step: int

    @property
    def fraction(self) -> float:
        """How much of the step count or time budget is used, in [0, 1]."""
        parts = []
        if self.steps:
            parts.append(self.step / self.steps)
        if self.budget:
            parts.append(self.seconds / self.budget)
        return float(min(1.0, max(parts, default=0.0)))


@dataclass
class FinetuneResult:
    """The best weights found and how they were found.

    ``model`` (on the CPU, in evaluation mode) holds the weights with the
    lowest validation loss; ``before`` and ``after`` are the validations of
    the base and of ``model``. ``stopped`` says why training ended:
    "steps", "time" or "cancelled". ``seconds`` is the wall time of the
    whole call, ``cpu_seconds`` the process's CPU time over it (all threads).
    """

    model: LightFusionNet
    base: str
    base_sha256: str
    steps: int
    best_step: int
    seconds: float
    cpu_seconds: float
    stopped: str
    before: dict
    after: dict
    device: str
    config: FinetuneConfig
    loss_weights: LossWeights
    crop: int
    train_images: int
    validation_images: int
    losses: list[float] = field(default_factory=list)
    validations: list[tuple[int, dict]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    conditioning: Conditioning | None = None

    @property
    def median_step_ms(self) -> float:
        """Median wall time of one training step (batch, forward, backward, update), ms; nan without steps."""
        return float(np.median(self.step_seconds) * 1000) if self.step_seconds else float("nan")

    @property
    def cancelled(self) -> bool:
        return self.stopped == "cancelled"

    def sidecar(self, **extra) -> dict:
        """What to store beside the weights (:func:`napari_lightfusion.weights.save_weights`)."""
        train = {k: v for k, v in asdict(self.config).items() if k != "loss_weights"}
        return {
            "dataset": None,
            "finetune": {
                "base": self.base,
                "base_sha256": self.base_sha256,
                **train,
                "steps_taken": self.steps,
                "best_step": self.best_step,
                "stopped": self.stopped,
                "crop_used": self.crop,
                "conditioning": None if self.conditioning is None else asdict(self.conditioning),
                "median_step_ms": None if not self.step_seconds else round(self.median_step_ms, 2),
                "train_images": self.train_images,
                "validation_images": self.validation_images,
                "device": self.device,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            },
            "train_seconds": round(self.seconds, 1),
            "cpu_seconds": round(self.cpu_seconds, 1),
            "loss_weights": self.loss_weights.to_dict(),
            "validation": {"before": _jsonable(self.before), "after": _jsonable(self.after)},
            **extra,
        }


def _jsonable(values: dict) -> dict:
    """Metric dict with nan as None (JSON has no nan)."""
    return {k: (None if not np.isfinite(v) else round(float(v), 6)) for k, v in values.items()}


def _prepare(pair) -> PreparedPair:
    if isinstance(pair, PreparedPair):
        return pair
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise ValueError("each pair must be two images (anatomical, functional)") from None
    return prepare_pair(a, b)


def _band_edge(anatomical: np.ndarray, functional: np.ndarray, axis: int, size: int) -> str:
    """Which end ("start" or "end") of ``axis`` has more edges in a band of ``size``: the one to hold out."""
    energy = sum(np.abs(np.diff(image, axis=axis)) for image in (anatomical, functional))
    index = [slice(None), slice(None)]
    index[axis] = slice(0, size)
    start = float(energy[tuple(index)].sum())
    index[axis] = slice(-size, None)
    end = float(energy[tuple(index)].sum())
    return "start" if start > end else "end"


def split_pair(pair: PreparedPair, holdout: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training and held-out parts of one prepared pair, each a list of ``(2, h, w)`` arrays.

    A stack of at least ``round(1 / holdout)`` slices keeps every that-many-th
    slice (the middle one of each group) for validation. Otherwise every
    slice gives up a band of ``holdout`` of its longer side (at least 16
    pixels, at most half), at the end with more edges in it. Raises
    ``ValueError`` for slices smaller than ``MIN_EDGE`` pixels.
    """
    both = np.stack([pair.anatomical, pair.functional], axis=1)  # (Z, 2, H, W)
    z, _, h, w = both.shape
    if min(h, w) < MIN_EDGE:
        raise ValueError(f"a {h} x {w} image is too small to fine-tune on; it needs at least {MIN_EDGE} x {MIN_EDGE}")
    period = max(2, round(1.0 / holdout))
    if z >= period:
        held = {i for i in range(z) if i % period == period // 2}
        return [both[i] for i in range(z) if i not in held], [both[i] for i in sorted(held)]
    axis = 0 if h >= w else 1
    length = (h, w)[axis]
    size = min(length // 2, max(round(holdout * length), 16))
    train, validation = [], []
    for image in both:
        keep = [slice(None)] * 3
        held = [slice(None)] * 3
        if _band_edge(image[0], image[1], axis, size) == "start":
            held[axis + 1], keep[axis + 1] = slice(0, size), slice(size, None)
        else:
            held[axis + 1], keep[axis + 1] = slice(length - size, None), slice(0, length - size)
        train.append(image[tuple(keep)])
        validation.append(image[tuple(held)])
    return train, validation


@dataclass(frozen=True)
class Conditioning:
    """How a balance-conditioned network was trained (its sidecar's ``train``), so fine-tuning does the same."""

    default: float  # the network's default b
    default_share: float = 0.25  # share of batches at the default b; the rest draw b uniformly
    balance_loss: str = "targets"  # how b shapes the loss (napari_lightfusion.losses.fusion_loss mode)
    film_lr_scale: float = 1.0  # learning-rate factor of the balance (FiLM) layer
    hot_spot_weight: float = 1.0  # weight of the hot-spot term ("hotspot" and "split" losses)

    def draw(self, rng: np.random.Generator) -> float:
        """The balance of one training batch."""
        return self.default if rng.random() < self.default_share else float(rng.random())

    def loss_options(self, balance: float, hot=None) -> dict:
        """Keyword arguments of :func:`fusion_loss` for this balance (and hot-spot mask)."""
        options = {"balance": balance}
        if self.balance_loss != "targets":
            options["mode"] = self.balance_loss
        if self.needs_hot_spots:
            options["hot"], options["hot_weight"] = hot, self.hot_spot_weight
        return options

    @property
    def needs_hot_spots(self) -> bool:
        """Whether the loss looks at the functional hot spot (its crops carry the mask)."""
        return self.balance_loss in HOT_SPOT_MODES


def base_conditioning(model: LightFusionNet, path) -> Conditioning | None:
    """The balance training settings of a conditioned base (from its sidecar); None for the paper's network."""
    if not model.conditioned:
        return None
    train = read_sidecar(path).get("train") or {}
    keys = ("default_share", "balance_loss", "film_lr_scale", "hot_spot_weight")
    known = {k: train[k] for k in keys if train.get(k) is not None}
    return Conditioning(default=float(model.config.balance), **known)


def with_hot_spots(parts: list[np.ndarray]) -> list[np.ndarray]:
    """``(2, h, w)`` parts with a third channel: the functional hot spot (for the "hotspot" and "split" losses)."""
    return [
        np.concatenate([part, metrics.hot_spot(part[1] * 255.0, part[0] * 255.0)[None].astype(np.float32)])
        for part in parts
    ]


def base_loss_weights(path) -> LossWeights:
    """The loss weights a weight file was trained with (its sidecar), else Eq. 5's."""
    stored = read_sidecar(path).get("loss_weights")
    return LossWeights(**stored) if stored else LossWeights()


class _Crops:
    """Random crops with random flips from training images of different sizes, seeded."""

    def __init__(self, images: list[np.ndarray], crop: int, seed: int):
        self.images = images
        self.crop = crop
        area = np.array([(im.shape[1] - crop + 1) * (im.shape[2] - crop + 1) for im in images], np.float64)
        self.p = area / area.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
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
        return batch[:, :1], batch[:, 1:2], (batch[:, 2:] if batch.shape[1] > 2 else None)


@torch.no_grad()
def validate(
    model: LightFusionNet, images: Sequence[np.ndarray], weights: LossWeights, device,
    conditioning: Conditioning | None = None,
) -> dict:
    """Mean validation loss, Qabf, SSIM and VIF of ``model`` on ``(2, h, w)`` held-out images.

    The metrics take the images on a 0..255 scale as :mod:`metrics` expects;
    nan values (an image without edges) are left out of the means. A
    conditioned network is validated at its default balance.
    """
    model.eval()
    device = torch.device(device)
    scores = {name: [] for name in ("loss", *VALIDATION_METRICS)}
    for image in images:
        pair = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[:, None].to(device)
        a, b, hot = pair[:1], pair[1:2], pair[2:] if len(pair) > 2 else None
        if conditioning is None:
            fused = model(a, b)
            loss, _ = fusion_loss(fused, a, b, weights)
        else:
            fused = model(a, b, balance=conditioning.default)
            loss, _ = fusion_loss(fused, a, b, weights, **conditioning.loss_options(conditioning.default, hot))
        f = fused[0, 0].float().cpu().numpy().astype(np.float64) * 255.0
        sa, sb = image[0].astype(np.float64) * 255.0, image[1].astype(np.float64) * 255.0
        scores["loss"].append(float(loss))
        scores["Qabf"].append(metrics.qabf(f, sa, sb))
        scores["SSIM"].append(metrics.ssim(f, sa, sb))
        scores["VIF"].append(metrics.vif(f, sa, sb))
    out = {}
    for name, values in scores.items():
        finite = [v for v in values if np.isfinite(v)]
        out[name] = float(np.mean(finite)) if finite else float("nan")
    return out


def _evenly(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spaced, in order (deterministic)."""
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _cancel_check(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ValueError("cancel must be a threading.Event or a function returning True to stop")


def finetune_steps(
    pairs: Iterable,
    base: str = "PET-MRI",
    *,
    config: FinetuneConfig | None = None,
    device: str = "auto",
    cancel: threading.Event | Callable[[], bool] | None = None,
) -> Generator[Progress, None, FinetuneResult]:
    """Fine-tune step by step: yields a :class:`Progress` per step, returns the :class:`FinetuneResult`.

    Step 0 is the validation of the base. Arguments as for :func:`finetune`.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    config = config or FinetuneConfig()
    cancelled = _cancel_check(cancel)
    device = resolve_device(device)
    base_path = preset_path(base)
    model = copy.deepcopy(model_for(weights=base_path)).to(device)  # never train the shared cached model
    weights = config.loss_weights or base_loss_weights(base_path)

    prepared = [_prepare(pair) for pair in pairs]
    if not prepared:
        raise ValueError("no image pairs to fine-tune on")
    train, held = [], []
    for pair in prepared:
        t, v = split_pair(pair, config.holdout)
        train += t
        held += v
    held = _evenly(held, config.max_validation)
    conditioning = base_conditioning(model, base_path)
    if conditioning is not None and conditioning.needs_hot_spots:
        train, held = with_hot_spots(train), with_hot_spots(held)
    crop = min(config.crop, *(min(im.shape[1:]) for im in train))
    crops = _Crops(train, crop, config.seed)
    torch.manual_seed(config.seed)
    film = [p for n, p in model.named_parameters() if n.startswith("film.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("film.")]
    scale = conditioning.film_lr_scale if conditioning is not None else 1.0
    optimiser = torch.optim.Adam([{"params": rest}] + ([{"params": film, "lr": config.lr * scale}] if film else []),
                                 lr=config.lr)
    budget = None if config.minutes is None else 60.0 * config.minutes

    before = validate(model, held, weights, device, conditioning)
    best, best_step = before, 0
    best_state = copy.deepcopy(model.state_dict())
    validations = [(0, before)]
    losses: list[float] = []
    step_seconds: list[float] = []
    elapsed = time.perf_counter() - start
    yield Progress(0, config.steps, elapsed, budget, float("nan"), before, best, 0)

    step, stopped = 0, "steps"
    while True:
        elapsed = time.perf_counter() - start
        if cancelled():
            stopped = "cancelled"
            break
        if config.steps is not None and step >= config.steps:
            stopped = "steps"
            break
        if budget is not None and elapsed >= budget:
            if step == 0:
                raise ValueError(
                    f"a budget of {budget:.3g} s is too small for one step: preparing the pairs "
                    f"and the first validation took {elapsed:.2g} s"
                )
            stopped = "time"
            break
        model.train()
        tick = time.perf_counter()
        a, b, hot = crops.batch(config.batch_size, device)
        if conditioning is None:
            loss, _ = fusion_loss(model(a, b), a, b, weights)
        else:
            balance = conditioning.draw(crops.rng)
            options = conditioning.loss_options(balance, hot)
            loss, _ = fusion_loss(model(a, b, balance=balance), a, b, weights, **options)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(loss.item())
        step_seconds.append(time.perf_counter() - tick)
        validation = None
        if step % config.validate_every == 0:
            validation = validate(model, held, weights, device, conditioning)
            validations.append((step, validation))
            if validation["loss"] < best["loss"]:
                best, best_step = validation, step
                best_state = copy.deepcopy(model.state_dict())
        elapsed = time.perf_counter() - start
        yield Progress(step, config.steps, elapsed, budget, losses[-1], validation, best, best_step)

    if step and validations[-1][0] != step:  # score the last weights too
        validation = validate(model, held, weights, device, conditioning)
        validations.append((step, validation))
        if validation["loss"] < best["loss"]:
            best, best_step = validation, step
            best_state = copy.deepcopy(model.state_dict())
        yield Progress(step, config.steps, time.perf_counter() - start, budget, losses[-1], validation, best, best_step)

    model.load_state_dict(best_state)
    return FinetuneResult(
        model=model.cpu().eval(),
        base=str(base),
        base_sha256=sha256(base_path),
        steps=step,
        best_step=best_step,
        seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start,
        stopped=stopped,
        before=before,
        after=best,
        device=str(device),
        config=config,
        loss_weights=weights,
        crop=crop,
        train_images=len(train),
        validation_images=len(held),
        losses=losses,
        validations=validations,
        step_seconds=step_seconds,
        conditioning=conditioning,
    )


def finetune(
    pairs: Iterable,
    base: str = "PET-MRI",
    *,
    config: FinetuneConfig | None = None,
    device: str = "auto",
    progress: Callable[[Progress], object] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    **options,
) -> FinetuneResult:
    """Fine-tune ``base`` on ``pairs`` and return the best weights (see the module docstring).

    ``pairs``: ``(anatomical, functional)`` array pairs as :func:`fuse`
    takes them, or :class:`~napari_lightfusion.inputs.PreparedPair`.
    ``base``: a bundled or custom preset name or a weight file.
    ``config`` or keyword ``options`` (``steps=200, minutes=None, seed=1``,
    any :class:`FinetuneConfig` field) set the recipe. ``device``: "auto"
    (CUDA, then MPS, then CPU), "cpu", "cuda" or "mps". ``progress`` is
    called with every :class:`Progress`; ``cancel`` (an event or a function
    returning True) stops at the next step, keeping the best weights so far.
    Raises ``ValueError`` with one line for inputs it cannot use.
    """
    config = replace(config or FinetuneConfig(), **options)
    return run_to_end(finetune_steps(pairs, base, config=config, device=device, cancel=cancel), progress)


# --------------------------------------------------------------------------
# pairs from files (the command line)

#: Functional folders of the Harvard layout, next to ``MRI/``.
FUNCTIONAL_FOLDERS = ("CT", "PET", "SPECT")

#: Image files a folder of pairs may hold.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image_file(path) -> np.ndarray:
    """An image or stack from a PNG/TIFF/... file, or a one-line ``ValueError``."""
    from skimage.io import imread

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file {path}")
    try:
        return np.asarray(imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault: say so in one line
        raise ValueError(f"cannot read {path} as an image: {first_line(exc)}") from None


def parse_pair(text: str) -> tuple[str, str]:
    """``"ANATOMICAL:FUNCTIONAL"`` -> the two paths (a Windows drive letter's colon is kept)."""
    cuts = [i for i, ch in enumerate(text) if ch == ":" and 0 < i < len(text) - 1]
    cuts = [i for i in cuts if not (text[i - 1].isalpha() and (i == 1 or text[i - 2] == ":") and text[i + 1] in "\\/")]
    existing = [i for i in cuts if Path(text[:i]).is_file() and Path(text[i + 1 :]).is_file()]
    chosen = existing or cuts
    if len(chosen) != 1:
        raise ValueError(f"give a pair as ANATOMICAL:FUNCTIONAL (two image files), not {text!r}")
    return text[: chosen[0]], text[chosen[0] + 1 :]


def folder_pairs(folder) -> list[tuple[str, str]]:
    """Pairs of a folder in the Harvard layout: ``MRI/NAME`` with ``CT|PET|SPECT/NAME``.

    Raises a one-line ``ValueError`` when the folder is missing, has no or
    several functional folders, or no file names in common.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"no folder {folder}")
    layout = f"expected {folder}/MRI/* with {folder}/CT, PET or SPECT/* of the same names"
    functional = [folder / name for name in FUNCTIONAL_FOLDERS if (folder / name).is_dir()]
    if not (folder / "MRI").is_dir() or len(functional) != 1:
        raise ValueError(f"{folder} is not a folder of pairs: {layout}")

    def images(sub):
        return {p.name for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}

    names = sorted(images(folder / "MRI") & images(functional[0]))
    if not names:
        raise ValueError(f"no image pairs in {folder}: {layout}")
    return [(str(folder / "MRI" / n), str(functional[0] / n)) for n in names]


def read_pairs(paths: Sequence[tuple[str, str]]) -> list[PreparedPair]:
    """Read and prepare pairs of files; a pair that ``fuse`` would refuse is a one-line error naming it."""
    prepared = []
    for anatomical, functional in paths:
        a, b = read_image_file(anatomical), read_image_file(functional)
        try:
            prepared.append(prepare_pair(a, b))
        except ValueError as exc:
            raise ValueError(f"{anatomical} and {functional}: {exc}") from None
    return prepared
