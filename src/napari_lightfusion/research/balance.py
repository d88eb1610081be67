"""The balance control measured: hot-spot curves traced by b, and ``docs/balance.png``.

A balance-conditioned preset fuses every test pair at each b of
:data:`BALANCES`; the mean of the two hot-spot measures
(:func:`napari_lightfusion.metrics.anatomy_kept`,
:func:`napari_lightfusion.metrics.function_kept`) over the pairs is one point
of the dataset's curve. Pixel max, average and the Laplacian pyramid are
measured the same way. A b *dominates* pixel average when both measures are
at or above the average's at once.

Entry point for the command line: :func:`write_balance_figure`
(``lightfusion-research balance-figure --data ROOT --out docs/balance.png``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..baselines import fuse_baseline
from ..colour import grey
from ..metrics import HOT_SPOT_MEASURES, hot_spot_scores
from ..pair_data import DATASETS, load_pairs, split_names
from .contact_sheets import assemble_sheet, save_png
from .scoring import nanmean

#: The b values of a curve.
BALANCES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))
#: Datasets with a functional image, where the balance matters.
FUNCTIONAL = ("PET-MRI", "SPECT-MRI")
#: Baselines drawn as points beside the curves.
REFERENCES = ("max", "average", "laplacian")
#: The b values of the fused PET-MRI pair shown in the figure.
SHOWN_BALANCES = (0.0, 0.5, 1.0)


def hot_spot_means(fused_pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean of each hot-spot measure over ``(fused, mri, other)`` triples in [0, 1]."""
    rows = [
        hot_spot_scores(grey(f) * 255.0, np.asarray(m, np.float64) * 255.0, grey(o) * 255.0) for f, m, o in fused_pairs
    ]
    return {name: nanmean(r[name] for r in rows) for name in HOT_SPOT_MEASURES}


def balance_curve(
    data_root: Path,
    dataset: str,
    balances: Sequence[float] = BALANCES,
    limit: int | None = None,
    preset: str | None = None,
    weights: Path | None = None,
    split: str = "test",
    refine: bool = False,
    auto: bool = False,
) -> dict:
    """Hot-spot means of the network at each b and of the reference baselines on ``test/<dataset>``.

    ``auto`` adds ``"auto"``: the means with each pair fused at the b
    ``balance="auto"`` chooses for it (:mod:`napari_lightfusion.balance_search`),
    and the range of those b (``"chosen"``).

    ``refine`` adds the b values every 0.01 where the curve crosses pixel
    average's anatomy kept (:func:`crossing_steps`).

    ``split="validation"`` measures the validation pairs carved out of
    ``train/`` instead (:func:`.data.split_names`), for choices that must
    not look at the test set.
    Returns ``{"network": {b: means}, "baselines": {name: means}, "pairs": n}`` (and ``"auto"``).
    """
    from ..fusion import fuse

    folder, names = split_names(data_root, split, dataset)
    pairs = load_pairs(data_root, folder, dataset, names[:limit])
    preset = None if weights is not None else (preset or dataset)

    def at(b):
        return hot_spot_means(
            (
                fuse(p.anatomical, p.other, preset=preset, weights=weights, device="cpu", balance=b, maps=False).fused,
                p.anatomical,
                p.other,
            )
            for p in pairs
        )

    network = {b: at(b) for b in balances}
    baselines = {
        name: hot_spot_means((fuse_baseline(name, p.anatomical, p.other), p.anatomical, p.other) for p in pairs)
        for name in REFERENCES
    }
    if refine:
        for b in crossing_steps(network, baselines["average"]["anatomy kept"]):
            network[b] = at(b)
        network = dict(sorted(network.items()))
    curve = {"network": network, "baselines": baselines, "pairs": len(pairs)}
    if auto:
        curve["auto"] = auto_point(pairs, auto_fusions(pairs, preset, weights))
    return curve


def auto_fusions(pairs: Sequence, preset: str | None, weights: Path | None = None) -> list:
    """Each pair fused with ``balance="auto"`` (its :class:`~napari_lightfusion.fusion.FusionResult`), on the CPU."""
    from ..fusion import fuse

    return [fuse(p.anatomical, p.other, preset=preset, weights=weights, device="cpu", balance="auto") for p in pairs]


def auto_point(pairs: Sequence, results: Sequence) -> dict:
    """The hot-spot means of :func:`auto_fusions`' ``results`` and the range of the b chosen."""
    chosen = [r.balance_choice.balance for r in results]
    means = hot_spot_means((r.fused, p.anatomical, p.other) for r, p in zip(results, pairs))
    return {"means": means, "chosen": [min(chosen), max(chosen)]}


def crossing_steps(network: Mapping[float, Mapping[str, float]], anatomy: float, step: float = 0.01) -> list[float]:
    """The b values every ``step`` strictly between two neighbours of the grid whose anatomy kept brackets ``anatomy``.

    Along b the curve moves from anatomy to function, so it passes pixel
    average's anatomy kept between two grid points; if any b dominates the
    average, one near there does. These are the points worth measuring too.
    """
    grid = sorted(network)
    out = []
    for lo, hi in zip(grid, grid[1:]):
        if (network[lo]["anatomy kept"] - anatomy) * (network[hi]["anatomy kept"] - anatomy) <= 0:
            n = round((hi - lo) / step)
            out += [round(lo + i * step, 4) for i in range(1, n) if round(lo + i * step, 4) not in network]
    return out


def pick_default_balance(
    data_root: Path, dataset: str, weights: Path, like: Path, balances: Sequence[float] = BALANCES
) -> dict:
    """The default b for weight file ``weights``: the one that behaves most like weight file ``like``.

    A retrained preset must keep the behaviour of the one it replaces at its
    default b. Both are measured on the validation pairs (never the test
    set); the chosen b is the one whose two hot-spot means are nearest
    (Euclidean) to those of ``like`` at its own default b, among ``balances``
    and then every 0.01 within 0.04 of the nearest of them (a hot-spot
    measure moves by up to 0.04 per 0.01 of b near the middle of the range).
    Returns ``{"balance", "like", "chosen", "pairs", "rule"}``, what
    :func:`set_default_balance` records.
    """
    from ..weights import model_for, sha256

    reference_b = model_for(None, like).config.balance
    reference = balance_curve(data_root, dataset, (reference_b or 0.0,), weights=like, split="validation")
    target = reference["network"][reference_b or 0.0]
    curve = balance_curve(data_root, dataset, balances, weights=weights, split="validation")["network"]

    def distance(b):
        return float(np.hypot(*(curve[b][k] - target[k] for k in HOT_SPOT_MEASURES)))

    near = min(curve, key=distance)
    finer = [round(near + 0.01 * i, 2) for i in range(-4, 5)]
    finer = [b for b in finer if 0.0 <= b <= 1.0 and b not in curve]
    if finer:
        curve.update(balance_curve(data_root, dataset, finer, weights=weights, split="validation")["network"])
    best = min(curve, key=distance)
    return {
        "balance": float(best),
        "like": {"sha256": sha256(Path(like)), "balance": reference_b, **target},
        "chosen": {**curve[best], "distance": distance(best)},
        "pairs": reference["pairs"],
        "rule": (
            "nearest hot-spot means to the replaced preset's on the validation pairs, "
            "b on a 0.05 grid and every 0.01 within 0.04 of the nearest there"
        ),
    }


def set_default_balance(weights: Path, choice: dict) -> dict:
    """Write ``choice["balance"]`` into the sidecar of ``weights`` as its default b, with how it was chosen."""
    from ..model import check_balance
    from ..weights import read_sidecar

    side = read_sidecar(Path(weights))
    if side.get("model", {}).get("balance") is None:
        raise ValueError(f"{weights} is not a balance-conditioned network")
    side["model"]["balance"] = check_balance(choice["balance"])
    side["default_balance"] = choice
    Path(weights).with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
    return side


def dominating(network: Mapping[float, Mapping[str, float]], reference: Mapping[str, float]) -> list[float]:
    """The b values whose measures are all at or above ``reference``'s (pixel average's)."""
    return [b for b, means in network.items() if all(means[k] >= reference[k] for k in HOT_SPOT_MEASURES)]


def balance_markdown(curves: Mapping[str, dict]) -> str:
    """One table per dataset: the hot-spot measures at each b and of the baselines; b dominating average in bold."""
    out = []
    for dataset, curve in curves.items():
        average = curve["baselines"]["average"]
        wins = dominating(curve["network"], average)
        out += [
            f"### {dataset} ({curve['pairs']} test pairs)",
            "",
            "| method | anatomy kept ↑ | function kept ↑ |",
            "|---|---|---|",
        ]
        for name, means in curve["baselines"].items():
            label = "Laplacian pyramid" if name == "laplacian" else f"pixel {name}"
            out.append(f"| {label} | {means['anatomy kept']:.3f} | {means['function kept']:.3f} |")
        for b, means in curve["network"].items():
            mark = "**" if b in wins else ""
            out.append(
                f"| {mark}LightFusionNet b = {b:g}{mark} | {mark}{means['anatomy kept']:.3f}{mark} | "
                f"{mark}{means['function kept']:.3f}{mark} |"
            )
        auto = curve.get("auto")
        if auto is not None:
            means, (low, high) = auto["means"], auto["chosen"]
            mark = "**" if all(means[k] >= average[k] for k in HOT_SPOT_MEASURES) else ""
            out.append(
                f"| {mark}LightFusionNet b = auto (per pair: {low:g}–{high:g}){mark} | "
                f"{mark}{means['anatomy kept']:.3f}{mark} | {mark}{means['function kept']:.3f}{mark} |"
            )
        if wins:
            margin = max(min(curve["network"][b][k] - average[k] for k in HOT_SPOT_MEASURES) for b in wins)
            verdict = (
                f"b = {', '.join(f'{b:g}' for b in wins)} (bold) dominate pixel average: both measures at "
                f"or above its own at once (by at most {margin:.3f} on the nearer one)."
            )
        else:
            verdict = "No b measured dominates pixel average."
        verdict += (
            " Measured: every 0.05, and every 0.01 between the two grid points where the curve crosses "
            "the average's anatomy kept."
        )
        if auto is not None:
            leads = [auto["means"][k] - average[k] for k in HOT_SPOT_MEASURES]
            verdict += (
                f' b = auto (`balance="auto"`: each pair fused at the b whose worse lead over pixel average is '
                f"largest, chosen with these same measures, so not a held-out score) leads it by "
                f"{leads[0]:+.3f} / {leads[1]:+.3f}."
            )
        out += ["", verdict, ""]
    return "\n".join(out).rstrip()


# --------------------------------------------------------------------------
# the figure

_COLOURS = {"PET-MRI": (230, 120, 30), "SPECT-MRI": (40, 130, 230)}
_MARKS = {"max": "triangle", "average": "square", "laplacian": "diamond"}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _mark(draw, kind: str, x: float, y: float, r: int, colour) -> None:
    if kind == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], outline=colour, width=2)
    elif kind == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], outline=colour, width=2)
    elif kind == "star":  # five points, filled
        points = [
            (
                x + (r if k % 2 == 0 else r / 2.5) * np.sin(k * np.pi / 5),
                y - (r if k % 2 == 0 else r / 2.5) * np.cos(k * np.pi / 5),
            )
            for k in range(10)
        ]
        draw.polygon(points, fill=colour)
    elif kind == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], outline=colour, width=2)
    else:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def curve_plot(curves: Mapping[str, dict], size: int = 560) -> np.ndarray:
    """The (anatomy kept, function kept) plane with one curve per dataset and the baselines' points."""
    from PIL import Image, ImageDraw

    left, bottom, top, right = 70, 60, 40, 150
    w = h = size
    image = Image.new("RGB", (w + left + right, h + top + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)

    def xy(anatomy: float, function: float) -> tuple[float, float]:
        return left + anatomy * w, top + (1.0 - function) * h

    for t in np.linspace(0, 1, 6):
        x, y = xy(t, t)
        draw.line([(x, top), (x, top + h)], fill=(225, 225, 225))
        draw.line([(left, y), (left + w, y)], fill=(225, 225, 225))
        draw.text((x - 10, top + h + 6), f"{t:.1f}", fill=(0, 0, 0), font=small)
        draw.text((left - 32, y - 7), f"{t:.1f}", fill=(0, 0, 0), font=small)
    draw.rectangle([left, top, left + w, top + h], outline=(0, 0, 0))
    draw.text((left + w // 2 - 130, top + h + 30), "anatomy kept (hot-spot SSIM to the MRI)", fill=(0, 0, 0), font=font)
    draw.text((8, top - 30), "function kept (hot-spot SSIM to the functional luma)", fill=(0, 0, 0), font=font)
    legend_y = top + 10
    for dataset, curve in curves.items():
        colour = _COLOURS.get(dataset, (0, 0, 0))
        points = [xy(m["anatomy kept"], m["function kept"]) for _, m in sorted(curve["network"].items())]
        draw.line(points, fill=colour, width=3)
        for (b, _), (x, y) in zip(sorted(curve["network"].items()), points):
            _mark(draw, "dot", x, y, 4, colour)
            if b in SHOWN_BALANCES:
                draw.text((x + 6, y - 16), f"b={b:g}", fill=colour, font=small)
        for name, means in curve["baselines"].items():
            _mark(draw, _MARKS[name], *xy(means["anatomy kept"], means["function kept"]), 6, colour)
        if "auto" in curve:
            x, y = xy(curve["auto"]["means"]["anatomy kept"], curve["auto"]["means"]["function kept"])
            _mark(draw, "star", x, y, 8, colour)
        draw.line([(left + w + 12, legend_y + 8), (left + w + 36, legend_y + 8)], fill=colour, width=3)
        draw.text((left + w + 42, legend_y), dataset, fill=colour, font=font)
        legend_y += 24
    for name, kind in _MARKS.items():
        _mark(draw, kind, left + w + 24, legend_y + 8, 6, (60, 60, 60))
        draw.text(
            (left + w + 42, legend_y),
            f"pixel {name}" if name != "laplacian" else "Laplacian",
            fill=(0, 0, 0),
            font=font,
        )
        legend_y += 24
    _mark(draw, "star", left + w + 24, legend_y + 8, 8, (60, 60, 60))
    draw.text((left + w + 42, legend_y), "b = auto", fill=(0, 0, 0), font=font)
    legend_y += 24
    draw.text((left + w + 12, legend_y + 4), "line: network, b=0..1", fill=(0, 0, 0), font=small)
    return np.asarray(image)


def fused_strip(
    data_root: Path, name: str = "11.png", preset: str = "PET-MRI", balances: Sequence[float] = SHOWN_BALANCES
) -> np.ndarray:
    """One PET-MRI test pair: MRI, PET and the network's fusion at each of ``balances``, labelled."""
    from ..fusion import fuse

    (pair,) = load_pairs(data_root, "test", "PET-MRI", [name])
    tiles = [pair.anatomical, pair.other]
    tiles += [
        fuse(pair.anatomical, pair.other, preset=preset, device="cpu", balance=b, maps=False).fused for b in balances
    ]
    labels = ["MRI", "PET", *(f"b = {b:g}" for b in balances)]
    return assemble_sheet([tiles], labels)


def _stack(top: np.ndarray, bottom: np.ndarray, gap: int = 12) -> np.ndarray:
    width = max(top.shape[1], bottom.shape[1])

    def pad(img):
        out = np.full((img.shape[0], width, 3), 255, np.uint8)
        out[:, : img.shape[1]] = img
        return out

    return np.concatenate([pad(top), np.full((gap, width, 3), 255, np.uint8), pad(bottom)], axis=0)


def write_balance_figure(
    data_root: Path, out_png: Path, limit: int | None = None, datasets: Sequence[str] = FUNCTIONAL
) -> dict:
    """Measure the curves and write ``out_png``: the curve plot over one PET-MRI pair fused at three b.

    Returns the curves (as :func:`balance_curve` gives them) and, per
    dataset, the b values that dominate pixel average.
    """
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    curves = {d: balance_curve(data_root, d, limit=limit, refine=True, auto=True) for d in datasets}
    figure = _stack(curve_plot(curves), fused_strip(data_root))
    save_png(Path(out_png), figure)
    return {
        "curves": curves,
        "dominating": {d: dominating(c["network"], c["baselines"]["average"]) for d, c in curves.items()},
    }
