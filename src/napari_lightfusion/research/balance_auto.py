"""``balance="auto"`` measured: its hot-spot leads over pixel average beside the best single b, and its cost.

For each dataset and split, every pair is fused with the b chosen for it
(:mod:`napari_lightfusion.balance_search`) and scored with the evaluator's
hot-spot measures (:func:`.balance.hot_spot_means`), beside the one b of
the 0.1 grid whose worse mean lead is largest (the way issue 20 states its
target), and the whole images' Qabf, VIF and MI at the default b and
with auto (what balancing the hot spot costs elsewhere). The choice uses the same measures it is scored with, on the
inputs alone: the table says how far a per-pair b can go, not a held-out
score.

Entry point for the command line: :func:`run_balance_auto`
(``lightfusion-research balance-auto --data ROOT``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..metrics import evaluate
from ..pair_data import SPLITS, load_pairs, split_names
from .balance import FUNCTIONAL, auto_fusions, auto_point, balance_curve
from .hot_spot_ceiling import GRID, leads

#: Whole-image metrics the table gives at the default b and with auto.
WHOLE = ("Qabf", "VIF", "MI")


def measure(
    data_root: Path, dataset: str, split: str = "test", limit: int | None = 30, weights: Path | None = None
) -> dict:
    """The auto b's mean leads, the best single b's, the b range and the seconds per pair of ``split/dataset``.

    ``weights``: a weight file to measure instead of the dataset's bundled preset.
    """
    from ..fusion import fuse

    folder, names = split_names(data_root, split, dataset)
    pairs = load_pairs(data_root, folder, dataset, names[:limit])
    if not pairs:
        raise ValueError(f"no {split} pairs of {dataset} under {data_root}")
    curve = balance_curve(data_root, dataset, GRID, limit=limit, split=split, weights=weights)
    average = curve["baselines"]["average"]
    single = max(curve["network"], key=lambda b: min(leads(curve["network"][b], average)))
    preset = None if weights is not None else dataset
    start = time.perf_counter()
    results = auto_fusions(pairs, preset, weights)
    seconds = (time.perf_counter() - start) / len(pairs)
    point = auto_point(pairs, results)
    default = [fuse(p.anatomical, p.other, preset=preset, weights=weights, device="cpu").fused for p in pairs]
    return {
        "pairs": len(pairs),
        "average": average,
        "single": (single, leads(curve["network"][single], average)),
        "auto": leads(point["means"], average),
        "chosen": tuple(point["chosen"]),
        "seconds": seconds,
        "whole": {
            "default": _whole_image(zip(default, pairs)),
            "auto": _whole_image((r.fused, p) for r, p in zip(results, pairs)),
        },
    }


def _whole_image(fused_pairs) -> dict[str, float]:
    """Mean Qabf, VIF and MI of the whole fused images (what auto costs outside the hot spot)."""
    scores = [evaluate(f * 255.0, p.anatomical * 255.0, p.other * 255.0) for f, p in fused_pairs]
    return {name: float(np.mean([s[name] for s in scores])) for name in WHOLE}


def table(rows: dict) -> str:
    """The measurements as a markdown table, one row per (dataset, split)."""
    out = [
        "| dataset | split, pairs | pixel average (anatomy / function kept) | best single b (0.1 grid): leads "
        "| auto: leads | auto: b chosen | auto: s per pair | Qabf / VIF / MI: default b → auto |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, split), r in rows.items():
        b, (sa, sf) = r["single"]
        aa, af = r["auto"]
        out.append(
            f"| {dataset} | {split}, {r['pairs']} | {r['average']['anatomy kept']:.3f} / "
            f"{r['average']['function kept']:.3f} | b {b:.1f}: {sa:+.3f} / {sf:+.3f} | {aa:+.3f} / {af:+.3f} "
            f"| {r['chosen'][0]:.2f}–{r['chosen'][1]:.2f} | {r['seconds']:.2f} | {_whole_cell(r['whole'])} |"
        )
    return "\n".join(out)


def _whole_cell(whole: dict) -> str:
    before, after = whole["default"], whole["auto"]
    return " / ".join(f"{before[k]:.3f}" for k in WHOLE) + " → " + " / ".join(f"{after[k]:.3f}" for k in WHOLE)


def add_balance_auto(sub):
    p = sub.add_parser(
        "balance-auto", help="the per-pair b of balance=auto against pixel average, beside the best single b"
    )
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/ and test/)")
    p.add_argument("--datasets", default="PET-MRI,SPECT-MRI", help="comma-separated datasets")
    p.add_argument("--splits", default="validation,test", help="comma-separated: validation (of train/), test")
    p.add_argument("--limit", type=int, default=30, help="the first N pairs (default 30, as issue 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--weights", type=Path, default=None, help="a weight file instead of the bundled presets")
    p.set_defaults(run=run_balance_auto)


def run_balance_auto(args):
    import torch

    datasets, splits = args.datasets.split(","), args.splits.split(",")
    for dataset in datasets:
        if dataset not in FUNCTIONAL:
            raise ValueError(f"unknown dataset {dataset!r}: the balance is for {' and '.join(FUNCTIONAL)}")
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if args.limit < 1:
        raise ValueError("limit must be at least 1")
    if args.weights is not None and len(datasets) != 1:
        raise ValueError("--weights is one network: give the one dataset it is for (--datasets NAME)")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {
        (dataset, split): measure(args.data, dataset, split, args.limit, args.weights)
        for dataset in datasets
        for split in splits
    }
    print(table(rows))
