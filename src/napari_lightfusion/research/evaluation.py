"""The paper's evaluation, measured here: Tables 1 and 2, efficiency, contact sheets.

One input convention for every method
-------------------------------------
Each test pair is read with :func:`napari_lightfusion.research.data.load_pairs`: the
anatomical MRI as a grey ``(H, W)`` float image in [0, 1] and the other
image (CT grey, PET/SPECT RGB) as given. A *method* is any callable
``method(mri, other) -> fused`` returning a float image in [0, 1], grey or
RGB; the network is ``fuse(mri, other, preset=...).fused`` and a baseline
``fuse_baseline(name, mri, other)``, so both see exactly the same arrays.

Every result is scored on a 0..255 scale with
``metrics.evaluate(fused * 255, mri * 255, grey(other) * 255)``, where
``grey`` is the BT.601 luminance of a colour image (the grey image itself
otherwise) and an RGB result is reduced to its BT.601 luminance by
``evaluate``.

Entry point for the command line: :func:`write_results` (``lightfusion
evaluate --data ROOT --out docs/results.md``).
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..baselines import BASELINES, fuse_baseline
from ..colour import luminance
from .data import DATASETS, Pair, load_pairs, pair_names
from ..metrics import METRICS, evaluate

#: A fusion method: ``method(mri, other) -> fused`` float image in [0, 1].
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Name of the network's row in the tables.
LIGHTFUSIONNET = "LightFusionNet"

#: The methods of Table 1, in table order; also the contenders of the quality bar.
TABLE1_METHODS: tuple[str, ...] = (*BASELINES, LIGHTFUSIONNET)

#: Metrics on which the network must beat pixel averaging to pass the quality bar.
QUALITY_METRICS: tuple[str, ...] = ("MI", "Qabf", "SSIM", "VIF")

#: Least number of the ten metrics on which the network must be best or
#: second-best among :data:`TABLE1_METHODS` (the evaluation issue's bar).
MIN_TOP2 = 6

#: Cross-dataset evaluation (the paper's Table 2): test set -> preset trained on the other set.
CROSS = {"PET-MRI": "SPECT-MRI", "SPECT-MRI": "PET-MRI"}

#: Edge of the square pair used for MACs and timings, as in the paper.
SIZE = 256


def cross_name(preset: str) -> str:
    """Table label of the network with another dataset's preset."""
    return f"{LIGHTFUSIONNET} ({preset} weights)"


# --------------------------------------------------------------------------
# methods


def network_method(
    preset: str | None = None, weights: Path | None = None, device: str = "cpu"
) -> Method:
    """The network as a method: ``fuse(mri, other, preset=..., weights=...).fused``."""
    from ..fusion import fuse

    def method(mri: np.ndarray, other: np.ndarray) -> np.ndarray:
        return fuse(mri, other, preset=preset, device=device, weights=weights).fused

    method.__name__ = f"lightfusionnet_{preset or Path(weights).stem}"
    return method


def baseline_method(name: str) -> Method:
    """A classical method as a method: ``fuse_baseline(name, mri, other)``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")

    def method(mri: np.ndarray, other: np.ndarray) -> np.ndarray:
        return fuse_baseline(name, mri, other)

    method.__name__ = f"baseline_{name}"
    return method


def default_methods(dataset: str, device: str = "cpu") -> dict[str, Method]:
    """The four baselines and the bundled preset for ``dataset``, in Table 1 order."""
    methods: dict[str, Method] = {name: baseline_method(name) for name in BASELINES}
    methods[LIGHTFUSIONNET] = network_method(preset=dataset, device=device)
    return methods


def _resolve_methods(methods, dataset: str) -> dict[str, Method]:
    if methods is None:
        return default_methods(dataset)
    if isinstance(methods, Mapping):
        return dict(methods)
    resolved = {}
    defaults = default_methods(dataset)
    for name in methods:
        if name not in defaults:
            raise ValueError(f"unknown method {name!r}; give a callable or one of {', '.join(defaults)}")
        resolved[name] = defaults[name]
    return resolved


# --------------------------------------------------------------------------
# scoring


def grey(image: np.ndarray) -> np.ndarray:
    """BT.601 luminance of an RGB image, the image itself when grey (float64)."""
    image = np.asarray(image, dtype=np.float64)
    return luminance(image) if image.ndim == 3 else image


def score(fused: np.ndarray, mri: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """The ten metrics of one result, on 0..255, with the module's convention."""
    return evaluate(np.asarray(fused, np.float64) * 255.0, np.asarray(mri, np.float64) * 255.0, grey(other) * 255.0)


def _nanmean(values: Iterable[float]) -> float:
    values = np.asarray(list(values), dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclass
class EvalTable:
    """Per-pair metrics of several methods on one test set, and their means.

    ``scores[method][i]`` is the metric dict of ``pairs[i]``; ``seconds`` the
    total wall time each method spent fusing (not scoring).
    """

    dataset: str
    pairs: list[str]
    scores: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.scores)

    def mean(self, method: str) -> dict[str, float]:
        """Mean of each metric over the pairs (NaN values, if any, left out)."""
        rows = self.scores[method]
        return {m: _nanmean(r[m] for r in rows) for m in METRICS}

    @property
    def means(self) -> dict[str, dict[str, float]]:
        return {method: self.mean(method) for method in self.scores}

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "pairs": self.pairs,
            "means": self.means,
            "scores": self.scores,
            "seconds": self.seconds,
        }


def evaluate_dataset(
    data_root: Path,
    dataset: str,
    methods: Mapping[str, Method] | Iterable[str] | None = None,
    *,
    names: list[str] | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> EvalTable:
    """Score ``methods`` on every pair of ``data_root/test/<dataset>``.

    ``methods``: a mapping of table name -> method (a callable
    ``(mri, other) -> fused`` in [0, 1]), or names among the defaults
    (:func:`default_methods`: the four baselines and "LightFusionNet", the
    bundled preset of ``dataset``); ``None`` means all defaults. ``names``
    picks pairs by file name, ``limit`` keeps the first ``limit`` (for a
    quick trial). Returns an :class:`EvalTable`; its ``means`` are Table 1.
    """
    methods = _resolve_methods(methods, dataset)
    if names is None:
        names = pair_names(data_root, "test", dataset)
    if limit is not None:
        names = names[: max(0, int(limit))]
    table = EvalTable(dataset, list(names), {m: [] for m in methods}, {m: 0.0 for m in methods})
    iterator: Iterable[str] = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, desc=f"evaluate {dataset}", unit="pair")
    for name in iterator:
        (pair,) = load_pairs(data_root, "test", dataset, [name])
        for label, method in methods.items():
            start = time.perf_counter()
            fused = method(pair.anatomical, pair.other)
            table.seconds[label] += time.perf_counter() - start
            table.scores[label].append(score(fused, pair.anatomical, pair.other))
    return table


def score_weights(
    data_root: Path, dataset: str, weights: Iterable[Path], *, baselines: bool = False, progress: bool = True
) -> str:
    """A markdown table of the mean metrics of weight files (and the baselines) on one test set.

    For ``lightfusion score``: comparing training runs (two loss weightings,
    two learning rates) on the same pairs with the same code as Table 1.
    Rows are named by the weight files' parent folder and stem.
    """
    from . import report

    methods = {name: baseline_method(name) for name in BASELINES} if baselines else {}
    for path in map(Path, weights):
        if not path.is_file():
            raise FileNotFoundError(f"no weight file {path}")
        methods[f"{path.parent.name}/{path.stem}"] = network_method(weights=path)
    if not methods:
        raise ValueError("give at least one weight file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        table = evaluate_dataset(data_root, dataset, methods, progress=progress)
    return report.metric_table(table.means, list(methods)) + f"\n\n{len(table.pairs)} {dataset} test pairs."


# --------------------------------------------------------------------------
# ranking and the quality bar


def ranks(means: Mapping[str, Mapping[str, float]], metric: str, methods: Iterable[str]) -> dict[str, int | None]:
    """Competition rank of each method on ``metric`` (1 = highest; ties share a rank).

    A method's rank is one plus the number of methods with a strictly higher
    value; a NaN value gets ``None`` and is not counted.
    """
    values = {m: float(means[m][metric]) for m in methods}
    finite = [v for v in values.values() if np.isfinite(v)]
    return {
        m: (1 + sum(other > v for other in finite)) if np.isfinite(v) else None
        for m, v in values.items()
    }


@dataclass
class QualityBar:
    """Where the network stands against the baselines on one test set."""

    dataset: str
    ahead: dict[str, bool]  # metric -> network strictly above pixel average
    values: dict[str, tuple[float, float]]  # metric -> (network, average)
    top2: list[str]  # metrics where the network is best or second-best
    best: list[str]  # metrics where it is best
    min_top2: int
    contenders: tuple[str, ...]

    @property
    def ahead_of_average(self) -> bool:
        return all(self.ahead.values())

    @property
    def enough_top2(self) -> bool:
        return len(self.top2) >= self.min_top2

    @property
    def passed(self) -> bool:
        return self.ahead_of_average and self.enough_top2


def quality_bar(
    means: Mapping[str, Mapping[str, float]],
    dataset: str = "",
    *,
    network: str = LIGHTFUSIONNET,
    reference: str = "average",
    contenders: Iterable[str] = TABLE1_METHODS,
    metrics: Iterable[str] = QUALITY_METRICS,
    min_top2: int = MIN_TOP2,
) -> QualityBar:
    """Check the quality bar on mean metrics ``means[method][metric]``.

    Passes when the network is strictly ahead of ``reference`` (pixel
    average) on every one of ``metrics`` (MI, Qabf, SSIM, VIF) *and* is best
    or second-best among ``contenders`` on at least ``min_top2`` of the ten
    metrics. A NaN never counts as ahead or as top-two.
    """
    contenders = tuple(contenders)
    missing = [m for m in (network, reference, *contenders) if m not in means]
    if missing:
        raise ValueError(f"the table has no row for {', '.join(missing)}")
    ahead, values = {}, {}
    for metric in metrics:
        mine, theirs = float(means[network][metric]), float(means[reference][metric])
        values[metric] = (mine, theirs)
        ahead[metric] = bool(np.isfinite(mine) and np.isfinite(theirs) and mine > theirs)
    top2, best = [], []
    for metric in METRICS:
        rank = ranks(means, metric, contenders)[network]
        if rank is not None and rank <= 2:
            top2.append(metric)
        if rank == 1:
            best.append(metric)
    return QualityBar(dataset, ahead, values, top2, best, min_top2, contenders)


# --------------------------------------------------------------------------
# efficiency


def synthetic_pair(size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An in-memory grey + RGB pair of ``size`` x ``size`` for timings."""
    rng = np.random.default_rng(seed)
    return rng.random((size, size), dtype=np.float32), rng.random((size, size, 3), dtype=np.float32)


def time_method(
    method: Callable[[], object], *, repeats: int = 20, warmup: int = 3, threads: int | None = 2
) -> float:
    """Median wall milliseconds of ``method()`` over ``repeats`` calls after ``warmup``.

    Runs with ``torch.set_num_threads(threads)`` (restored afterwards);
    whatever ``method`` does is what is timed, so keep file I/O out of it.
    """
    import torch

    from .bench import median_ms

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return median_ms(method, repeats, warmup)
    finally:
        torch.set_num_threads(old)


def network_size(preset: str | None = None, weights: Path | None = None, config=None, size: int = SIZE) -> dict:
    """Parameters and MACs at ``size`` x ``size`` (FLOPs = 2 x MACs) of a network.

    Give a preset, a weight file, or a :class:`~napari_lightfusion.model.ModelConfig`.
    Both depend only on the architecture, so they are computed once per
    configuration and size.
    """
    from ..weights import model_for

    if config is None:
        config = model_for(preset, weights).config
    return dict(_size_of(config, size))


@lru_cache(maxsize=32)
def _size_of(config, size: int) -> dict:
    from ..model import LightFusionNet, count_macs, count_parameters

    model = LightFusionNet(config)
    macs = int(count_macs(model, size, size))
    return {"parameters": count_parameters(model), "macs": macs, "flops": 2 * macs}


def efficiency(
    preset: str = "PET-MRI",
    pair: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 2,
    baselines: Iterable[str] = BASELINES,
) -> dict[str, dict]:
    """Parameters, MACs, FLOPs and CPU ms per 256 x 256 pair, network and baselines.

    Times ``fuse(mri, other, preset, device="cpu")`` (and each baseline) on
    the in-memory ``pair`` (default :func:`synthetic_pair`, grey + RGB so
    that the colour handling is included): the median of ``repeats`` calls
    after ``warmup``, with ``threads`` torch threads. ``repeats=0`` skips
    the timings (``ms`` is then None).
    """
    from ..fusion import fuse

    mri, other = pair if pair is not None else synthetic_pair()
    out: dict[str, dict] = {}
    size = network_size(preset)

    def timed(fn):
        if repeats <= 0:
            return None
        return time_method(fn, repeats=repeats, warmup=warmup, threads=threads)

    out[LIGHTFUSIONNET] = {
        **size,
        "ms": timed(lambda: fuse(mri, other, preset=preset, device="cpu")),
    }
    for name in baselines:
        out[name] = {
            "parameters": 0,
            "macs": None,
            "flops": None,
            "ms": timed(lambda name=name: fuse_baseline(name, mri, other)),
        }
    try:
        import torch

        from ..engine import select_backend

        backend = select_backend(torch.device("cpu"))
    except (ImportError, ValueError):  # an engine without backends: plain PyTorch
        backend = "torch"
    out["_meta"] = {
        "backend": backend,
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "shape": f"{mri.shape[0]}x{mri.shape[1]}",
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "preset": preset,
    }
    return out


# --------------------------------------------------------------------------
# contact sheets


def contact_pairs(data_root: Path, dataset: str, count: int = 3) -> list[Pair]:
    """``count`` test pairs spread evenly over the sorted test set (first, middle, last)."""
    names = pair_names(data_root, "test", dataset)
    if len(names) <= count:
        picked = names
    else:
        picked = [names[int(round(i))] for i in np.linspace(0, len(names) - 1, count)]
    return load_pairs(data_root, "test", dataset, picked)


def contact_columns(dataset: str) -> list[str]:
    """Column labels of the contact sheet of ``dataset``."""
    other = DATASETS[dataset][1]
    return ["MRI", other, *BASELINES, LIGHTFUSIONNET, f"attention {other}", f"surprise {other}"]


def contact_sheet(pairs: list[Pair], dataset: str, preset: str | None = None) -> np.ndarray:
    """The contact sheet image (uint8 RGB) of ``pairs``, columns as :func:`contact_columns`.

    Attention and surprise are the network's mean maps over channels for
    the stream of the functional (non-MRI) image, each stretched between
    its 1st and 99th percentile and coloured with :func:`report.colormap`.
    """
    from . import report
    from ..fusion import fuse

    rows = []
    for pair in pairs:
        result = fuse(pair.anatomical, pair.other, preset=preset or dataset, device="cpu")
        surprise = None if result.surprise is None else result.surprise[1]
        tiles = [
            pair.anatomical,
            pair.other,
            *(fuse_baseline(name, pair.anatomical, pair.other) for name in BASELINES),
            result.fused,
            report.colormap(report.stretch(result.attention[1])),
            None if surprise is None else report.colormap(report.stretch(surprise)),
        ]
        rows.append(tiles)
    return report.assemble_sheet(rows, contact_columns(dataset))


# --------------------------------------------------------------------------
# the results document


def _weights_info(preset: str) -> dict:
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
        "loss_weights": side.get("loss_weights"),
        "model": side.get("model"),
        "train_seconds": side.get("train_seconds"),
        "sha256": side.get("sha256", "")[:12],
        "source_commit": str(side.get("source_commit", ""))[:10],
    }


def default_command(data_root: Path, out_md: Path) -> str:
    return f"lightfusion evaluate --data {shlex.quote(str(data_root))} --out {shlex.quote(str(out_md))}"


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
    command line written at the top (default: the ``lightfusion evaluate``
    line for these arguments). Returns what it computed.
    """
    from . import report

    data_root, out_md = Path(data_root), Path(out_md)
    datasets = list(datasets)
    for dataset in datasets:
        pair_names(data_root, "test", dataset)  # fail early, with the data module's message
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
                path.parent.mkdir(parents=True, exist_ok=True)
                shown = contact_pairs(data_root, dataset)
                report.save_png(path, contact_sheet(shown, dataset))
                sheets[dataset] = path
                shown_names[dataset] = [p.name for p in shown]
        timing_dataset = "PET-MRI" if "PET-MRI" in datasets else datasets[0]
        first = load_pairs(data_root, "test", timing_dataset, pair_names(data_root, "test", timing_dataset)[:1])[0]
        eff = efficiency(timing_dataset, (first.anatomical, first.other), repeats=timing_repeats)
    computed = {
        "command": command or default_command(data_root, out_md),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "data_root": str(data_root),
        "limit": limit,
        "tables": tables,
        "bars": bars,
        "sheets": sheets,
        "contact_pairs": shown_names,
        "efficiency": eff,
        "efficiency_pair": f"{timing_dataset} test pair {first.name}",
        "weights": {d: _weights_info(d) for d in sorted({*datasets, *(CROSS[d] for d in datasets if d in CROSS)})},
        "seconds": time.perf_counter() - started,
        "python": sys.version.split()[0],
    }
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(report.results_markdown(computed, out_md.parent))
    return computed


def evaluate_command(data: Path, out: Path) -> Path:
    """``lightfusion evaluate --data ROOT --out docs/results.md``: write the results and say where."""
    write_results(data, out, command=default_command(data, out))
    return Path(out)
