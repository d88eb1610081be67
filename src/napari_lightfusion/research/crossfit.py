"""The six off-diagonal fine-tuning cases: from each bundled preset to each other atlas pair.

``lightfusion-research crossfit --data ROOT`` fine-tunes, for each case
``BASE -> PAIR`` (PET-MRI -> CT-MRI, SPECT-MRI -> CT-MRI, CT-MRI -> PET-MRI,
SPECT-MRI -> PET-MRI, CT-MRI -> SPECT-MRI, PET-MRI -> SPECT-MRI), the BASE
preset on ``ROOT/train/PAIR`` exactly as a user would (``lightfusion
finetune --pairs ROOT/train/PAIR --from BASE``: the same file reading, the
same recipe, the loss fitted to the pair, a 2-minute budget on 2 CPU
threads by default), scores the result and the bundled PAIR preset on the
test pairs with the evaluator of ``docs/results.md`` (Qabf, SSIM, VIF, MI)
and prints a table with the time of each case. The target: within 3 % of
the bundled preset on Qabf, SSIM and VIF and at or above it on MI.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
import warnings
from pathlib import Path

#: ``(base preset, target pair)``: the six off-diagonal cases of the atlas.
CASES = (
    ("PET-MRI", "CT-MRI"),
    ("SPECT-MRI", "CT-MRI"),
    ("CT-MRI", "PET-MRI"),
    ("SPECT-MRI", "PET-MRI"),
    ("CT-MRI", "SPECT-MRI"),
    ("PET-MRI", "SPECT-MRI"),
)
#: The measures of the table and how close the fine-tuned network must come to the bundled preset.
MEASURES = ("Qabf", "SSIM", "VIF", "MI")
WITHIN = 0.03  # Qabf, SSIM, VIF at least (1 - WITHIN) x the bundled preset's; MI at least the bundled preset's


def parse_cases(text: str | None) -> list[tuple[str, str]]:
    """``"PET-MRI:CT-MRI,CT-MRI:PET-MRI"`` (BASE:PAIR, comma-separated) -> cases; None or "all": all six."""
    if text is None or text.strip() == "all":
        return list(CASES)
    cases = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        base, _, target = item.partition(":")
        if (base, target) not in CASES:
            known = ", ".join(f"{b}:{t}" for b, t in CASES)
            raise ValueError(f"unknown case {item!r}; choose among {known} (or all)")
        cases.append((base, target))
    if not cases:
        raise ValueError("give at least one case BASE:PAIR")
    return cases


def meets(tuned: dict, bundled: dict) -> bool:
    """Whether the fine-tuned means are within :data:`WITHIN` of the bundled ones (Qabf, SSIM, VIF), MI not below."""
    close = all(tuned[m] >= (1.0 - WITHIN) * bundled[m] for m in ("Qabf", "SSIM", "VIF"))
    return close and tuned["MI"] >= bundled["MI"]


def run_case(data_root: Path, base: str, target: str, config, bundled: dict, limit: int | None = None) -> dict:
    """Fine-tune ``base`` on ``train/<target>``, score it on ``test/<target>``; one row of the table."""
    from ..finetune import finetune
    from ..pair_data import folder_pairs, read_pairs
    from ..weights import save_weights
    from .methods import network_method
    from .scoring import evaluate_dataset

    started = time.perf_counter()
    pairs = read_pairs(folder_pairs(Path(data_root) / "train" / target))
    result = finetune(pairs, base, config=config, device="cpu")
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tuned.pt"
        save_weights(result.model, path, result.sidecar())
        table = evaluate_dataset(data_root, target, {"tuned": network_method(weights=path)}, limit=limit)
    tuned = {m: table.means["tuned"][m] for m in MEASURES}
    return {
        "case": f"{base} -> {target}",
        "base": base,
        "target": target,
        "tuned": tuned,
        "bundled": bundled,
        "steps": result.steps,
        "seconds": seconds,
        "improved": result.improved,
        "lost": dict(result.lost),
        "loss_from": result.objective_from,
        "test_pairs": len(table.pairs),
        "meets": meets(tuned, bundled),
    }


def bundled_scores(data_root: Path, target: str, limit: int | None = None) -> dict:
    """Test means of the bundled preset of ``target`` (Qabf, SSIM, VIF, MI)."""
    from .methods import network_method
    from .scoring import evaluate_dataset

    table = evaluate_dataset(data_root, target, {"bundled": network_method(preset=target)}, limit=limit)
    return {m: table.means["bundled"][m] for m in MEASURES}


def crossfit(
    data_root: Path,
    cases=CASES,
    *,
    minutes: float | None = 2.0,
    steps: int | None = None,
    threads: int = 2,
    limit: int | None = None,
    say=print,
) -> list[dict]:
    """Run ``cases`` one after the other (``say`` gets a line per case); return the rows."""
    import torch

    from ..finetune import FinetuneConfig

    config = FinetuneConfig(steps=steps, minutes=minutes)
    bundled, rows = {}, []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # skimage low-contrast notes
            for base, target in cases:
                if target not in bundled:
                    bundled[target] = bundled_scores(data_root, target, limit)
                row = run_case(data_root, base, target, config, bundled[target], limit)
                say(row_text(row))
                rows.append(row)
    finally:
        torch.set_num_threads(before)  # the process's setting, as it was
    return rows


def _cell(row: dict, measure: str) -> str:
    tuned, bundled = row["tuned"][measure], row["bundled"][measure]
    return f"{tuned:.3f} / {bundled:.3f} ({tuned / bundled - 1:+.1%})"


def row_text(row: dict) -> str:
    """One case as a line of text."""
    cells = "  ".join(f"{m} {_cell(row, m)}" for m in MEASURES)
    return (
        f"{row['case']}: loss of {row['loss_from']}, {row['steps']} steps, {row['seconds']:.0f} s; {cells}; "
        f"{'meets' if row['meets'] else 'misses'} the target"
    )


def _lowered(row: dict) -> str:
    """What kept the base when a tuned state scored better but lowered a measure too far: ": it lowered VIF -13.5 %"."""
    lost = row.get("lost") or {}
    return ": it lowered " + ", ".join(f"{name} {change:+.1%}" for name, change in lost.items()) if lost else ""


def table(rows: list[dict]) -> str:
    """The markdown table: one row per case, fine-tuned / bundled (change) per measure."""
    head = (
        "| case | loss of | steps | time (s) | " + " | ".join(f"{m} tuned / bundled" for m in MEASURES) + " | target |"
    )
    lines = [head, "|" + "---|" * (5 + len(MEASURES))]
    for row in rows:
        cells = " | ".join(_cell(row, m) for m in MEASURES)
        kept = "" if row["improved"] else f" (kept the base{_lowered(row)})"
        lines.append(
            f"| {row['case']}{kept} | {row['loss_from']} | {row['steps']} | {row['seconds']:.0f} | {cells} | "
            f"{'met' if row['meets'] else 'missed'} |"
        )
    return "\n".join(lines)


def document(rows: list[dict], command: str, threads: int, load: tuple[float, float, float]) -> str:
    """The markdown page: the command, the machine, the table, what the target is."""
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    met = sum(row["meets"] for row in rows)
    return "\n".join(
        [
            "# Fine-tuning across modality pairs: the six off-diagonal cases",
            "",
            f"Made by `{command}` on {when}, {threads} torch threads, load average "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the start.",
            "",
            "Each case fine-tunes the bundled BASE preset on `train/PAIR` as `lightfusion finetune --pairs "
            "train/PAIR --from BASE` does and scores it on the test pairs of PAIR against the bundled preset "
            f"of PAIR. Target: within {WITHIN:.0%} on Qabf, SSIM and VIF, at or above it on MI. "
            "Time: the fine-tuning call (reading the pairs, scoring the presets, training), not the scoring.",
            "",
            table(rows),
            "",
            f"{met} of {len(rows)} cases meet the target.",
            "",
        ]
    )


def add_crossfit(sub):
    p = sub.add_parser("crossfit", help="fine-tune each bundled preset on each other atlas pair; the 6-case table")
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/ and test/)")
    p.add_argument("--minutes", type=float, default=None, help="time budget per case (default 2, none with --steps)")
    p.add_argument("--steps", type=int, default=None, help="instead: this many steps per case")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--cases", default=None, help="BASE:PAIR,... (default: all six)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test pairs (a trial)")
    p.add_argument("--doc", type=Path, default=None, help="also write the table as markdown here")
    p.set_defaults(run=run_crossfit)


def run_crossfit(args):
    import shlex

    cases = parse_cases(args.cases)
    minutes = args.minutes if args.minutes is not None else (None if args.steps else 2.0)
    load = os.getloadavg()
    rows = crossfit(args.data, cases, minutes=minutes, steps=args.steps, threads=args.threads, limit=args.limit)
    print(table(rows))
    if args.doc is not None:
        command = "lightfusion-research " + " ".join(shlex.quote(a) for a in args.argv)
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text(document(rows, command, args.threads, load))
        print(f"wrote {args.doc}")
