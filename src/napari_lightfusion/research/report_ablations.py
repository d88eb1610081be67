"""The text of ``docs/ablations.md`` from :func:`.ablation.run_ablations`'s summary."""

from __future__ import annotations

from .ablation_variants import PAPER_LR, PAPER_OUTPUT, REFERENCE, all_tables
from .report import document_head, fmt, metric_table


def ablations_markdown(summary: dict) -> str:
    """The text of ``docs/ablations.md`` from :func:`.ablation.run_ablations`'s ``summary``."""
    results = summary["results"]
    trained_now = [n for n, r in results.items() if r["trained"]]
    reused = [n for n, r in results.items() if not r["trained"]]
    total = summary["train_seconds"] + summary["eval_seconds"]
    out = document_head(
        "LightFusionNet ablations on PET-MRI (the paper's Tables 3, 4 and 5)",
        f"Made by `{summary['command']}` on {summary['date']} (data root `{summary['data_root']}`, "
        f"weights in `{summary['out_dir']}`).",
        None if summary.get("limit") is None else f"only the first {summary['limit']} PET-MRI test pairs were scored.",
    )
    out += [
        f"Each row is LightFusionNet with one change from the reference `{REFERENCE.name}` "
        "(attention / convolution / width C / reduction R / loss weighting), which is trained once and "
        "appears in every table. All networks are trained on `train/PET-MRI` (validation carved out by "
        "file name) and scored on the PET-MRI test pairs with the conventions of `docs/results.md` "
        "(BT.601 luminance of the colour result, 0..255, higher is better for every metric; best **bold**, "
        "second-best *italic* within each table).",
        "",
        f"The reference uses the decoder output `{REFERENCE.output}` (the model's default; `{PAPER_OUTPUT}` "
        f"is the paper's: the decoder's sigmoid is the fused image) and the run's learning rate {summary['lr']:g} "
        f"(the paper's is {PAPER_LR:g}); Table D varies both.",
        "",
        "## Cost",
        "",
        f"Total CPU time: **{total / 60:.1f} min** = {summary['train_seconds'] / 60:.1f} min of training (the sum of "
        f"the `train_seconds` in the sidecars) + {summary['eval_seconds'] / 60:.1f} min of scoring on the test set; "
        "both are the wall-clock seconds of single-thread jobs (one torch thread each), so other work on the "
        f"machine inflates them. This invocation took {summary['wall_seconds'] / 60:.1f} min of wall time with "
        f"{summary['workers']} worker process(es); "
        + (
            f"it trained {len(trained_now)} network(s) and reused {len(reused)} already in `{summary['out_dir']}` "
            "(their training time is still counted above)."
            if reused
            else f"it trained all {len(trained_now)} networks."
        ),
        "",
    ]
    for key, (title, rows) in all_tables(summary["lr"]).items():
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
        "- Params: trainable parameters. MACs: multiply-accumulates of one forward pass on a "
        f"{summary['size']}×{summary['size']} pair "
        '(`count_macs`, convolutions only); FLOPs = 2 × MACs. The paper\'s "FLOPS" column matches MACs.',
        "- CPU ms: median wall-clock milliseconds of "
        + (f"{summary['timing_repeats']} calls" if summary["timing_repeats"] else "no calls (timing skipped)")
        + f" of `fuse(..., weights=...)` on an in-memory {summary['size']}×{summary['size']} grey + RGB pair, "
        f"{summary['threads']} torch "
        "thread(s) (the engine's automatic backend: ONNX Runtime on the CPU), after all training had "
        "finished; other work on the machine inflates it.",
        "- The paper reports these ablations without Qabf, SSIM and VIF and with SF/AG about four times "
        "lower than the common definitions used here; compare rows within a table, not with the paper's numbers.",
        "- Weights and the cached scores (`eval.json`) of each variant are in `<out-dir>/<variant>/`, "
        "the variant's name with `-` for `/`.",
    ]
    return "\n".join(out).rstrip() + "\n"


def _schedule_text(sidecar: dict) -> str:
    """One line describing the training schedule a sidecar records."""
    train = sidecar.get("train", {})
    epochs = train.get("epochs")
    return (
        f"{epochs} epoch{'' if epochs == 1 else 's'}, Adam lr {train.get('lr')} ×{train.get('lr_gamma')} "
        f"every {train.get('lr_step')} epochs, batch {train.get('batch_size')}, "
        f"{train.get('crop')}×{train.get('crop')} crops, seed {train.get('seed')}"
    )
