"""Training and scoring the paper's ablations on PET-MRI (the networks are in :mod:`.ablation_variants`).

Every variant is trained with :func:`napari_lightfusion.research.train.train`
on ``train/PET-MRI`` with one schedule, and scored with
:func:`napari_lightfusion.research.scoring.evaluate_dataset` on
``test/PET-MRI``. Each variant's weights go in ``out_dir/<variant>/``
(``<variant>`` is the name with ``-`` for ``/``); weights already there
whose sidecar matches the requested model, loss weights and schedule (and
whose sha256 checks) are reused, so an interrupted run resumes. The
test-set scores are cached beside them in ``eval.json``, keyed by the
weights' sha256, the test pairs and the table columns.

Entry point for the command line: :func:`run_ablations` (``lightfusion-research
ablate --data ROOT --out-dir runs/ablations --epochs N --workers 2 --doc
docs/ablations.md``); :mod:`.report_ablations` writes the document.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict
from pathlib import Path

from ..pair_data import pair_names
from ..weights import sha256
from .ablation_variants import DATASET, REFERENCE, Variant, train_config, variants
from .methods import network_method
from .report import command_line
from .report_ablations import ablations_markdown
from .scoring import evaluate_dataset
from .tables import COLUMNS, LIGHTFUSIONNET
from .timing import SIZE, network_size, synthetic_pair, time_method
from .train import TrainConfig, train

#: Keys of a sidecar's "train" block that do not change the weights.
_IRRELEVANT = ("val_every",)


def _schedule(config: TrainConfig) -> dict:
    """The training settings that change the weights (what a reusable sidecar must match)."""
    return {k: v for k, v in asdict(config).items() if k not in ("weights", "model", *_IRRELEVANT)}


def weight_path(out_dir: Path, variant: Variant) -> Path:
    """Where ``variant``'s weights go under ``out_dir``."""
    return Path(out_dir) / variant.slug / f"{DATASET}.pt"


def reusable(path: Path, config: TrainConfig) -> dict | None:
    """The sidecar of ``path`` if it was trained with exactly ``config`` and is intact, else None."""
    path = Path(path)
    side_path = path.with_suffix(".json")
    if not (path.is_file() and side_path.is_file()):
        return None
    try:
        side = json.loads(side_path.read_text())
    except (OSError, ValueError):
        return None
    train_block = {k: v for k, v in side.get("train", {}).items() if k not in _IRRELEVANT}
    if (
        side.get("model") != config.model.to_dict()
        or side.get("loss_weights") != config.weights.to_dict()
        or train_block != _schedule(config)
        or side.get("dataset") != DATASET
        or side.get("sha256") != sha256(path)
    ):
        return None
    return side


def _test_names(data_root: Path, limit: int | None) -> list[str]:
    """The PET-MRI test pairs scored: all, or the first ``limit``."""
    names = pair_names(data_root, "test", DATASET)
    return names if limit is None else names[: max(0, int(limit))]


def run_variant(
    variant: Variant,
    data_root: Path,
    out_dir: Path,
    epochs: int,
    lr: float | None = None,
    threads: int = 1,
    limit: int | None = None,
    progress: bool = False,
) -> dict:
    """Train ``variant`` (or reuse its weights) and score it on PET-MRI test.

    Runs with ``threads`` torch threads (restored afterwards). Returns a
    dict with the variant's name, its sidecar, whether it was trained now,
    the mean metrics and the evaluation seconds.
    """
    import torch

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        config = train_config(variant, epochs, lr)
        path = weight_path(out_dir, variant)
        sidecar = reusable(path, config)
        trained = sidecar is None
        if trained:
            sidecar = train(data_root, DATASET, path.parent, config, progress=progress)
        names = _test_names(data_root, limit)
        cache = path.parent / "eval.json"
        cached = None
        if cache.is_file():
            try:
                cached = json.loads(cache.read_text())
            except (OSError, ValueError):
                cached = None
        if (
            cached
            and cached.get("sha256") == sidecar["sha256"]
            and cached.get("pairs") == names
            and cached.get("columns") == list(COLUMNS)
        ):
            means, eval_seconds, evaluated = cached["means"], cached["seconds"], False
        else:
            start = time.perf_counter()
            table = evaluate_dataset(data_root, DATASET, {LIGHTFUSIONNET: network_method(weights=path)}, names=names)
            eval_seconds = time.perf_counter() - start
            means = table.mean(LIGHTFUSIONNET)
            cache.write_text(
                json.dumps(
                    {
                        "sha256": sidecar["sha256"],
                        "pairs": names,
                        "columns": list(COLUMNS),
                        "means": means,
                        "seconds": eval_seconds,
                    },
                    indent=2,
                )
                + "\n"
            )
            evaluated = True
    finally:
        torch.set_num_threads(old_threads)
    return {
        "variant": variant.name,
        "path": str(path),
        "sidecar": sidecar,
        "trained": trained,
        "evaluated": evaluated,
        "means": means,
        "eval_seconds": eval_seconds,
        "pairs": len(names),
    }


def _run_job(job: tuple) -> dict:
    """Pool worker: unpack and run one variant (module-level so that it pickles)."""
    return run_variant(*job)


def run_ablations(
    data_root: Path,
    out_dir: Path,
    epochs: int,
    threads: int = 1,
    *,
    workers: int = 1,
    doc: Path | None = None,
    lr: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    timing_repeats: int = 10,
    command: str | None = None,
    size: int = SIZE,
) -> dict:
    """Train and score every ablation variant; write ``doc`` (``docs/ablations.md``) if given.

    ``epochs`` and ``lr`` (default: the training recipe's) make the one
    schedule used for every table. ``workers`` > 1 runs the variants in
    that many processes (spawned; ``threads`` torch threads each), since a
    network this small trains overhead-bound on one core. ``limit`` scores
    only the first ``limit`` test pairs (a trial; the document says so).
    ``timing_repeats`` calls of ``fuse`` per variant time it on one CPU
    thread after all training is done (0 skips the timings). MACs and
    timings are for a ``size`` x ``size`` pair (the paper's 256; smaller
    only to keep tests fast). Returns the per-variant results, keyed by
    variant name, plus totals.
    """
    data_root, out_dir = Path(data_root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _test_names(data_root, limit)  # fail early on a wrong root
    pair_names(data_root, "train", DATASET)
    started = time.perf_counter()
    todo = variants(lr)
    workers = max(1, int(workers))
    jobs = [(v, data_root, out_dir, epochs, lr, threads, limit, progress and workers == 1) for v in todo]
    results: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="ablations", unit="variant")
    if workers == 1:
        for job in jobs:
            res = run_variant(*job)
            results[res["variant"]] = res
            if bar is not None:
                bar.update(1)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for res in pool.imap_unordered(_run_job, jobs):
                results[res["variant"]] = res
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()

    from ..fusion import fuse

    mri, other = synthetic_pair(size)
    for variant in todo:
        res = results[variant.name]
        res.update(network_size(config=variant.model_config(), size=size))
        res["ms"] = None
        if timing_repeats > 0:
            path = Path(res["path"])
            res["ms"] = time_method(
                lambda path=path: fuse(mri, other, preset=None, device="cpu", weights=path),
                repeats=timing_repeats,
                warmup=min(2, timing_repeats),
                threads=threads,
            )
    train_seconds = sum(float(r["sidecar"].get("train_seconds") or 0.0) for r in results.values())
    eval_seconds = sum(float(r["eval_seconds"]) for r in results.values())
    summary = {
        "command": command
        or command_line(
            "ablate",
            data=data_root,
            out_dir=out_dir,
            epochs=epochs,
            lr=lr,
            workers=workers,
            threads=threads,
            limit=limit,
            doc=doc,
        ),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "data_root": str(data_root),
        "out_dir": str(out_dir),
        "epochs": epochs,
        "lr": train_config(REFERENCE, epochs, lr).lr,
        "threads": threads,
        "workers": workers,
        "limit": limit,
        "timing_repeats": timing_repeats,
        "size": size,
        "results": {v.name: results[v.name] for v in todo},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    if doc is not None:
        doc = Path(doc)
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(ablations_markdown(summary))
    return summary
