"""The ``lightfusion`` command: train, fuse, evaluate, ablate, bench.

Each subcommand parses its arguments and calls the Qt-free function that
does the work; user errors (missing files, bad shapes, unknown presets)
end as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(run=_run_train)


def _run_train(args):
    import torch

    from .losses import WEIGHTINGS
    from .model import ModelConfig
    from .train import TrainConfig, train

    if args.weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {args.weighting!r}; choose {', '.join(WEIGHTINGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        weights=WEIGHTINGS[args.weighting],
        model=ModelConfig(args.width, args.reduction, args.attention, args.conv),
    )
    if args.lr is not None:
        config.lr = args.lr
    sidecar = train(args.data, args.dataset, args.out, config)
    print(
        f"wrote {args.out / (args.dataset + '.pt')} in {sidecar['train_seconds']:.0f} s "
        f"(validation loss {sidecar['final_validation_loss']})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="lightfusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightfusion`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"lightfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lightfusion {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
