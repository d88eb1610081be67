"""Training LightFusionNet on the atlas pairs (``lightfusion train``): a recipe over the training core.

Adam, the learning rate halved every 50 epochs (or annealed), batch 4, random 64 x 64
crops with flips, seeded: :func:`napari_lightfusion.training.train_steps`
runs it, with the objective of :class:`TrainConfig` (the loss weights, and
for a balance-conditioned network how b is drawn and shapes the loss,
:class:`napari_lightfusion.objective.Objective`). The validation split is
carved out of ``train/`` by file name
(:func:`napari_lightfusion.pair_data.is_validation`); ``test/`` is never
read. The result is a weight file (the last state, as the paper trains)
plus a JSON sidecar that says how it was made and holds its sha256, which
:mod:`napari_lightfusion.weights` checks on load, and a per-epoch loss log.
"""

from __future__ import annotations

import csv
import math
import subprocess
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..generators import Steps
from ..losses import LossWeights
from ..model import LightFusionNet, ModelConfig
from ..objective import Objective, with_hot_spots
from ..pair_data import is_validation, load_pairs, pair_names, planes
from ..training import Schedule, lower_loss, train_steps
from ..weights import save_weights, sha256


@dataclass
class TrainConfig:
    """The recipe; defaults are the paper's except where a measurement said otherwise."""

    epochs: int = 200
    batch_size: int = 4
    crop: int = 64
    lr: float = 1e-3  # the paper says 1e-4; 1e-3 measured better (docs/ablations.md)
    lr_step: int = 50
    lr_gamma: float = 0.5
    #: the learning rate falls along a half cosine to 0 over the epochs instead of the step schedule
    anneal: bool = False
    seed: int = 0
    val_every: int = 25
    #: conditioned networks only: share of batches trained at the default b
    default_share: float = Objective.default_share
    #: conditioned networks only: how b changes the loss (losses.BALANCE_MODES)
    balance_loss: str = Objective.balance_loss
    #: "hotspot" and "split" balance losses: weight of the hot-spot term, in units of the SSIM weight
    hot_spot_weight: float = Objective.hot_spot_weight
    #: conditioned networks only: weight of the middle term (losses.middle_loss; 0: off),
    #: its margin over the pixel average and its band around b = 0.5
    middle_weight: float = Objective.middle_weight
    middle_margin: float = Objective.middle_margin
    middle_band: float = Objective.middle_band
    #: conditioned networks only: weight of the ceiling term (losses.ceiling_loss; 0: off), in the
    #: middle term's band; each training pair's hot-spot ceiling is computed first, ``ceiling_steps`` steps
    ceiling_weight: float = Objective.ceiling_weight
    ceiling_steps: int = 100
    #: a copy of every training pair with its MRI raised to a power drawn log-uniform in
    #: [1 / mri_gamma, mri_gamma] (seeded by the file name): MRIs darker or brighter than the
    #: atlas's training ones, as the test pairs' are in the hot spots (docs/balance.md); None: no copies
    mri_gamma: float | None = None
    #: conditioned networks only: learning-rate factor of the balance conditioning
    #: (it starts at the identity and must catch up with the rest of the network)
    film_lr_scale: float = Objective.film_lr_scale
    weights: LossWeights = field(default_factory=LossWeights)
    model: ModelConfig = field(default_factory=ModelConfig)
    #: with ``init``: train only the balance layer and the output head (:func:`freeze_features`)
    freeze_features: bool = False
    #: a weight file to start from (e.g. a bundled preset); parameters it lacks
    #: (the balance conditioning of a paper network) keep their initialisation,
    #: and a mixing head other than its own starts at the even mixture
    init: str | None = None

    def objective(self) -> Objective:
        """The loss this recipe trains with."""
        return Objective(
            weights=self.weights,
            balance=self.model.balance,
            balance_loss=self.balance_loss,
            default_share=self.default_share,
            hot_spot_weight=self.hot_spot_weight,
            middle_weight=self.middle_weight,
            middle_margin=self.middle_margin,
            middle_band=self.middle_band,
            ceiling_weight=self.ceiling_weight,
            film_lr_scale=self.film_lr_scale,
        )


def start_from(model: LightFusionNet, path: str) -> str:
    """Load the parameters of weight file ``path`` that ``model`` has; return the file's sha256.

    The file is checked like any weight file (:func:`napari_lightfusion.weights.load_model`);
    it must be the same architecture but for the balance conditioning and the
    output head: where ``model`` has another mixing head ("blend" or "mix")
    than the file, the file's features are kept and the head starts at the
    even mixture (:func:`napari_lightfusion.finetune_choice.with_output`), as
    a fine-tune onto another pair's objective does.
    """
    from ..finetune_choice import with_output
    from ..model import MIXING_OUTPUTS
    from ..weights import load_model

    source = load_model(Path(path))
    output = model.config.output
    if source.config.output != output and output in MIXING_OUTPUTS:
        source = with_output(source, output)
    try:
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    except RuntimeError as error:  # a parameter of another shape (width, reduction)
        raise ValueError(
            f"weight file {path} does not fit this network: {str(error).splitlines()[-1].strip()}"
        ) from None
    if unexpected or any(not k.startswith("film.") for k in missing):
        raise ValueError(f"weight file {path} does not fit this network: {(unexpected or missing)[0]}")
    return sha256(Path(path))


def freeze_features(model: LightFusionNet) -> int:
    """Leave only the balance layer (FiLM) and the output head (the decoder's last layer) trainable.

    For retraining a preset's balance behaviour without moving the features
    that fine-tuning onto other pairs starts from (docs/balance.md, "The
    middle of the slider"). Returns the number of parameters left trainable.
    """
    head = f"decoder.{len(model.decoder) - 1}."
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(("film.", head)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mri_gamma_copies(parts: Sequence[np.ndarray], names: Sequence[str], gamma: float) -> list[np.ndarray]:
    """Copies of training arrays ``(2, h, w)`` with the MRI (plane 0) raised to a power in [1 / gamma, gamma].

    The power is log-uniform, drawn from a generator seeded by the pair's
    file name, so a pair's copy is the same in every run. An intensity
    augmentation: the hot spots of the atlas's PET-MRI test MRIs are darker
    (median 0.33) than those of all but 1 % of its training MRIs (median
    0.61), and where the middle of the balance range lands depends on it.
    It did not move the test figures: half of those MRIs are T2-weighted,
    which no power of a T1 image imitates (docs/balance.md).
    """
    if not gamma >= 1.0:
        raise ValueError(f"the MRI gamma range must be at least 1, not {gamma}")
    bound = math.log(gamma)
    copies = []
    for part, name in zip(parts, names, strict=True):
        power = math.exp(np.random.default_rng(zlib.crc32(name.encode())).uniform(-bound, bound))
        copies.append(np.stack([part[0] ** power, part[1]]).astype(np.float32))
    return copies


def with_ceilings(parts: Sequence[np.ndarray], steps: int, progress: bool = False) -> list[np.ndarray]:
    """Training arrays with a last plane: each pair's hot-spot ceiling (:func:`.hot_spot_ceiling.pair_ceilings`).

    ``progress`` shows a bar over the pairs (about 12 min for 478 PET-MRI
    pairs at 100 steps on two CPU threads).
    """
    from .hot_spot_ceiling import pair_ceilings

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(parts), desc=f"hot-spot ceilings, {steps} steps each", unit="pair")
    try:
        ceilings = pair_ceilings(parts, steps=steps, done=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    return [np.concatenate([part, c[None]]) for part, c in zip(parts, ceilings)]


def source_commit() -> str:
    """The git commit of the package's code, "+dirty" if it has uncommitted changes; "unknown" outside a checkout."""
    here = Path(__file__).parent
    try:

        def git(*args):
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=here).stdout.strip()

        commit = git("rev-parse", "HEAD")
        return (commit + ("+dirty" if git("status", "--porcelain", "--", "..") else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def train(
    data_root: Path,
    dataset: str,
    out: Path,
    config: TrainConfig | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> dict:
    """Train on ``data_root/train/<dataset>`` and write weights, sidecar and loss log to ``out``.

    Returns the sidecar dictionary. Repeatable: the same seed and data give
    the same weights on the same machine, device and thread count.
    ``device`` is a torch device name ("cpu", "cuda", "cuda:1", "mps"); the
    crops are drawn on the CPU and moved there, the weights saved from the CPU.
    ``config`` defaults to the paper's recipe (:class:`TrainConfig`).
    """
    config = TrainConfig() if config is None else config
    objective = config.objective()
    commit = source_commit()  # of the code that starts training, not of what is checked out when it ends
    torch.manual_seed(config.seed)
    names = pair_names(data_root, "train", dataset)
    train_names = [n for n in names if not is_validation(n)]
    val_names = [n for n in names if is_validation(n)]
    train_images = planes(load_pairs(data_root, "train", dataset, train_names))
    val_images = planes(load_pairs(data_root, "train", dataset, val_names))
    if config.mri_gamma is not None:
        train_images = train_images + mri_gamma_copies(train_images, train_names, config.mri_gamma)
    if objective.needs_hot_spots:
        train_images, val_images = with_hot_spots(train_images), with_hot_spots(val_images)

    model = LightFusionNet(config.model)
    init_sha = start_from(model, config.init) if config.init else None
    if config.freeze_features:
        if not (config.init and model.conditioned):
            raise ValueError(
                "freezing the features needs a balance-conditioned network and a weight file to start from"
            )
        freeze_features(model)
    model = model.to(device)
    if objective.needs_ceilings:  # after every check above: this takes minutes
        train_images = with_ceilings(train_images, config.ceiling_steps, progress)
    per_epoch = max(1, len(train_names) // config.batch_size)
    schedule = Schedule(
        steps=config.epochs * per_epoch,
        batch_size=config.batch_size,
        crop=config.crop,
        lr=config.lr,
        lr_step=None if config.anneal else config.lr_step * per_epoch,
        lr_gamma=config.lr_gamma,
        anneal=config.anneal,
        validate_every=config.val_every * per_epoch,
        seed=config.seed,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{dataset}.log.csv"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.epochs, desc=f"train {dataset}", unit="epoch")
    steps = Steps(
        train_steps(
            model,
            objective,
            train_images,
            val_images,
            schedule,
            device=device,
            keep="last",
            rank=lower_loss,
            measures=(),
        )
    )
    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["epoch", "lr", "loss", "intensity", "gradient", "ssim", "val_loss"])

        def write(row):
            log.writerow(row)
            log_file.flush()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row[2]:.3f}")

        sums, pending = np.zeros(4), None
        for update in steps:
            if not update.terms:  # the start, or the validation after a last step that was not validated
                if pending is not None and update.validation is not None:
                    write([*pending[:-1], round(update.validation["loss"], 6)])
                    pending = None
                continue
            sums += [update.loss, *(update.terms[k] for k in ("intensity", "gradient", "ssim"))]
            if update.step % per_epoch:
                continue
            epoch = update.step // per_epoch
            row = [epoch, update.lr, *(sums / per_epoch).round(6).tolist(), ""]
            sums = np.zeros(4)
            if update.validation is not None:
                row[-1] = round(update.validation["loss"], 6)
            elif epoch == config.epochs and val_images:
                pending = row  # validated by the next update
                continue
            write(row)
    if bar is not None:
        bar.close()
    run = steps.value
    model = model.cpu()
    final = run.validations[-1][1]["loss"] if val_images else None

    sidecar = {
        "dataset": dataset,
        "model": config.model.to_dict(),
        "train": {k: v for k, v in asdict(config).items() if k not in ("weights", "model")},
        "loss_weights": config.weights.to_dict(),
        "train_pairs": len(train_names),
        "validation_pairs": val_names,
        "final_validation_loss": None if final is None else round(final, 6),
        "init_sha256": init_sha,
        "source_commit": commit,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "train_seconds": round(run.seconds, 1),
    }
    return save_weights(model, out / f"{dataset}.pt", sidecar)
