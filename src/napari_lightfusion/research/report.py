"""Writing the evaluation's documents: markdown tables and contact-sheet PNGs.

Nothing here computes a metric; :mod:`napari_lightfusion.research.evaluation` and
:mod:`napari_lightfusion.research.ablation` hand their numbers over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..metrics import METRICS

#: Decimals per metric in the tables.
DECIMALS = {"EN": 3, "SD": 2, "SF": 2, "AG": 3, "MI": 3, "SCD": 3, "CC": 3, "Qabf": 3, "SSIM": 3, "VIF": 3}

#: Grey of the lines between contact-sheet tiles (the images have black backgrounds).
GAP_GREY = 96

#: Viridis sampled at 0, 1/8, ..., 1 (the values of vispy/matplotlib's
#: "viridis"), interpolated linearly by :func:`colormap`.
_VIRIDIS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.279, 0.175, 0.483],
        [0.230, 0.321, 0.545],
        [0.173, 0.447, 0.558],
        [0.128, 0.565, 0.551],
        [0.155, 0.682, 0.503],
        [0.363, 0.787, 0.387],
        [0.669, 0.862, 0.195],
        [0.993, 0.906, 0.144],
    ]
)


# --------------------------------------------------------------------------
# images


def stretch(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Map ``values`` linearly so its ``low``-th..``high``-th percentiles span [0, 1] (clipped)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        return np.zeros_like(values)
    return np.clip(np.nan_to_num((values - lo) / (hi - lo)), 0.0, 1.0)


def colormap(values: np.ndarray) -> np.ndarray:
    """Colour values in [0, 1] with viridis (dark blue -> yellow): ``(..., 3)`` floats in [0, 1]."""
    x = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_VIRIDIS))
    return np.stack([np.interp(x, stops, _VIRIDIS[:, c]) for c in range(3)], axis=-1)


def to_rgb8(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A float image in [0, 1] (grey or RGB) as uint8 RGB; ``None`` is a dark grey tile."""
    if image is None:
        return np.full((*shape, 3), 40, np.uint8)
    image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.round(image[..., :3] * 255.0).astype(np.uint8)


def text_strip(labels: Sequence[str], width: int, gap: int, height: int = 24) -> np.ndarray:
    """A white-on-black header row with ``labels`` centred over columns of ``width``.

    Uses Pillow (a dependency of scikit-image) for the text; without it the
    row is left blank.
    """
    total = len(labels) * width + (len(labels) - 1) * gap
    strip = np.zeros((height, total, 3), np.uint8)
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # pragma: no cover - Pillow comes with scikit-image
        return strip
    canvas = Image.fromarray(strip)
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        font = ImageFont.load_default()
    for i, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x = i * (width + gap) + max(0, (width - (right - left)) // 2)
        y = max(0, (height - (bottom - top)) // 2 - top)
        draw.text((x, y), label, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def assemble_sheet(rows: Sequence[Sequence[np.ndarray | None]], labels: Sequence[str], gap: int = 4) -> np.ndarray:
    """Tiles (float [0, 1] grey/RGB, or ``None``) in a grid under a header of ``labels``."""
    first = next(t for row in rows for t in row if t is not None)
    shape = first.shape[:2]
    h, w = shape
    ncols = len(labels)
    total_w = ncols * w + (ncols - 1) * gap
    parts = [text_strip(labels, w, gap)]
    for row in rows:
        if len(row) != ncols:
            raise ValueError(f"a row has {len(row)} tiles for {ncols} labels")
        line = np.full((h, total_w, 3), GAP_GREY, np.uint8)
        for i, tile in enumerate(row):
            line[:, i * (w + gap) : i * (w + gap) + w] = to_rgb8(tile, shape)
        parts += [np.full((gap, total_w, 3), GAP_GREY, np.uint8), line]
    return np.concatenate(parts, axis=0)


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 image with :func:`skimage.io.imsave`."""
    from skimage.io import imsave

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(str(path), np.asarray(image, np.uint8), check_contrast=False)
    return path


# --------------------------------------------------------------------------
# markdown


def fmt(value: float | None, decimals: int = 3) -> str:
    if value is None:
        return "—"
    value = float(value)
    if not np.isfinite(value):
        return "nan"
    return f"{value:.{decimals}f}"


def marks(means: Mapping[str, Mapping[str, float]], rows: Sequence[str], metrics: Iterable[str] = METRICS) -> dict:
    """``(row, metric) -> "best" | "second"`` by competition rank (ties share a mark).

    Ranks the values *as printed* (rounded to :data:`DECIMALS`), so that two
    cells that read the same carry the same mark.
    """
    from .evaluation import ranks

    out = {}
    for metric in metrics:
        shown = {r: {metric: round(float(means[r][metric]), DECIMALS.get(metric, 3))} for r in rows}
        for row, rank in ranks(shown, metric, rows).items():
            if rank == 1:
                out[row, metric] = "best"
            elif rank == 2:
                out[row, metric] = "second"
    return out


def _marked(text: str, mark: str | None) -> str:
    if mark == "best":
        return f"**{text}**"
    if mark == "second":
        return f"*{text}*"
    return text


def metric_table(
    means: Mapping[str, Mapping[str, float]],
    rows: Sequence[str],
    labels: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    metrics: Sequence[str] = METRICS,
    mark: bool = True,
) -> str:
    """A markdown table: one row per method, the ten metrics, best bold and second italic.

    ``extra``: more columns, ``{column: {row: text}}``, placed after the
    method name.
    """
    labels = labels or {}
    extra = extra or {}
    found = marks(means, rows, metrics) if mark else {}
    head = ["Method", *extra, *(f"{m} ↑" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [labels.get(row, row), *(extra[c].get(row, "") for c in extra)]
        cells += [_marked(fmt(means[row][m], DECIMALS.get(m, 3)), found.get((row, m))) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


METRIC_HELP = {
    "EN": "entropy of the fused image's 256-level histogram, in bits: how many grey levels it really uses (noise raises it too).",
    "SD": "standard deviation of the fused image on 0..255: global contrast.",
    "SF": "spatial frequency, root mean square of neighbour differences: how much edge and texture activity there is.",
    "AG": "average gradient magnitude: sharpness.",
    "MI": "mutual information of the fused image with each source, summed, in nats: how much of each source's grey-level structure survives.",
    "SCD": "sum of the correlations of differences: what the fused image adds to one source should look like the other source (at most 2).",
    "CC": "mean Pearson correlation of the fused image with the two sources (at most 1).",
    "Qabf": "Xydeas–Petrovic edge preservation: the share of the sources' edge strength and orientation found in the fused image (at most about 0.975).",
    "SSIM": "structural similarity of the fused image to each source, summed (at most 2).",
    "VIF": "visual information fidelity of the fused image to each source, summed (about 2 when all three images are equal).",
}


def how_to_read(min_top2: int) -> str:
    lines = [
        "## How to read this",
        "",
        "Each test pair (an MRI slice and the registered CT, PET or SPECT slice of the same brain, "
        "from the Harvard Whole Brain Atlas) is fused by every method, each fused image is scored "
        "against its two sources, and the tables give the mean over the test pairs. "
        "**For every metric, higher is better.** In each column the best value is **bold** and the "
        "second-best *italic* (ties share the mark).",
        "",
    ]
    lines += [f"- **{m}**: {METRIC_HELP[m]}" for m in METRICS]
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
        "like a viewer's overlay. All metrics are computed on grey 0..255 images: the luminance of the "
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
    from .evaluation import TABLE1_METHODS

    return [m for m in TABLE1_METHODS if m in table.scores]


def _weights_table(weights: Mapping[str, dict]) -> str:
    lines = [
        "| preset | model (width/R/attention/conv) | epochs | lr | loss weights (I/G/SSIM) | train s | sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, info in weights.items():
        if "error" in info:
            lines.append(f"| {preset} | {info['error']} | | | | | |")
            continue
        model = info.get("model") or {}
        lw = info.get("loss_weights") or {}
        lines.append(
            f"| {preset} | {model.get('width')}/{model.get('reduction')}/{model.get('attention')}/{model.get('conv')} "
            f"| {info.get('epochs')} | {info.get('lr')} "
            f"| {lw.get('intensity', '?'):g}/{lw.get('gradient', '?'):g}/{lw.get('ssim', '?'):g} "
            f"| {info.get('train_seconds')} | `{info.get('sha256')}` |"
        )
    return "\n".join(lines)


def bar_markdown(bar) -> str:
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
    return "—" if value is None else f"{value:.1f}"


def efficiency_markdown(eff: Mapping[str, dict], pair_text: str) -> str:
    meta = eff.get("_meta", {})
    lines = [
        "| Method | Parameters | MACs (G) | FLOPs (G) | CPU ms per pair |",
        "|---|---|---|---|---|",
    ]
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
        "| *paper, LightFusionNet* | 0.004 M | 0.29 (its \"FLOPS\") | — | Table 1 \"Time\": 20.05 on the 42 PET-MRI test pairs (unit not stated) |"
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
        "`torch.utils.flop_counter` (convolutions only); FLOPs = 2 × MACs. The paper's \"0.29 G FLOPS\" matches the "
        f"MAC count. CPU ms: median of {meta.get('repeats')} calls of `fuse(..., device=\"cpu\")` (or `fuse_baseline`) "
        f"on the in-memory {pair_text} ({meta.get('shape')}) after {meta.get('warmup')} warm-up calls, "
        f"`torch.set_num_threads({meta.get('threads')})`, colour handling included, no file I/O; the network ran "
        f"on the engine's `{meta.get('backend', 'torch')}` backend (`onnx` is ONNX Runtime, `torch` eager PyTorch)."
        f"{load_text}",
    ]
    return "\n".join(lines)


def results_markdown(c: Mapping, folder: Path) -> str:
    """The text of ``docs/results.md`` from :func:`evaluation.write_results`'s numbers."""
    from .evaluation import CROSS, LIGHTFUSIONNET, MIN_TOP2, cross_name, contact_columns

    tables = c["tables"]
    bars = c["bars"]
    min_top2 = next(iter(bars.values())).min_top2 if bars else MIN_TOP2
    out = [
        "# LightFusionNet: evaluation on the Harvard test sets",
        "",
        f"Made by `{c['command']}` on {c['date']} (data root `{c['data_root']}`, "
        f"{c['seconds'] / 60:.1f} min, Python {c['python']}).",
        "",
    ]
    if c.get("limit") is not None:
        out += [
            f"> **Trial run:** only the first {c['limit']} test pairs of each dataset were evaluated; "
            "these numbers are not the full test sets.",
            "",
        ]
    out += [
        "Test pairs: " + ", ".join(f"{d} {len(t.pairs)}" for d, t in tables.items()) + ".",
        "",
        how_to_read(min_top2),
        "",
        "## Weights evaluated",
        "",
        "The bundled presets, as their sidecars describe them:",
        "",
        _weights_table(c["weights"]),
        "",
    ]
    shas = {}
    for preset, info in c["weights"].items():
        if info.get("sha256"):
            shas.setdefault(info["sha256"], []).append(preset)
    for same in shas.values():
        if len(same) > 1:
            out += [f"> {', '.join(same)} are the same weight file (same sha256): their rows are identical.", ""]
    short = [p for p, w in c["weights"].items() if isinstance(w.get("epochs"), int) and w["epochs"] < 50]
    if short:
        out += [
            f"> The weights of {', '.join(short)} were trained for fewer than 50 epochs; the network rows "
            "describe those weights, not a fully trained LightFusionNet.",
            "",
        ]
    out += ["## Quality bar", ""]
    for bar in bars.values():
        out += [bar_markdown(bar), ""]
    out += ["## Table 1: each preset on its own test set", ""]
    for dataset, table in tables.items():
        rows = _table1_rows(table)
        out += [f"### {dataset} ({len(table.pairs)} test pairs)", "", metric_table(table.means, rows), ""]
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
    out += ["## Efficiency", "", efficiency_markdown(c["efficiency"], c["efficiency_pair"]), ""]
    if c["sheets"]:
        out += ["## Contact sheets", ""]
        for dataset, path in c["sheets"].items():
            rel = Path(path).relative_to(folder) if Path(path).is_relative_to(folder) else Path(path)
            columns = contact_columns(dataset)
            names = ", ".join(c["contact_pairs"][dataset])
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
