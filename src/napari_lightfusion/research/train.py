"""Training LightFusionNet on registered pairs (the recipe of the paper).

Adam, learning rate halved every 50 epochs, batch 4, random 64 x 64 crops
with flips, seeded. The validation split is carved out of ``train/`` by file
name (:func:`napari_lightfusion.research.data.is_validation`); ``test/`` is never read.
The result is a weight file plus a JSON sidecar that says how it was made
and holds its sha256, which :mod:`napari_lightfusion.weights` checks on load.

A network with ``ModelConfig.balance`` set is trained for the whole balance
range: each batch draws b (its default with probability
``TrainConfig.default_share``, else uniform in [0, 1]), conditions the
network on it and moves the loss's targets with it
(:func:`napari_lightfusion.losses.fusion_loss`).
"""

from __future__ import annotations

import csv
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..colour import grey
from ..losses import HOT_SPOT_MODES, LossWeights, fusion_loss
from ..model import LightFusionNet, ModelConfig
from ..weights import save_weights, sha256
from .data import Pair, is_validation, load_pairs, pair_names


@dataclass
class TrainConfig:
    """The recipe; defaults are the paper's except where a measurement said otherwise."""

    epochs: int = 200
    batch_size: int = 4
    crop: int = 64
    lr: float = 1e-3  # the paper says 1e-4; 1e-3 measured better (docs/ablations.md)
    lr_step: int = 50
    lr_gamma: float = 0.5
    seed: int = 0
    val_every: int = 25
    #: conditioned networks only: share of batches trained at the default b
    default_share: float = 0.25
    #: conditioned networks only: how b changes the loss (losses.BALANCE_MODES)
    balance_loss: str = "targets"
    #: "hotspot" and "split" balance losses: weight of the hot-spot term, in units of the SSIM weight
    hot_spot_weight: float = 1.0
    #: conditioned networks only: learning-rate factor of the balance conditioning
    #: (it starts at the identity and must catch up with the rest of the network)
    film_lr_scale: float = 10.0
    weights: LossWeights = field(default_factory=LossWeights)
    model: ModelConfig = field(default_factory=ModelConfig)
    #: a weight file to start from (e.g. a bundled preset); parameters it lacks
    #: (the balance conditioning of a paper network) keep their initialisation
    init: str | None = None


def pairs_to_tensor(pairs: list[Pair], hot_spots: bool = False) -> torch.Tensor:
    """Stack pairs as ``(N, 2, H, W)``: anatomical, then luminance of the other.

    With ``hot_spots``, a third channel holds each pair's functional hot spot
    (:func:`napari_lightfusion.metrics.hot_spot`, 1 inside, 0 outside), found
    on the whole image before any crop.
    """
    from ..metrics import hot_spot

    def planes(p: Pair):
        a, b = p.anatomical, grey(p.other)
        return [a, b, hot_spot(b * 255, a * 255)] if hot_spots else [a, b]

    stack = np.stack([np.stack(planes(p)) for p in pairs])
    return torch.from_numpy(stack.astype(np.float32))


def random_batch(images: torch.Tensor, size: int, crop: int, generator: torch.Generator):
    """Draw ``size`` random crops with random horizontal and vertical flips: (anatomical, functional[, more]).

    ``images`` is ``(N, K, H, W)``; one ``(size, 1, crop, crop)`` tensor per plane comes back.
    """
    n, _, h, w = images.shape
    idx = torch.randint(n, (size,), generator=generator)
    ys = torch.randint(h - crop + 1, (size,), generator=generator)
    xs = torch.randint(w - crop + 1, (size,), generator=generator)
    flips = torch.rand(size, 2, generator=generator) < 0.5
    crops = []
    for i, y, x, (fh, fv) in zip(idx.tolist(), ys.tolist(), xs.tolist(), flips.tolist()):
        c = images[i, :, y : y + crop, x : x + crop]
        if fh:
            c = c.flip(-1)
        if fv:
            c = c.flip(-2)
        crops.append(c)
    batch = torch.stack(crops)
    return batch.split(1, dim=1)


def draw_balance(config: TrainConfig, generator: torch.Generator) -> float | None:
    """The balance of one batch: None for the paper's network, else the default or uniform in [0, 1]."""
    default = config.model.balance
    if default is None:
        return None
    u, v = torch.rand(2, generator=generator).tolist()
    return float(default) if u < config.default_share else v


def start_from(model: LightFusionNet, path: str) -> str:
    """Load the parameters of weight file ``path`` that ``model`` has; return the file's sha256.

    The file is checked like any weight file (:func:`napari_lightfusion.weights.load_model`);
    it must be the same architecture but for the balance conditioning.
    """
    from ..weights import load_model

    source = load_model(Path(path))
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not k.startswith("film.") for k in missing):
        raise ValueError(f"weight file {path} does not fit this network: {(unexpected or missing)[0]}")
    return sha256(Path(path))


def source_commit() -> str:
    """The git commit of the package's code, "+dirty" if it has uncommitted changes; "unknown" outside a checkout."""
    here = Path(__file__).parent
    try:
        def git(*args):
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=here).stdout.strip()

        commit = git("rev-parse", "HEAD")
        return (commit + ("+dirty" if git("status", "--porcelain", "--", ".") else "")) if commit else "unknown"
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
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    names = pair_names(data_root, "train", dataset)
    train_names = [n for n in names if not is_validation(n)]
    val_names = [n for n in names if is_validation(n)]
    hot = config.model.balance is not None and config.balance_loss in HOT_SPOT_MODES
    train_images = pairs_to_tensor(load_pairs(data_root, "train", dataset, train_names), hot)
    val_images = pairs_to_tensor(load_pairs(data_root, "train", dataset, val_names), hot)

    train_images, val_images = train_images.to(device), val_images.to(device)
    model = LightFusionNet(config.model)
    init_sha = start_from(model, config.init) if config.init else None
    model = model.to(device)
    film = [p for n, p in model.named_parameters() if n.startswith("film.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("film.")]
    groups = [{"params": rest}] + ([{"params": film, "lr": config.lr * config.film_lr_scale}] if film else [])
    optimiser = torch.optim.Adam(groups, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, config.lr_step, config.lr_gamma)
    steps = max(1, len(train_names) // config.batch_size)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / f"{dataset}.log.csv"
    commit = source_commit()  # of the code that starts training, not of what is checked out when it ends
    start = time.perf_counter()
    epochs = range(config.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc=f"train {dataset}", unit="epoch")
    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["epoch", "lr", "loss", "intensity", "gradient", "ssim", "val_loss"])
        for epoch in epochs:
            model.train()
            sums = np.zeros(4)
            for _ in range(steps):
                a, b, *mask = random_batch(train_images, config.batch_size, config.crop, generator)
                balance = draw_balance(config, generator)
                fused = model(a, b, balance=balance)
                loss, terms = fusion_loss(
                    fused, a, b, config.weights, balance or 0.0, config.balance_loss, *mask,
                    hot_weight=config.hot_spot_weight,
                )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                sums += [loss.item(), *(terms[k].item() for k in ("intensity", "gradient", "ssim"))]
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            val = ""
            last = epoch == config.epochs - 1
            if len(val_images) and ((epoch + 1) % config.val_every == 0 or last):
                val = validation_loss(model, val_images, config.weights, config.balance_loss)
            log.writerow([epoch + 1, lr, *(sums / steps).round(6).tolist(), val])
            log_file.flush()
            if progress:
                epochs.set_postfix(loss=f"{sums[0] / steps:.3f}")
    wall = time.perf_counter() - start
    model = model.cpu()
    val_images = val_images.cpu()

    weight_path = out / f"{dataset}.pt"
    sidecar = {
        "dataset": dataset,
        "model": config.model.to_dict(),
        "train": {k: v for k, v in asdict(config).items() if k not in ("weights", "model")},
        "loss_weights": config.weights.to_dict(),
        "train_pairs": len(train_names),
        "validation_pairs": val_names,
        "final_validation_loss": validation_loss(model, val_images, config.weights, config.balance_loss)
        if len(val_images)
        else None,
        "init_sha256": init_sha,
        "source_commit": commit,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "train_seconds": round(wall, 1),
    }
    return save_weights(model, weight_path, sidecar)


@torch.no_grad()
def validation_loss(model: LightFusionNet, images: torch.Tensor, weights: LossWeights, mode: str = "targets") -> float:
    """Total loss on whole validation images, in evaluation mode, at the network's default balance."""
    model.eval()
    a, b, *mask = images.split(1, dim=1)
    balance = model.config.balance or 0.0
    loss, _ = fusion_loss(model(a, b), a, b, weights, balance, mode, *mask)
    return round(loss.item(), 6)
