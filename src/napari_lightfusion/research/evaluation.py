"""The paper's evaluation, measured here: Tables 1 and 2, the quality bar, efficiency, contact sheets.

This module runs the evaluation and writes its documents; the parts live in
modules of their own: :mod:`.methods` (what is fused), :mod:`.scoring`
(the measures of each result, with its convention), :mod:`.tables` (rows,
columns and ranks), :mod:`.quality_bar`, :mod:`.timing` (efficiency),
:mod:`.contact_sheets` (images) and :mod:`.report_results` (the text).

Entry points for the command line: :func:`write_results` (``lightfusion-research
evaluate --data ROOT --out docs/results.md``) and :func:`score_weights`
(``lightfusion-research score``).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..baselines import BASELINES
from ..pair_data import DATASETS, load_pairs, pair_names
from ..weights import model_for
from .balance import FUNCTIONAL, balance_curve
from .contact_sheets import contact_pairs, contact_sheet, save_png
from .methods import baseline_method, default_methods, network_method
from .quality_bar import MIN_TOP2, QualityBar, quality_bar
from .report import command_line, metric_table
from .report_results import results_markdown
from .scoring import EvalTable, evaluate_dataset
from .tables import CROSS, cross_name
from .timing import efficiency


def score_weights(
    data_root: Path,
    dataset: str,
    weights: Iterable[Path],
    *,
    baselines: bool = False,
    progress: bool = True,
    balances: Iterable[float] | None = None,
    split: str = "test",
) -> str:
    """A markdown table of the mean measures of weight files (and the baselines) on one test set.

    For ``lightfusion-research score``: comparing training runs (two loss weightings,
    two learning rates) on the same pairs with the same code as Table 1.
    Rows are named by the weight files' parent folder and stem. With
    ``balances``, a balance-conditioned file gets one row per b (the others
    one row, at their default). ``split="validation"``: on the validation
    pairs of ``train/`` instead (:func:`.scoring.evaluate_dataset`), to choose
    between runs without looking at the test set.
    """
    from ..weights import model_for

    methods = {name: baseline_method(name) for name in BASELINES} if baselines else {}
    for path in map(Path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"no weight file {path}")
        name = f"{path.parent.name}/{path.stem}"
        if balances and model_for(None, path).conditioned:
            for b in balances:
                methods[f"{name} b={b:g}"] = network_method(weights=path, balance=b)
        else:
            methods[name] = network_method(weights=path)
    if not methods:
        raise ValueError("give at least one weight file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        table = evaluate_dataset(data_root, dataset, methods, progress=progress, split=split)
    return metric_table(table.means, list(methods)) + f"\n\n{len(table.pairs)} {dataset} {split} pairs."


def _weights_info(preset: str) -> dict:
    """What a bundled preset's sidecar says about how it was trained."""
    from ..weights import preset_path, read_sidecar

    path = preset_path(preset)
    try:
        side = read_sidecar(path)
    except ValueError as exc:
        return {"preset": preset, "error": str(exc)}
    train = side.get("train", {})
    return {
        "preset": preset,
        "epochs": train.get("epochs"),
        "lr": train.get("lr"),
        "balance_loss": train.get("balance_loss") if (side.get("model") or {}).get("balance") is not None else None,
        "loss_weights": side.get("loss_weights"),
        "model": side.get("model"),
        "train_seconds": side.get("train_seconds"),
        "sha256": side.get("sha256", "")[:12],
        "source_commit": str(side.get("source_commit", ""))[:10],
        "started_from": (side.get("init_sha256") or "")[:12] or None,
    }


def write_results(
    data_root: Path,
    out_md: Path,
    *,
    datasets: Iterable[str] = tuple(DATASETS),
    limit: int | None = None,
    command: str | None = None,
    progress: bool = True,
    contact: bool = True,
    timing_repeats: int = 20,
    min_top2: int = MIN_TOP2,
) -> dict:
    """Evaluate everything and write ``out_md`` (``docs/results.md``) and its contact sheets.

    For each dataset: Table 1 (the four baselines and the bundled preset),
    Table 2 (the other dataset's preset, for PET-MRI and SPECT-MRI), the
    quality bar, and ``contact_<dataset>.png`` beside ``out_md``; then the
    efficiency table. ``limit`` evaluates only the first ``limit`` pairs
    of each test set (a trial; the document says so). ``command`` is the
    command line written at the top (default: the ``lightfusion-research evaluate``
    line that passes these arguments). Returns what it computed.
    """
    data_root, out_md = Path(data_root), Path(out_md)
    datasets = list(datasets)
    for dataset in datasets:
        pair_names(data_root, "test", dataset)  # fail early, with the data module's message
    if command is None:
        shown = None if datasets == list(DATASETS) else ",".join(datasets)
        command = command_line("evaluate", data=data_root, out=out_md, datasets=shown, limit=limit)
    started = time.perf_counter()
    tables: dict[str, EvalTable] = {}
    bars: dict[str, QualityBar] = {}
    sheets: dict[str, Path] = {}
    shown_names: dict[str, list[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # skimage low-contrast notes
        for dataset in datasets:
            methods = default_methods(dataset)
            if dataset in CROSS:
                methods[cross_name(CROSS[dataset])] = network_method(preset=CROSS[dataset])
            tables[dataset] = evaluate_dataset(data_root, dataset, methods, limit=limit, progress=progress)
            bars[dataset] = quality_bar(tables[dataset].means, dataset, min_top2=min_top2)
            if contact:
                path = out_md.parent / f"contact_{dataset}.png"
                shown = contact_pairs(data_root, dataset)
                save_png(path, contact_sheet(shown, dataset))
                sheets[dataset] = path
                shown_names[dataset] = [p.name for p in shown]
        curves = {
            d: balance_curve(data_root, d, limit=limit, refine=True, auto=True)
            for d in datasets
            if d in FUNCTIONAL and model_for(d).conditioned
        }
        timing_dataset = "PET-MRI" if "PET-MRI" in datasets else datasets[0]
        first = load_pairs(data_root, "test", timing_dataset, pair_names(data_root, "test", timing_dataset)[:1])[0]
        eff = efficiency(timing_dataset, (first.anatomical, first.other), repeats=timing_repeats)
    computed = {
        "command": command,
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "data_root": str(data_root),
        "limit": limit,
        "tables": tables,
        "bars": bars,
        "sheets": sheets,
        "contact_pairs": shown_names,
        "efficiency": eff,
        "balance": curves,
        "efficiency_pair": f"{timing_dataset} test pair {first.name}",
        "weights": {d: _weights_info(d) for d in sorted({*datasets, *(CROSS[d] for d in datasets if d in CROSS)})},
        "seconds": time.perf_counter() - started,
        "python": sys.version.split()[0],
    }
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(results_markdown(computed, out_md.parent))
    return computed
