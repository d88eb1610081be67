"""The ``lightfusion`` command: train, fuse, evaluate, ablate, bench, view, screenshot.

Each subcommand parses its arguments and calls the Qt-free function that
does the work (``fuse``, ``fuse-volume`` and ``batch`` are in
:mod:`napari_lightfusion.fuse_commands`); user errors (a bad option or
value, missing files, bad shapes, unknown presets, an output that cannot
be written) end as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .fuse_commands import add_batch, add_fuse, add_fuse_volume


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors (a bad option or value) are one line and exit status 2, like the others."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub):
    p = sub.add_parser("train", help="train LightFusionNet on one dataset of registered pairs")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/)")
    p.add_argument("--dataset", required=True, help="CT-MRI, PET-MRI or SPECT-MRI")
    p.add_argument("--out", type=Path, required=True, help="folder for weights, sidecar, log")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: recipe's)")
    p.add_argument("--weighting", default="eq5", help="loss weights: eq5 or table5")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--reduction", type=int, default=4)
    p.add_argument("--attention", default="pca")
    p.add_argument("--conv", default="dsc")
    p.add_argument("--output", default="intensity",
                   help="decoder output: intensity (the paper's), blend or mix (see model.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--balance", type=float, default=None,
                   help="train a balance-conditioned network (b in [0, 1], every b drawn per batch) "
                        "with this default b; without it, the paper's unconditioned network")
    p.add_argument("--crop", type=int, default=64, help="edge of the random training crops")
    p.add_argument("--init", default=None, help="weight file (or bundled preset name) to start from")
    p.add_argument("--default-share", type=float, default=0.25,
                   help="with --balance: share of batches trained at the default b (the rest uniform)")
    p.add_argument("--balance-loss", default="targets",
                   help="with --balance: how b changes the loss, targets, fade, hotspot or split (see losses.py)")
    p.add_argument("--hot-spot-weight", type=float, default=1.0,
                   help="with --balance-loss hotspot or split: weight of the hot-spot term (x the SSIM weight)")
    p.add_argument("--device", default="cpu", help="torch device to train on: cpu, cuda, cuda:1, mps")
    p.set_defaults(run=_run_train)


def _run_train(args):
    import torch

    from .losses import WEIGHTINGS
    from .model import ModelConfig
    from .research.train import TrainConfig, train
    from .weights import PRESETS, preset_path

    if args.weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {args.weighting!r}; choose {', '.join(WEIGHTINGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        weights=WEIGHTINGS[args.weighting],
        crop=args.crop,
        default_share=args.default_share,
        balance_loss=args.balance_loss,
        hot_spot_weight=args.hot_spot_weight,
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


def _add_finetune(sub):
    p = sub.add_parser("finetune", help="fine-tune a preset on your own registered pairs (minutes on a CPU)")
    p.add_argument("pairs", nargs="*", help="ANATOMICAL:FUNCTIONAL image files (PNG, TIFF stacks)")
    p.add_argument("--pairs", dest="folders", type=Path, action="append", default=[],
                   help="a folder DIR/MRI/* with DIR/CT|PET|SPECT/* of the same names (repeatable)")
    p.add_argument("--from", dest="base", required=True, help="preset to start from (bundled, custom or a .pt file)")
    p.add_argument("--out", type=Path, required=True, help="weight file to write (.pt, with its .json sidecar)")
    p.add_argument("--minutes", type=float, default=None, help="time budget (default 2, or none with --steps)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the recipe's, 2e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-as", default=None, help="also save the result as a custom preset of this name")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(run=_run_finetune)


def _run_finetune(args):
    from dataclasses import replace

    import torch
    from tqdm import tqdm

    from .finetune import FinetuneConfig, finetune, folder_pairs, parse_pair, read_pairs
    from .weights import check_preset_name, custom_presets, preset_path, save_custom_preset, save_weights_atomic, sha256

    if args.out.suffix != ".pt":
        raise ValueError(f"--out {args.out} must be a .pt file (its sidecar goes beside it as .json)")
    base = preset_path(args.base)
    if args.out.resolve() == base.resolve():
        raise ValueError(f"--out {args.out} would overwrite the weights it starts from")
    if args.save_as is not None:
        name = check_preset_name(args.save_as)
        if name in custom_presets():
            raise ValueError(f"a custom preset named {name!r} exists already; remove it or choose another name")
    paths = [parse_pair(text) for text in args.pairs]
    for folder in args.folders:
        paths += folder_pairs(folder)
    if not paths:
        raise ValueError("give pairs as ANATOMICAL:FUNCTIONAL files or --pairs DIR")
    if args.threads:
        torch.set_num_threads(args.threads)
    minutes = args.minutes if args.minutes is not None else (None if args.steps else 2.0)
    config = FinetuneConfig(steps=args.steps, minutes=minutes, seed=args.seed)
    if args.lr is not None:
        config = replace(config, lr=args.lr)
    pairs = read_pairs(paths)

    bar = tqdm(total=args.steps or round(60 * minutes), unit="step" if args.steps else "s", desc="finetune")

    def report(update):
        bar.update((update.step if args.steps else int(update.seconds)) - bar.n)
        if update.validation is not None:
            bar.set_postfix(loss=f"{update.loss:.2f}", val=f"{update.validation['loss']:.2f}",
                            Qabf=f"{update.validation['Qabf']:.3f}")

    try:
        result = finetune(pairs, args.base, config=config, device=args.device, progress=report)
    finally:
        bar.close()
    hashes = {path: sha256(path) for pair in paths for path in pair}
    sidecar = result.sidecar(
        pairs=[{"anatomical": a, "functional": f, "sha256": [hashes[a], hashes[f]]} for a, f in paths],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights_atomic(result.model, args.out, sidecar)
    before, after = result.before, result.after
    print(
        f"wrote {args.out}: {result.steps} steps in {result.seconds:.0f} s on {result.device} "
        f"(median {result.median_step_ms:.0f} ms a step; best at step {result.best_step}); "
        f"validation Qabf {before['Qabf']:.3f} -> {after['Qabf']:.3f}, "
        f"SSIM {before['SSIM']:.3f} -> {after['SSIM']:.3f}, VIF {before['VIF']:.3f} -> {after['VIF']:.3f}"
    )
    if args.save_as is not None:
        print(f"saved as custom preset {args.save_as!r}: {save_custom_preset(args.save_as, args.out)}")


def _add_presets(sub):
    p = sub.add_parser("presets", help="list the bundled and custom presets (or remove a custom one)")
    p.add_argument("--remove", default=None, metavar="NAME", help="delete the custom preset NAME")
    p.set_defaults(run=_run_presets)


def _run_presets(args):
    from .weights import describe_presets, presets_dir, remove_custom_preset

    if args.remove is not None:
        remove_custom_preset(args.remove)
        print(f"removed custom preset {args.remove!r}")
        return
    print(describe_presets())
    print(f"custom presets folder: {presets_dir()}")


def _add_view(sub):
    p = sub.add_parser("view", help="open napari with the LightFusion widget and the sample pair")
    p.add_argument("--sample", default="phantom_pair", help="sample: phantom_pair or phantom_stack")
    p.set_defaults(run=_run_view)


def _prefer_pyqt6() -> None:
    """Pick PyQt6 for the subcommands that open napari, when it is installed and no binding was asked for.

    qtpy would take PyQt5 first where both are installed, and napari 0.9 then
    shows its "PyQt5 backend is deprecated" notification over the canvas.
    """
    import importlib.util
    import os

    if "QT_API" not in os.environ and importlib.util.find_spec("PyQt6") is not None:
        os.environ["QT_API"] = "pyqt6"


#: The window ``lightfusion view`` opens (at most 95 % of the screen): the canvas gets the larger part.
VIEW_SIZE = (1600, 1000)


def _run_view(args):
    _prefer_pyqt6()
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-lightfusion")
    viewer.open_sample("napari-lightfusion", args.sample)
    viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
    # napari's default window (~1045 x 640) leaves the canvas a strip beside the dock: take most of the screen
    screen = QApplication.primaryScreen().availableGeometry()
    viewer.window.resize(min(VIEW_SIZE[0], int(0.95 * screen.width())), min(VIEW_SIZE[1], int(0.95 * screen.height())))
    napari.run()


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score the bundled networks and the baselines on the test pairs")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds test/)")
    p.add_argument("--out", type=Path, default=Path("docs/results.md"), help="markdown file to write")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs per dataset (a trial)")
    p.add_argument("--datasets", default="CT-MRI,PET-MRI,SPECT-MRI", help="comma-separated datasets")
    p.set_defaults(run=_run_evaluate)


def _run_evaluate(args):
    from .research.data import DATASETS
    from .research.evaluation import write_results

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
    p.add_argument("--balance", default=None,
                   help="comma-separated b values: one row per b for balance-conditioned weight files")
    p.add_argument("--split", default="test", choices=("test", "validation"),
                   help="the test pairs, or the validation pairs of train/ (to choose between runs)")
    p.set_defaults(run=_run_score)


def _run_score(args):
    from .research.evaluation import score_weights

    balances = [float(b) for b in args.balance.split(",")] if args.balance else None
    print(score_weights(args.data, args.dataset, args.weights, baselines=args.baselines, balances=balances,
                        split=args.split))


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
    from .research.ablation import run_ablations

    summary = run_ablations(
        args.data, args.out_dir, args.epochs, args.threads,
        workers=args.workers, doc=args.doc, lr=args.lr, limit=args.limit,
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
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall time, or the process's CPU time (steady on a busy machine; use with --threads 1)")
    p.add_argument("--profile", type=int, default=None, metavar="EDGE",
                   help="instead: ONNX Runtime's profile of the fast path on one EDGE x EDGE slice, by operator")
    p.add_argument("--json", action="store_true", help="print the rows as JSON too")
    p.add_argument("--case", help=argparse.SUPPRESS)  # one case, in the subprocess the benchmark starts
    p.set_defaults(run=_run_bench)


def _run_bench(args):
    from .research.bench import run_from_args

    run_from_args(args)


def _add_bench_live(sub):
    p = sub.add_parser("bench-live", help="latency from a slider move to updated layers (needs a display)")
    p.add_argument("--sizes", default="256,512", help="comma-separated slice edges")
    p.add_argument("--slices", type=int, default=8)
    p.set_defaults(run=_run_bench_live)


def _run_bench_live(args):
    _prefer_pyqt6()
    from .research.bench_live import format_rows, measure

    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    print(format_rows(measure(sizes, args.slices)))


def _add_balance_figure(sub):
    p = sub.add_parser("balance-figure", help="hot-spot curves traced by the balance b, and one pair fused at three b")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds test/)")
    p.add_argument("--out", type=Path, default=Path("docs/balance.png"), help="PNG to write")
    p.add_argument("--limit", type=int, default=None, help="only the first N test pairs per dataset (a trial)")
    p.set_defaults(run=_run_balance_figure)


def _add_default_balance(sub):
    p = sub.add_parser("default-balance",
                       help="give a retrained balance-conditioned preset the default b that behaves like the old one")
    p.add_argument("weights", type=Path, help="the retrained weight file (its sidecar is rewritten)")
    p.add_argument("--like", type=Path, required=True, help="the weight file it replaces")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/)")
    p.add_argument("--dataset", required=True, help="CT-MRI, PET-MRI or SPECT-MRI")
    p.set_defaults(run=_run_default_balance)


def _run_default_balance(args):
    from .research.balance import pick_default_balance, set_default_balance

    choice = pick_default_balance(args.data, args.dataset, args.weights, args.like)
    set_default_balance(args.weights, choice)
    like, chosen = choice["like"], choice["chosen"]
    print(f"{args.dataset}: {args.like} anatomy {like['anatomy kept']:.3f} function {like['function kept']:.3f}; "
          f"b = {choice['balance']:g} gives {chosen['anatomy kept']:.3f} / {chosen['function kept']:.3f} "
          f"on {choice['pairs']} validation pairs; written to {args.weights.with_suffix('.json')}")


def _run_balance_figure(args):
    from .research.balance import write_balance_figure

    result = write_balance_figure(args.data, args.out, limit=args.limit)
    for dataset, curve in result["curves"].items():
        average = curve["baselines"]["average"]
        print(f"{dataset}: pixel average anatomy {average['anatomy kept']:.3f} "
              f"function {average['function kept']:.3f}; "
              f"b dominating it: {', '.join(f'{b:g}' for b in result['dominating'][dataset]) or 'none'}")
    print(f"wrote {args.out}")


def _add_screenshot(sub):
    p = sub.add_parser("screenshot", help="save the README and docs screenshots of napari with the widget")
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.png"),
                   help="README screenshot; the four docs screenshots go next to it")
    p.add_argument("--data", type=Path, default=None,
                   help="Harvard data root: show its PET-MRI test pair 23 (default: the synthetic sample)")
    p.add_argument("--dicom", action="store_true",
                   help="instead: a synthetic DICOM MR + PET study opened, fused and aligned (dicom_study.png and "
                        "dicom_aligned.png next to --out)")
    p.set_defaults(run=_run_screenshot)


def _run_screenshot(args):
    _prefer_pyqt6()
    from .research.screenshot import make_dicom_screenshots, make_screenshots

    paths = make_dicom_screenshots(args.out.parent) if args.dicom else make_screenshots(args.out, args.data)
    for path in paths:
        print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = _Parser(
        prog="lightfusion", description="LightFusionNet image fusion: train, fuse, evaluate, ablate, bench, view."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    add_fuse(sub)
    add_fuse_volume(sub)
    add_batch(sub)
    _add_finetune(sub)
    _add_presets(sub)
    _add_evaluate(sub)
    _add_score(sub)
    _add_ablate(sub)
    _add_bench(sub)
    _add_bench_live(sub)
    _add_view(sub)
    _add_screenshot(sub)
    _add_balance_figure(sub)
    _add_default_balance(sub)
    for command in sub.choices.values():
        command.set_defaults(parser=command)  # to say which subcommand an unknown argument was given to
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightfusion`` console script."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.run(args)
    except ValueError as exc:
        print(f"lightfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command reads or writes: "Permission denied: out/x.png"
        where = f": {exc.filename}" if exc.filename else ""
        print(f"lightfusion {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lightfusion {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
