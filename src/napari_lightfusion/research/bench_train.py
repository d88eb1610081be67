"""``lightfusion-research bench-train``: how long one training step takes here, and what its layout and SSIM cost.

A step of the training core (:func:`napari_lightfusion.training.train_step`:
a batch of crops, the forward pass, the loss, the backward pass, Adam) as
fine-tuning runs it: a preset's network, the objective of the pair's preset
at its default b, batch 4, 96 x 96 crops of the pair's training images.
Timed in one process, the variants taking turns block by block
(:func:`~napari_lightfusion.research.timing.blocks_ms`), so the ratios of
one run hold on a noisy machine:

* the step as the core runs it on the CPU (channels-last layout) and in
  the usual (contiguous) layout, same weights, same crops;
* the SSIM term alone, forward and backward on one batch: as the core
  computes it (:func:`napari_lightfusion.losses.ssim_loss`: separable
  passes, the fused image's statistics shared by both sources) and the 2D
  11 x 11 Gaussian window of Wang et al. applied to each pair of images,
  as the training did before 2026-12-07 (the same values to 1e-6).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from ..losses import gaussian_1d, ssim_loss
from ..objective import objective_of, with_hot_spots
from ..pair_data import as_prepared, folder_pairs, read_pairs, split_prepared
from ..training import Crops, make_optimiser, train_step
from ..weights import model_for, preset_path, read_sidecar
from .bench_table import cpu_text
from .timing import blocks_ms


def _ssim_2d(x, y):
    """Mean SSIM under the 2D 11 x 11 Gaussian window, one convolution per statistic: the reference."""
    g = gaussian_1d().to(x)
    window = torch.outer(g, g)[None, None]
    c1, c2 = 0.01**2, 0.03**2

    def blur(t):
        return F.conv2d(t, window)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))).mean()


def bench_train(
    data_root: Path,
    dataset: str = "CT-MRI",
    base: str | None = None,
    *,
    crop: int = 96,
    batch_size: int = 4,
    steps: int = 150,
    block: int = 10,
    threads: int = 2,
) -> dict:
    """Median milliseconds of the step in both layouts and of the SSIM term both ways (module docstring)."""
    torch.set_num_threads(threads)
    pairs = read_pairs(folder_pairs(Path(data_root) / "train" / dataset))
    train, _ = split_prepared([as_prepared(pair) for pair in pairs])
    train = with_hot_spots(train)
    objective = objective_of(read_sidecar(preset_path(dataset)))
    base = base or dataset
    model = model_for(weights=preset_path(base))
    objective = objective.for_model(model)
    runs = {}
    for name, layout in (("channels-last", torch.channels_last), ("contiguous", torch.contiguous_format)):
        net = copy.deepcopy(model).to(memory_format=layout).train()
        crops, optimiser = Crops(train, crop, 0), make_optimiser(net, 1e-4)

        def step(net=net, crops=crops, optimiser=optimiser):
            train_step(net, objective, crops, optimiser, batch_size)

        runs[f"step, {name}"] = step
    a, b, *_ = Crops(train, crop, 1).batch(batch_size)
    fused = (0.5 * (a + b)).requires_grad_(True)

    def separable():
        ssim_loss(fused, a, b).backward()

    def window_2d():
        (1.0 - 0.5 * (_ssim_2d(fused, a) + _ssim_2d(fused, b))).backward()

    runs["SSIM term, separable"] = separable
    runs["SSIM term, 2D window"] = window_2d
    times = blocks_ms(runs, dict.fromkeys(runs, steps), block=block)
    return {
        "dataset": dataset,
        "base": base,
        "crop": crop,
        "batch_size": batch_size,
        "threads": threads,
        "cpu": cpu_text(),
        "ms": times,
    }


def format_bench_train(result: dict) -> str:
    """The result as a markdown table with the ratios of each pair of variants."""
    ms = result["ms"]
    lines = [
        f"{result['base']} preset's network, {result['dataset']} objective and training pairs, batch "
        f"{result['batch_size']}, {result['crop']} x {result['crop']} crops, {result['threads']} threads; "
        f"{result['cpu']}.",
        "",
        "| what | median ms | ratio |",
        "|---|---|---|",
    ]
    for first, second in (
        ("step, channels-last", "step, contiguous"),
        ("SSIM term, separable", "SSIM term, 2D window"),
    ):
        lines.append(f"| {first} (as trained) | {ms[first]:.1f} | 1 |")
        lines.append(f"| {second} | {ms[second]:.1f} | {ms[second] / ms[first]:.2f} |")
    return "\n".join(lines)


def add_bench_train(sub):
    p = sub.add_parser("bench-train", help="time one training step here, in both layouts, and its SSIM term")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/)")
    p.add_argument("--dataset", default="CT-MRI", help="training pairs and objective (default CT-MRI)")
    p.add_argument("--base", default=None, help="preset whose network steps (default: the dataset's)")
    p.add_argument("--steps", type=int, default=150, help="timed calls of each variant (default 150)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.set_defaults(run=_run_bench_train)


def _run_bench_train(args):
    result = bench_train(args.data, args.dataset, args.base, steps=args.steps, threads=args.threads)
    print(format_bench_train(result))
