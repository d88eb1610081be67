"""The ``lightfusion-research`` command: the tools that make the figures and tables of docs/.

``lightfusion-research COMMAND`` or ``python -m napari_lightfusion.research
COMMAND``: ``train`` and ``ablate`` train networks on the Harvard atlas,
``evaluate`` and ``score`` score them, ``bench`` and ``bench-live`` time
them, ``balance-figure`` and ``default-balance`` trace and set the balance
b, ``hot-spot-ceiling`` measures how far any fused image can lead pixel
average in the hot spots, ``balance-auto`` how far the per-pair b of
``balance="auto"`` does, and ``screenshot`` takes the README's pictures. What a user runs (fuse,
fuse-volume, batch, finetune, presets, view) is the ``lightfusion``
command (:mod:`napari_lightfusion.cli`), which this one shares its error
handling with: a user error is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import make_parser, prefer_pyqt6, run
from .balance_auto import add_balance_auto
from .bench_train import add_bench_train
from .crossfit import add_crossfit
from .hot_spot_ceiling import add_hot_spot_ceiling
from .train import TrainConfig

#: Said at the end of ``lightfusion-research --help``: the research scripts that are not subcommands.
SCRIPTS = (
    "Two more research scripts run as modules: python -m napari_lightfusion.research.volume_bench "
    "(memory and throughput of volume fusion, docs/volumes.md) and python -m "
    "napari_lightfusion.research.misalignment_check (how often the misregistration warning is right). "
    "Fusing and presets: lightfusion --help."
)


def _add_train(sub):
    p = sub.add_parser("train", help="train LightFusionNet on one dataset of registered pairs")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/)")
    p.add_argument("--dataset", required=True, help="CT-MRI, PET-MRI or SPECT-MRI")
    p.add_argument("--out", type=Path, required=True, help="folder for weights, sidecar, log")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: recipe's)")
    p.add_argument(
        "--anneal",
        action="store_true",
        help="the learning rate falls along a half cosine from --lr to 0 over the epochs "
        "(default: halved every 50 epochs)",
    )
    p.add_argument(
        "--weighting", default="eq5", help="loss weights: eq5, table5 or intensity/gradient/SSIM, e.g. 20/150/50"
    )
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--reduction", type=int, default=4)
    p.add_argument("--attention", default="pca")
    p.add_argument("--conv", default="dsc")
    p.add_argument(
        "--output", default="intensity", help="decoder output: intensity (the paper's), blend or mix (see model.py)"
    )
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--balance",
        type=float,
        default=None,
        help="train a balance-conditioned network (b in [0, 1], every b drawn per batch) "
        "with this default b; without it, the paper's unconditioned network",
    )
    p.add_argument("--crop", type=int, default=TrainConfig.crop, help="edge of the random training crops")
    p.add_argument("--init", default=None, help="weight file (or bundled preset name) to start from")
    p.add_argument(
        "--default-share",
        type=float,
        default=TrainConfig.default_share,
        help="with --balance: share of batches trained at the default b (the rest uniform)",
    )
    p.add_argument(
        "--balance-loss",
        default=TrainConfig.balance_loss,
        help="with --balance: how b changes the loss, targets, fade, hotspot or split (see losses.py)",
    )
    p.add_argument(
        "--hot-spot-weight",
        type=float,
        default=TrainConfig.hot_spot_weight,
        help="with --balance-loss hotspot or split: weight of the hot-spot term (x the SSIM weight)",
    )
    p.add_argument(
        "--middle-weight",
        type=float,
        default=TrainConfig.middle_weight,
        help="with --balance: weight (x the SSIM weight) of the middle term, which asks b near 0.5 to keep "
        "both sources in the hot spot better than the pixel average (see losses.middle_loss); 0: off",
    )
    p.add_argument(
        "--middle-margin", type=float, default=TrainConfig.middle_margin, help="middle term's margin over average"
    )
    p.add_argument(
        "--middle-band", type=float, default=TrainConfig.middle_band, help="the middle term acts at b in 0.5 +- this"
    )
    p.add_argument(
        "--ceiling-weight",
        type=float,
        default=TrainConfig.ceiling_weight,
        help="with --balance: weight (x the SSIM weight) of the ceiling term, which asks b in the middle band "
        "for each pair's hot-spot ceiling (see losses.ceiling_loss; computed before training); 0: off",
    )
    p.add_argument(
        "--mri-gamma",
        type=float,
        default=None,
        help="add a copy of every training pair with its MRI to a power in [1/G, G] (intensity augmentation)",
    )
    p.add_argument(
        "--freeze-features",
        action="store_true",
        help="with --init and --balance: train only the balance layer and the output head",
    )
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, mps")
    p.set_defaults(run=_run_train)


def loss_weights(text: str):
    """The loss weights ``--weighting`` names: one of the paper's two, or ``I/G/S`` numbers."""
    from ..losses import WEIGHTINGS, LossWeights

    if text in WEIGHTINGS:
        return WEIGHTINGS[text]
    try:
        values = [float(v) for v in text.split("/")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 0:
        raise ValueError(
            f"unknown weighting {text!r}; choose {', '.join(WEIGHTINGS)} or three weights I/G/S such as 20/150/50"
        )
    return LossWeights(*values)


def _run_train(args):
    import torch

    from ..model import ModelConfig
    from ..weights import PRESETS, preset_path
    from .train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        weights=loss_weights(args.weighting),
        crop=args.crop,
        anneal=args.anneal,
        default_share=args.default_share,
        balance_loss=args.balance_loss,
        hot_spot_weight=args.hot_spot_weight,
        middle_weight=args.middle_weight,
        middle_margin=args.middle_margin,
        middle_band=args.middle_band,
        ceiling_weight=args.ceiling_weight,
        mri_gamma=args.mri_gamma,
        freeze_features=args.freeze_features,
        init=str(preset_path(args.init)) if args.init in PRESETS else args.init,
        model=ModelConfig(args.width, args.reduction, args.attention, args.conv, args.output, args.balance),
    )
    if args.lr is not None:
        config.lr = args.lr
    sidecar = train(args.data, args.dataset, args.out, config, device=args.device)
    print(
        f"wrote {args.out / (args.dataset + '.pt')} in {sidecar['train_seconds']:.0f} s "
        f"(validation loss {sidecar['final_validation_loss']})"
    )


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score the bundled networks and the baselines on the test pairs")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds test/)")
    p.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to write")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs per dataset (a trial)")
    p.add_argument("--datasets", default="CT-MRI,PET-MRI,SPECT-MRI", help="comma-separated datasets")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args):
    from ..pair_data import DATASETS
    from .evaluation import write_results

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown or not datasets:
        raise ValueError(f"unknown dataset {', '.join(unknown) or '(none)'}; choose from {', '.join(DATASETS)}")
    computed = write_results(args.data, args.out, datasets=datasets, limit=args.limit)
    print(f"wrote {args.out} in {computed['seconds']:.0f} s")


def _add_score(sub):
    p = sub.add_parser("score", help="compare weight files (and the baselines) on one test set")
    p.add_argument("weights", type=Path, nargs="+", help="weight files (.pt with their .json sidecars)")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds test/)")
    p.add_argument("--dataset", required=True, help="CT-MRI, PET-MRI or SPECT-MRI")
    p.add_argument("--baselines", action="store_true", help="add the four baselines as rows")
    p.add_argument(
        "--balance", default=None, help="comma-separated b values: one row per b for balance-conditioned weight files"
    )
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "validation"),
        help="the test pairs, or the validation pairs of train/ (to choose between runs)",
    )
    p.set_defaults(run=_run_score)


def _run_score(args):
    from .evaluation import score_weights

    balances = [float(b) for b in args.balance.split(",")] if args.balance else None
    print(
        score_weights(
            args.data, args.dataset, args.weights, baselines=args.baselines, balances=balances, split=args.split
        )
    )


def _add_ablate(sub):
    p = sub.add_parser("ablate", help="train and score the paper's ablations on PET-MRI")
    p.add_argument("--data", type=Path, required=True, help="harvard data root")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for the variants' weights")
    p.add_argument("--epochs", type=int, default=200, help="epochs per variant (one schedule for all)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    p.add_argument("--workers", type=int, default=1, help="variants trained in parallel processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--doc", type=Path, default=None, help="markdown file to write (docs/ablations.md)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test pairs (a trial)")
    p.set_defaults(run=_run_ablate)


def _run_ablate(args):
    from .ablation import run_ablations

    summary = run_ablations(
        args.data,
        args.out_dir,
        args.epochs,
        args.threads,
        workers=args.workers,
        doc=args.doc,
        lr=args.lr,
        limit=args.limit,
    )
    where = f"; wrote {args.doc}" if args.doc else ""
    print(f"{len(summary['results'])} variants, {summary['train_seconds'] / 60:.1f} CPU-min of training{where}")


def _add_bench(sub):
    p = sub.add_parser("bench", help="time the fusion on this machine against eager PyTorch")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="256,512,1024", help="comma-separated pair edges")
    p.add_argument("--stack", default="100x512", help="SLICESxEDGE, or none")
    p.add_argument("--big", default="4096", help="edge of the big pair, or none")
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu, or a GPU (cuda) to run the pairs and the stack on too")
    p.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall time, or the process's CPU time (steady on a busy machine; use with --threads 1)",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="EDGE",
        help="instead: ONNX Runtime's profile of the fast path on one EDGE x EDGE slice, by operator",
    )
    p.add_argument(
        "--tile-edges",
        default=None,
        metavar="E,E,...",
        help="instead: the network's time on a 10-slice stack of --sizes' first edge, by CPU tile edge",
    )
    p.add_argument("--block", type=int, default=5, help="timed runs of one method before the next takes its turn")
    p.add_argument("--compile", action="store_true", help="add torch.compile as a reference (compiling takes minutes)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--case", help=argparse.SUPPRESS)  # one case, in the subprocess the benchmark starts
    p.set_defaults(run=_run_bench)


def _run_bench(args):
    from .bench import run_from_args

    run_from_args(args)


def _add_bench_live(sub):
    p = sub.add_parser("bench-live", help="latency from a slider move to updated layers (needs a display)")
    p.add_argument("--sizes", default="256,512", help="comma-separated slice edges")
    p.add_argument("--slices", type=int, default=8)
    p.set_defaults(run=_run_bench_live)


def _run_bench_live(args):
    prefer_pyqt6()
    from .bench_live import format_rows, measure

    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    print(format_rows(measure(sizes, args.slices)))


def _add_balance_figure(sub):
    p = sub.add_parser("balance-figure", help="hot-spot curves traced by the balance b, and one pair fused at three b")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds test/)")
    p.add_argument("--out", type=Path, default=Path("docs/balance.png"), help="PNG to write")
    p.add_argument("--limit", type=int, default=None, help="only the first N test pairs per dataset (a trial)")
    p.set_defaults(run=_run_balance_figure)


def _add_default_balance(sub):
    p = sub.add_parser(
        "default-balance",
        help="give a retrained balance-conditioned preset the default b that behaves like the old one",
    )
    p.add_argument("weights", type=Path, help="the retrained weight file (its sidecar is rewritten)")
    p.add_argument("--like", type=Path, required=True, help="the weight file it replaces")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/)")
    p.add_argument("--dataset", required=True, help="CT-MRI, PET-MRI or SPECT-MRI")
    p.set_defaults(run=_run_default_balance)


def _run_default_balance(args):
    from .balance import pick_default_balance, set_default_balance

    choice = pick_default_balance(args.data, args.dataset, args.weights, args.like)
    set_default_balance(args.weights, choice)
    like, chosen = choice["like"], choice["chosen"]
    print(
        f"{args.dataset}: {args.like} anatomy {like['anatomy kept']:.3f} function {like['function kept']:.3f}; "
        f"b = {choice['balance']:g} gives {chosen['anatomy kept']:.3f} / {chosen['function kept']:.3f} "
        f"on {choice['pairs']} validation pairs; written to {args.weights.with_suffix('.json')}"
    )


def _run_balance_figure(args):
    from .balance import write_balance_figure

    result = write_balance_figure(args.data, args.out, limit=args.limit)
    for dataset, curve in result["curves"].items():
        average = curve["baselines"]["average"]
        print(
            f"{dataset}: pixel average anatomy {average['anatomy kept']:.3f} "
            f"function {average['function kept']:.3f}; "
            f"b dominating it: {', '.join(f'{b:g}' for b in result['dominating'][dataset]) or 'none'}"
        )
    print(f"wrote {args.out}")


def _add_screenshot(sub):
    p = sub.add_parser("screenshot", help="save the README and docs screenshots of napari with the widget")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("docs/screenshot.png"),
        help="README screenshot; the four docs screenshots go next to it",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="Harvard data root: show its PET-MRI test pair 23 (default: the synthetic sample)",
    )
    p.add_argument(
        "--dicom",
        action="store_true",
        help="instead: a synthetic DICOM MR + PET study opened, fused and aligned (dicom_study.png and "
        "dicom_aligned.png next to --out)",
    )
    p.set_defaults(run=_run_screenshot)


def _run_screenshot(args):
    prefer_pyqt6()
    from .screenshot import make_dicom_screenshots, make_screenshots

    paths = make_dicom_screenshots(args.out.parent) if args.dicom else make_screenshots(args.out, args.data)
    for path in paths:
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    """The ``lightfusion-research`` argument parser with every research subcommand registered."""
    return make_parser(
        "lightfusion-research",
        "LightFusionNet research tools: train, score and time the networks; make the figures of docs/.",
        [
            _add_train,
            _add_evaluate,
            _add_score,
            _add_ablate,
            _add_bench,
            _add_bench_live,
            add_bench_train,
            _add_screenshot,
            _add_balance_figure,
            _add_default_balance,
            add_crossfit,
            add_hot_spot_ceiling,
            add_balance_auto,
        ],
        epilog=SCRIPTS,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightfusion-research`` console script and of ``python -m napari_lightfusion.research``."""
    return run(build_parser(), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
