"""The text of ``docs/results.md`` from the numbers :func:`.evaluation.write_results` computed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..metrics import METRICS
from .balance import balance_markdown
from .contact_sheets import contact_columns
from .quality_bar import MIN_TOP2, QualityBar
from .report import document_head, fmt, metric_table
from .tables import CROSS, DECIMALS, LIGHTFUSIONNET, MEASURES, TABLE1_METHODS, cross_name


def how_to_read(min_top2: int) -> str:
    """The section that explains the measures, the colour convention and the quality bar."""
    lines = [
        "## How to read this",
        "",
        "Each test pair (an MRI slice and the registered CT, PET or SPECT slice of the same brain, "
        "from the Harvard Whole Brain Atlas) is fused by every method, each fused image is scored "
        "against its two sources, and the tables give the mean over the test pairs. "
        + (
            "**Higher is better in the columns headed ↑, lower in those headed ↓.** "
            if any(not m.higher_is_better for m in MEASURES)
            else "**For every metric, higher is better.** "
        )
        + "In each column the best value is **bold** and the "
        "second-best *italic* (ties share the mark).",
        "",
    ]
    lines += [f"- **{m.name}**: {m.help}" for m in MEASURES]
    lines += [
        "",
        "EN, SD, SF and AG look at the fused image alone, so they also reward noise and exaggerated "
        "contrast; MI, SCD, CC, Qabf, SSIM and VIF compare it with the sources. Pixel maximum is a "
        "strong baseline for the functional images here, because PET and SPECT are bright on a black "
        "background.",
        "",
        "*Colour.* PET and SPECT are pseudo-colour RGB images. Every method (the network, average, max "
        "and Laplacian) fuses the BT.601 luminance Y = 0.299 R + 0.587 G + 0.114 B of the colour image "
        "with the MRI and puts the colour image's chrominance back, except *alpha*, which blends in RGB "
        "like a viewer's overlay. Where the whole chrominance does not fit under the fused luminance "
        "(R, G or B would leave [0, 1]) it is scaled down (`colour.with_luma`), so the fused image's "
        "luminance is exactly the one the method computed; clipping R, G and B instead (before "
        "2026-11-26) moved it. All metrics are computed on grey 0..255 images: the luminance of the "
        "fused image against the MRI and against the luminance of the colour source.",
        "",
        "*Comparing with the paper.* The paper (LightFusionNet, Tables 1–5) reports EN, SD, SF, AG, MI, "
        "SCD and CC for other networks; Qabf, SSIM and VIF are added here. Its SF and AG are about four "
        "times lower than the common definitions used here give, even for plain max fusion on the same "
        "test set, so absolute SF/AG values cannot be compared with the paper's; compare methods within "
        "these tables, which are all measured by the same code. MI is in nats, summed over both sources.",
        "",
        f"*Quality bar.* The network passes on a test set when it is ahead of pixel average on MI, Qabf, "
        f"SSIM and VIF, and best or second-best among average, max, laplacian, alpha and LightFusionNet "
        f"on at least {min_top2} of the ten metrics. It is computed from the tables below, not written "
        "by hand.",
    ]
    return "\n".join(lines)


def _table1_rows(table) -> list[str]:
    """The rows of Table 1 that ``table`` has, in table order."""
    return [m for m in TABLE1_METHODS if m in table.scores]


def _weights_table(weights: Mapping[str, dict]) -> str:
    """What each preset's sidecar says about its network and training, as a markdown table."""
    lines = [
        "| preset | model (width/R/attention/conv) | output | default b | balance loss | epochs | lr "
        "| loss weights (I/G/SSIM) | train s | sha256 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, info in weights.items():
        if "error" in info:
            lines.append(f"| {preset} | {info['error']} | | | | | | | | |")
            continue
        model = info.get("model") or {}
        lw = info.get("loss_weights") or {}
        balance = model.get("balance")
        lines.append(
            f"| {preset} | {model.get('width')}/{model.get('reduction')}/{model.get('attention')}/{model.get('conv')} "
            f"| {model.get('output', 'intensity')} | {'—' if balance is None else f'{balance:g}'} "
            f"| {info.get('balance_loss') or '—'} "
            f"| {info.get('epochs')} | {info.get('lr')} "
            f"| {lw.get('intensity', '?'):g}/{lw.get('gradient', '?'):g}/{lw.get('ssim', '?'):g} "
            f"| {info.get('train_seconds')} | `{info.get('sha256')}` |"
        )
    return "\n".join(lines)


#: Published figures of CDDFuse (Zhao et al., CVPR 2023; 1.19 M parameters) on the Harvard test sets, the
#: strongest published model issue 20 measures the presets against, as that issue quotes them from CDDFuse's
#: README (same metric definitions): not measured here. The issue quotes no CT-MRI VIF.
CDDFUSE = {"CT-MRI": {"Qabf": 0.68}, "PET-MRI": {"Qabf": 0.71, "VIF": 0.71}, "SPECT-MRI": {"Qabf": 0.78, "VIF": 0.97}}


def published_markdown(tables: Mapping) -> str:
    """Each preset's Qabf and VIF on its test set beside CDDFuse's published figures, and whether it is at or above."""
    lines = ["| test set | metric | LightFusionNet | CDDFuse (published) | |", "|---|---|---|---|---|"]
    for dataset, table in tables.items():
        for metric in ("Qabf", "VIF"):
            mine = table.means.get(LIGHTFUSIONNET, {}).get(metric)
            theirs = CDDFUSE.get(dataset, {}).get(metric)
            if mine is None:
                continue
            if theirs is None:
                lines.append(f"| {dataset} | {metric} | {fmt(mine, DECIMALS[metric])} | not quoted | |")
                continue
            verdict = "at or above" if mine >= theirs else "**below**"
            lines.append(f"| {dataset} | {metric} | {fmt(mine, DECIMALS[metric])} | {theirs:.2f} | {verdict} |")
    return "\n".join(lines)


def bar_markdown(bar: QualityBar) -> str:
    """The verdict of one test set's quality bar, and why."""
    verdict = "PASS" if bar.passed else "FAIL"
    lines = [f"### {bar.dataset}: {verdict}", ""]
    for metric, ok in bar.ahead.items():
        mine, avg = bar.values[metric]
        lines.append(
            f"- {metric}: LightFusionNet {fmt(mine, DECIMALS[metric])} vs average {fmt(avg, DECIMALS[metric])} — "
            + ("ahead" if ok else "**not ahead**")
        )
    lines.append(
        f"- best or second-best on {len(bar.top2)} of {len(METRICS)} metrics "
        f"({', '.join(bar.top2) or 'none'}; best on {', '.join(bar.best) or 'none'}) — "
        + (f"meets the bar of {bar.min_top2}" if bar.enough_top2 else f"**below the bar of {bar.min_top2}**")
    )
    return "\n".join(lines)


def _ms(value) -> str:
    """Milliseconds for the efficiency table; ``—`` when not timed."""
    return "—" if value is None else f"{value:.1f}"


def efficiency_markdown(eff: Mapping[str, dict], pair_text: str) -> str:
    """The efficiency table (parameters, MACs, FLOPs, CPU ms) of :func:`.timing.efficiency`, and how it was timed."""
    meta = eff.get("_meta", {})
    lines = ["| Method | Parameters | MACs (G) | FLOPs (G) | CPU ms per pair |", "|---|---|---|---|---|"]
    for name, row in eff.items():
        if name.startswith("_"):
            continue
        macs = None if row["macs"] is None else row["macs"] / 1e9
        flops = None if row["flops"] is None else row["flops"] / 1e9
        lines.append(
            f"| {name} | {row['parameters']:,} | {fmt(macs, 3) if macs is not None else '—'} "
            f"| {fmt(flops, 3) if flops is not None else '—'} | {_ms(row['ms'])} |"
        )
    lines.append(
        '| *paper, LightFusionNet* | 0.004 M | 0.29 (its "FLOPS") | — '
        '| Table 1 "Time": 20.05 on the 42 PET-MRI test pairs (unit not stated) |'
    )
    load = meta.get("loadavg")
    load_text = ""
    if load is not None:
        load_text = f" Load average at the time: {load[0]:.2f} on {meta.get('cpus')} CPUs."
        if meta.get("cpus") and load[0] > 0.5 * meta["cpus"]:
            load_text += (
                " **The machine was busy with other work while timing, so these milliseconds are upper "
                "bounds; rerun on an idle machine for figures to quote.**"
            )
    lines += [
        "",
        f"MACs are multiply-accumulates of one forward pass on a {meta.get('shape', '256x256')} pair, counted with "
        '`torch.utils.flop_counter` (convolutions only); FLOPs = 2 × MACs. The paper\'s "0.29 G FLOPS" matches the '
        f'MAC count. CPU ms: median of {meta.get("repeats")} calls of `fuse(..., device="cpu")` (or `fuse_baseline`) '
        f"on the in-memory {pair_text} ({meta.get('shape')}) after {meta.get('warmup')} warm-up calls, "
        f"`torch.set_num_threads({meta.get('threads')})`, colour handling included, no file I/O; the network ran "
        f"on the engine's `{meta.get('backend', 'torch')}` backend (`onnx` is ONNX Runtime, `torch` eager PyTorch)"
        + (f", on {meta['cpu']}" if meta.get("cpu") else "")
        + f".{load_text}",
    ]
    return "\n".join(lines)


def training_notes(weights: Mapping[str, dict]) -> list[str]:
    """Markdown notes on presets trained for fewer than 50 epochs: from scratch (not fully trained) or continued."""
    short = [p for p, w in weights.items() if isinstance(w.get("epochs"), int) and w["epochs"] < 50]
    scratch = [p for p in short if not weights[p].get("started_from")]
    out = []
    if scratch:
        out += [
            f"> The weights of {', '.join(scratch)} were trained for fewer than 50 epochs; the network rows "
            "describe those weights, not a fully trained LightFusionNet.",
            "",
        ]
    for p in short:
        if p not in scratch:
            out += [
                f"> {p}'s {weights[p]['epochs']} epochs continue the training of an earlier weight file "
                f"(sha256 `{weights[p]['started_from']}`; docs/balance.md).",
                "",
            ]
    return out


def results_markdown(computed: Mapping, folder: Path) -> str:
    """The text of ``docs/results.md`` from :func:`.evaluation.write_results`'s numbers."""
    tables = computed["tables"]
    bars = computed["bars"]
    min_top2 = next(iter(bars.values())).min_top2 if bars else MIN_TOP2
    out = document_head(
        "LightFusionNet: evaluation on the Harvard test sets",
        f"Made by `{computed['command']}` on {computed['date']} (data root `{computed['data_root']}`, "
        f"{computed['seconds'] / 60:.1f} min, Python {computed['python']}).",
        None
        if computed.get("limit") is None
        else (
            f"only the first {computed['limit']} test pairs of each dataset were evaluated; "
            "these numbers are not the full test sets."
        ),
    )
    out += [
        "Test pairs: " + ", ".join(f"{d} {len(t.pairs)}" for d, t in tables.items()) + ".",
        "",
        how_to_read(min_top2),
        "",
        "## Weights evaluated",
        "",
        "The bundled presets, as their sidecars describe them:",
        "",
        _weights_table(computed["weights"]),
        "",
    ]
    shas = {}
    for preset, info in computed["weights"].items():
        if info.get("sha256"):
            shas.setdefault(info["sha256"], []).append(preset)
    for same in shas.values():
        if len(same) > 1:
            out += [f"> {', '.join(same)} are the same weight file (same sha256): their rows are identical.", ""]
    out += training_notes(computed["weights"])
    out += ["## Quality bar", ""]
    for bar in bars.values():
        out += [bar_markdown(bar), ""]
    out += ["## Table 1: each preset on its own test set", ""]
    for dataset, table in tables.items():
        rows = _table1_rows(table)
        out += [f"### {dataset} ({len(table.pairs)} test pairs)", "", metric_table(table.means, rows), ""]
    out += [
        "## Against the strongest published model",
        "",
        "CDDFuse has 1.19 M parameters, about 340 times LightFusionNet's. Its figures are as published "
        "(two decimals), not measured here; a preset counts as at or above when its own figure is at least the "
        "published one as written (0.676 is below 0.68).",
        "",
        published_markdown(tables),
        "",
    ]
    cross = [d for d in tables if d in CROSS and cross_name(CROSS[d]) in tables[d].scores]
    if cross:
        out += [
            "## Table 2: cross-dataset",
            "",
            "The preset trained on the other functional dataset, on this test set, next to the in-domain "
            "preset and the baselines (marks over all rows of each table).",
            "",
        ]
        for dataset in cross:
            table = tables[dataset]
            name = cross_name(CROSS[dataset])
            rows = [*_table1_rows(table), name]
            labels = {LIGHTFUSIONNET: f"{LIGHTFUSIONNET} ({dataset} weights, in-domain)"}
            out += [
                f"### {dataset} test, {CROSS[dataset]} weights ({len(table.pairs)} pairs)",
                "",
                metric_table(table.means, rows, labels=labels),
                "",
            ]
    if computed.get("balance"):
        out += [
            "## The balance b inside the hot spots",
            "",
            "The bundled PET-MRI and SPECT-MRI presets take a balance b in [0, 1] (`fuse(..., balance=b)`, "
            "`lightfusion fuse --balance B`, the widget's slider), from anatomy first (0) to function first "
            "(1); Table 1 shows each at its default b (Weights evaluated). Each row is the mean over the test "
            "pairs of the two hot-spot measures (see How to read this) at one b, beside pixel max, average and "
            "the Laplacian pyramid; `docs/balance.png` draws the same curves. The row b = auto fuses each "
            'pair at the b chosen for it at fusion time (`balance="auto"`, the widget\'s Auto box; '
            'docs/balance.md, "A b chosen for each pair").',
            "",
            balance_markdown(computed["balance"]),
            "",
        ]
    out += ["## Efficiency", "", efficiency_markdown(computed["efficiency"], computed["efficiency_pair"]), ""]
    if computed["sheets"]:
        out += ["## Contact sheets", ""]
        for dataset, path in computed["sheets"].items():
            rel = Path(path).relative_to(folder) if Path(path).is_relative_to(folder) else Path(path)
            columns = contact_columns(dataset)
            names = ", ".join(computed["contact_pairs"][dataset])
            out += [
                f"### {dataset}",
                "",
                f"![{dataset} contact sheet]({rel.as_posix()})",
                "",
                f"Rows: test pairs {names}. Columns: {', '.join(columns)}. The last two columns are the "
                "network's mean attention and surprise over its channels for the functional image's "
                "stream, each stretched between its 1st and 99th percentile and shown in viridis "
                "(dark blue low, yellow high).",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"
