"""The paper's ablations (Tables 3, 4A, 4B and 5), trained and scored here on PET-MRI.

Every variant is LightFusionNet with one thing changed from the reference
``pca/dsc/16/4/eq5`` (attention / convolution / width C / reduction R /
loss weighting), trained with :func:`napari_lightfusion.research.train.train` on
``train/PET-MRI`` with one schedule, and scored with
:func:`napari_lightfusion.research.evaluation.evaluate_dataset` on ``test/PET-MRI``.

* Table 3: attention PCA -> conv / channel / spatial, and depthwise-separable
  (dsc) -> standard convolutions.
* Table 4A: width 8 / 16 / 32. Table 4B: reduction 2 / 4 / 8.
* Table 5: the loss weightings of Eq. 5 and of Table 5.
* Table D (not in the paper): the decoder output (the paper's
  ``intensity`` against a per-pixel ``blend`` of the inputs) and the
  learning rate (the run's against the paper's 1e-4).

The reference is shared by all tables and trained once: twelve networks
in all (eleven when the run itself uses the paper's learning rate). Each variant's weights go in ``out_dir/<variant>/`` (``<variant>`` is
the name with ``-`` for ``/``); weights already there whose sidecar
matches the requested model, loss weights and schedule (and whose sha256
checks) are reused, so an interrupted run resumes. The test-set scores are
cached beside them in ``eval.json``, keyed by the weights' sha256 and the
test pairs.

Entry point for the command line: :func:`run_ablations` (``lightfusion
ablate --data ROOT --out-dir runs/ablations --epochs N --workers 2 --doc
docs/ablations.md``).
"""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .evaluation import LIGHTFUSIONNET, SIZE, evaluate_dataset, network_method, network_size, time_method
from ..losses import WEIGHTINGS, LossWeights
from ..model import OUTPUTS, ModelConfig
from .train import TrainConfig, train
from ..weights import sha256

#: The dataset the paper's ablations use.
DATASET = "PET-MRI"

#: Keys of a sidecar's "train" block that do not change the weights.
_IRRELEVANT = ("val_every",)


#: The learning rate the paper gives (Adam 1e-4).
PAPER_LR = 1e-4

#: The decoder output the paper describes: the sigmoid is the fused image.
PAPER_OUTPUT = "intensity"


@dataclass(frozen=True)
class Variant:
    """One network of the ablations.

    ``output`` is the decoder's output (:data:`napari_lightfusion.model.OUTPUTS`;
    default the model's default); ``lr`` a learning rate of its own, or
    ``None`` for the run's.
    """

    attention: str = "pca"
    conv: str = "dsc"
    width: int = 16
    reduction: int = 4
    weighting: str = "eq5"
    output: str = ModelConfig().output
    lr: float | None = None

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose {', '.join(WEIGHTINGS)}")
        self.model_config()  # checks the rest

    @property
    def name(self) -> str:
        """``attention/conv/width/reduction/weighting``, then ``/output`` and ``/lr...`` when not the defaults."""
        name = f"{self.attention}/{self.conv}/{self.width}/{self.reduction}/{self.weighting}"
        if self.output != ModelConfig().output:
            name += f"/{self.output}"
        if self.lr is not None:
            name += f"/lr{self.lr:g}"
        return name

    @property
    def slug(self) -> str:
        """The folder name under ``out_dir``."""
        return self.name.replace("/", "-")

    def model_config(self) -> ModelConfig:
        return ModelConfig(self.width, self.reduction, self.attention, self.conv, self.output)

    def loss_weights(self) -> LossWeights:
        return WEIGHTINGS[self.weighting]


#: The shared reference: the paper's network and Eq. 5 weights.
REFERENCE = Variant()

#: table key -> (title, [(row label, variant)]), in the paper's row order.
TABLES: dict[str, tuple[str, list[tuple[str, Variant]]]] = {
    "Table 3": (
        "attention module and convolution type",
        [
            ("PCA → Conv", Variant(attention="conv")),
            ("PCA → CA (channel)", Variant(attention="channel")),
            ("PCA → SA (spatial)", Variant(attention="spatial")),
            ("D/W → Conv (standard)", Variant(conv="standard")),
            ("Ours (PCA, D/W)", REFERENCE),
        ],
    ),
    "Table 4A": (
        "embedding width C",
        [("C = 8", Variant(width=8)), ("C = 16", REFERENCE), ("C = 32", Variant(width=32))],
    ),
    "Table 4B": (
        "attention reduction ratio R",
        [("R = 2", Variant(reduction=2)), ("R = 4", REFERENCE), ("R = 8", Variant(reduction=8))],
    ),
    "Table 5": (
        "loss weighting",
        [
            ("Eq. 5: intensity 20, gradient 100, SSIM 50", REFERENCE),
            ("Table 5: intensity 100, gradient 50, SSIM 20", Variant(weighting="table5")),
        ],
    ),
}

#: Key of the table of this project's departures from the paper (not in the paper).
DEPARTURES = "Table D"


def all_tables(lr: float | None = None) -> dict[str, tuple[str, list[tuple[str, Variant]]]]:
    """:data:`TABLES` plus Table D, the decoder output and learning rate, for a run at ``lr``.

    Table D sets the reference (the model's default decoder output, the
    run's learning rate) against the other decoder output (``intensity``:
    the sigmoid is the image, as in the paper; ``blend``: a per-pixel weight
    of the two inputs) and against the paper's learning rate 1e-4 (left out
    when the run already uses it).
    """
    run_lr = train_config(REFERENCE, 1, lr).lr

    def named(output: str) -> str:
        return f"{output} (the paper's)" if output == PAPER_OUTPUT else output

    rows = [(f"reference: output {named(REFERENCE.output)}, lr {run_lr:g}", REFERENCE)]
    for output in OUTPUTS:
        if output != REFERENCE.output:
            rows.append((f"output {named(output)}, lr {run_lr:g}", Variant(output=output)))
    if run_lr != PAPER_LR:
        label = "the paper as written" if REFERENCE.output == PAPER_OUTPUT else f"output {REFERENCE.output}"
        rows.append((f"{label}: output {named(REFERENCE.output)}, lr {PAPER_LR:g}", Variant(lr=PAPER_LR)))
    tables = dict(TABLES)
    tables[DEPARTURES] = ("decoder output and learning rate (not in the paper)", rows)
    return tables


def variants(lr: float | None = None) -> list[Variant]:
    """Every distinct variant of :func:`all_tables`, the reference first."""
    seen = [REFERENCE]
    for _, rows in all_tables(lr).values():
        seen += [v for _, v in rows if v not in seen]
    return seen


def train_config(variant: Variant, epochs: int, lr: float | None = None) -> TrainConfig:
    """The recipe for ``variant``: the training defaults with ``epochs``.

    The learning rate is the variant's own if it has one, else ``lr`` if
    given, else the recipe's default.
    """
    config = TrainConfig(epochs=int(epochs), weights=variant.loss_weights(), model=variant.model_config())
    if variant.lr is not None:
        config.lr = float(variant.lr)
    elif lr is not None:
        config.lr = float(lr)
    return config


def _schedule(config: TrainConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in ("weights", "model", *_IRRELEVANT)}


def weight_path(out_dir: Path, variant: Variant) -> Path:
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
    from .data import pair_names

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
        if cached and cached.get("sha256") == sidecar["sha256"] and cached.get("pairs") == names:
            means, eval_seconds, evaluated = cached["means"], cached["seconds"], False
        else:
            start = time.perf_counter()
            table = evaluate_dataset(
                data_root, DATASET, {LIGHTFUSIONNET: network_method(weights=path)}, names=names
            )
            eval_seconds = time.perf_counter() - start
            means = table.mean(LIGHTFUSIONNET)
            cache.write_text(
                json.dumps(
                    {"sha256": sidecar["sha256"], "pairs": names, "means": means, "seconds": eval_seconds},
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


def default_command(data_root: Path, out_dir: Path, epochs: int, workers: int, doc: Path | None) -> str:
    parts = [
        "lightfusion ablate",
        f"--data {shlex.quote(str(data_root))}",
        f"--out-dir {shlex.quote(str(out_dir))}",
        f"--epochs {epochs}",
        f"--workers {workers}",
    ]
    if doc is not None:
        parts.append(f"--doc {shlex.quote(str(doc))}")
    return " ".join(parts)


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
    from .data import pair_names

    pair_names(data_root, "train", DATASET)
    started = time.perf_counter()
    todo = variants(lr)
    workers = max(1, int(workers))
    jobs = [
        (v, data_root, out_dir, epochs, lr, threads, limit, progress and workers == 1) for v in todo
    ]
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

    from .evaluation import synthetic_pair
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
        "command": command or default_command(data_root, out_dir, epochs, workers, doc),
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


# --------------------------------------------------------------------------
# the document


def ablations_markdown(s: dict) -> str:
    """The text of ``docs/ablations.md`` from :func:`run_ablations`'s summary."""
    from .report import fmt, metric_table

    results = s["results"]
    trained_now = [n for n, r in results.items() if r["trained"]]
    reused = [n for n, r in results.items() if not r["trained"]]
    total = s["train_seconds"] + s["eval_seconds"]
    out = [
        "# LightFusionNet ablations on PET-MRI (the paper's Tables 3, 4 and 5)",
        "",
        f"Made by `{s['command']}` on {s['date']} (data root `{s['data_root']}`, weights in `{s['out_dir']}`).",
        "",
    ]
    if s.get("limit") is not None:
        out += [
            f"> **Trial run:** only the first {s['limit']} PET-MRI test pairs were scored.",
            "",
        ]
    out += [
        f"Each row is LightFusionNet with one change from the reference `{REFERENCE.name}` "
        "(attention / convolution / width C / reduction R / loss weighting), which is trained once and "
        "appears in every table. All networks are trained on `train/PET-MRI` (validation carved out by "
        "file name) and scored on the PET-MRI test pairs with the conventions of `docs/results.md` "
        "(BT.601 luminance of the colour result, 0..255, higher is better for every metric; best **bold**, "
        "second-best *italic* within each table).",
        "",
        f"The reference uses the decoder output `{REFERENCE.output}` (the model's default; `{PAPER_OUTPUT}` "
        f"is the paper's: the decoder's sigmoid is the fused image) and the run's learning rate {s['lr']:g} "
        f"(the paper's is {PAPER_LR:g}); Table D varies both.",
        "",
        "## Cost",
        "",
        f"Total CPU time: **{total / 60:.1f} min** = {s['train_seconds'] / 60:.1f} min of training (the sum of "
        f"the `train_seconds` in the sidecars) + {s['eval_seconds'] / 60:.1f} min of scoring on the test set; "
        "both are the wall-clock seconds of single-thread jobs (one torch thread each), so other work on the "
        f"machine inflates them. This invocation took {s['wall_seconds'] / 60:.1f} min of wall time with "
        f"{s['workers']} worker process(es); "
        + (
            f"it trained {len(trained_now)} network(s) and reused {len(reused)} already in `{s['out_dir']}` "
            "(their training time is still counted above)."
            if reused
            else f"it trained all {len(trained_now)} networks."
        ),
        "",
    ]
    for key, (title, rows) in all_tables(s["lr"]).items():
        names = [v.name for _, v in rows]
        schedules = {_schedule_text(results[n]["sidecar"]) for n in names}
        means = {n: results[n]["means"] for n in names}
        labels = {v.name: label for label, v in rows}
        extra = {
            "variant": {n: f"`{n}`" for n in names},
            "Params": {n: f"{results[n]['parameters']:,}" for n in names},
            "MACs (G)": {n: fmt(results[n]["macs"] / 1e9, 3) for n in names},
            "FLOPs (G)": {n: fmt(results[n]["flops"] / 1e9, 3) for n in names},
            "CPU ms": {n: fmt(results[n]["ms"], 1) if results[n]["ms"] is not None else "—" for n in names},
        }
        out += [
            f"## {key}: {title}",
            "",
            "Schedule: " + "; ".join(sorted(schedules)) + ".",
            "",
            metric_table(means, names, labels=labels, extra=extra),
            "",
        ]
    pairs = {r["pairs"] for r in results.values()}
    out += [
        "## Notes",
        "",
        f"- Test pairs scored: {', '.join(str(p) for p in sorted(pairs))} (PET-MRI test).",
        f"- Params: trainable parameters. MACs: multiply-accumulates of one forward pass on a {s['size']}×{s['size']} pair "
        "(`count_macs`, convolutions only); FLOPs = 2 × MACs. The paper's \"FLOPS\" column matches MACs.",
        "- CPU ms: median wall-clock milliseconds of "
        + (f"{s['timing_repeats']} calls" if s["timing_repeats"] else "no calls (timing skipped)")
        + f" of `fuse(..., weights=...)` on an in-memory {s['size']}×{s['size']} grey + RGB pair, {s['threads']} torch "
        "thread(s) (the engine's automatic backend: ONNX Runtime when installed), after all training had "
        "finished; other work on the machine inflates it.",
        "- The paper reports these ablations without Qabf, SSIM and VIF and with SF/AG about four times "
        "lower than the common definitions used here; compare rows within a table, not with the paper's numbers.",
        "- Weights and the cached scores (`eval.json`) of each variant are in `<out-dir>/<variant>/`, "
        "the variant's name with `-` for `/`.",
    ]
    return "\n".join(out).rstrip() + "\n"


def _schedule_text(sidecar: dict) -> str:
    t = sidecar.get("train", {})
    return (
        f"{t.get('epochs')} epoch{'' if t.get('epochs') == 1 else 's'}, Adam lr {t.get('lr')} ×{t.get('lr_gamma')} every {t.get('lr_step')} epochs, "
        f"batch {t.get('batch_size')}, {t.get('crop')}×{t.get('crop')} crops, seed {t.get('seed')}"
    )
