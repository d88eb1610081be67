"""Cost of a method: wall-clock timings, and a network's parameters, MACs and FLOPs.

Timings are medians of repeated calls after a warm-up, on in-memory arrays
(nothing timed reads or writes files). Used by the results' efficiency
table, the ablations and ``lightfusion-research bench``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..baselines import BASELINES, fuse_baseline
from .bench_table import cpu_text
from .tables import LIGHTFUSIONNET

#: Edge of the square pair used for MACs and timings, as in the paper.
SIZE = 256


#: Clocks a benchmark can time with: wall time, or the CPU time of the whole process.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def blocks_ms(methods: dict, repeats: dict, block: int = 5, clock: str = "wall") -> dict:
    """Median milliseconds of each method, the methods taking turns block by block.

    ``methods``: name -> callable; ``repeats``: name -> timed runs. Each
    turn gives every method still short of its runs one block: an untimed
    call (the other method's threads may still be spinning, and a first
    call plans memory) and then up to ``block`` timed calls. ``clock``:
    "wall", or "cpu" for the CPU time of all the process's threads (which
    other programs on a busy machine do not inflate, but which counts
    threads that spin while they wait: compare methods on it with one thread).
    """
    now = CLOCKS[clock]
    times = {name: [] for name in methods}
    while any(len(times[name]) < repeats[name] for name in methods):
        for name, fn in methods.items():
            left = repeats[name] - len(times[name])
            if left <= 0:
                continue
            fn()
            for _ in range(min(block, left)):
                start = now()
                fn()
                times[name].append(now() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def synthetic_pair(size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An in-memory grey + RGB pair of ``size`` x ``size`` for timings."""
    rng = np.random.default_rng(seed)
    return rng.random((size, size), dtype=np.float32), rng.random((size, size, 3), dtype=np.float32)


def time_method(method: Callable[[], object], *, repeats: int = 20, warmup: int = 3, threads: int | None = 2) -> float:
    """Median wall milliseconds of ``method()`` over ``repeats`` calls after ``warmup``.

    Runs with ``torch.set_num_threads(threads)`` (restored afterwards);
    whatever ``method`` does is what is timed, so keep file I/O out of it.
    """
    import torch

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
    """Parameters, MACs and FLOPs of a fresh network of ``config`` (cached: they depend on nothing else)."""
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

    out[LIGHTFUSIONNET] = {**size, "ms": timed(lambda: fuse(mri, other, preset=preset, device="cpu"))}
    for name in baselines:
        out[name] = {
            "parameters": 0,
            "macs": None,
            "flops": None,
            "ms": timed(lambda name=name: fuse_baseline(name, mri, other)),
        }
    import torch

    from ..engine import select_backend

    backend = select_backend(torch.device("cpu"))
    out["_meta"] = {
        "backend": backend,
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "shape": f"{mri.shape[0]}x{mri.shape[1]}",
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "cpu": cpu_text(),
        "preset": preset,
    }
    return out
