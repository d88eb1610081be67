"""How often the misalignment check cries wolf, and how often it catches a real shift, on the Harvard pairs.

Every Fuse runs :func:`napari_lightfusion.align.estimate_misalignment`; on
a registered pair it must stay silent, on a shifted one speak. The Harvard
test pairs are registered, so each is checked as it is (a warning is a
false alarm) and with the functional image moved by ``--shift`` pixels
along x (a warning is a catch). Prints one row per data set::

    python -m napari_lightfusion.research.misalignment_check --data ../shared/data/harvard --pairs 20 --shift 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..align import estimate_misalignment
from ..pair_data import load_pairs, pair_names

#: The data sets checked.
DATASETS = ("PET-MRI", "SPECT-MRI", "CT-MRI")


def check(data: Path, dataset: str, pairs: int, shift: float) -> dict:
    """``{"pairs", "false_alarms", "caught", "gains_in_place", "gains_shifted"}`` over the first ``pairs``."""
    moved = np.eye(3)
    moved[1, 2] = shift
    row = {"pairs": 0, "false_alarms": 0, "caught": 0, "gains_in_place": [], "gains_shifted": []}
    for pair in load_pairs(data, "test", dataset, pair_names(data, "test", dataset)[:pairs]):
        colour = pair.other.ndim == 3
        args = (pair.anatomical.astype(np.float64), np.eye(3), pair.other.astype(np.float64))
        here = estimate_misalignment(*args, np.eye(3), rgb_moving=colour)
        there = estimate_misalignment(*args, moved, rgb_moving=colour)
        row["pairs"] += 1
        row["false_alarms"] += here.exceeds
        row["caught"] += there.exceeds
        row["gains_in_place"].append(here.gain)
        row["gains_shifted"].append(there.gain)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Harvard data root (holds test/)")
    parser.add_argument("--pairs", type=int, default=20, help="test pairs per data set")
    parser.add_argument("--shift", type=float, default=8.0, help="pixels the functional image is moved along x")
    args = parser.parse_args(argv)
    print(
        f"| data set | pairs | false alarms (registered) | caught (moved {args.shift:g} px) "
        "| MI gain in place (max) | MI gain moved (min) |"
    )
    print("|---|---|---|---|---|---|")
    for dataset in DATASETS:
        row = check(args.data, dataset, args.pairs, args.shift)
        print(
            f"| {dataset} | {row['pairs']} | {row['false_alarms']} | {row['caught']} "
            f"| {max(row['gains_in_place']):.3f} | {min(row['gains_shifted']):.3f} |"
        )


if __name__ == "__main__":
    main()
