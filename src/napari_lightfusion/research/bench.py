"""``lightfusion bench``: how fast the fusion runs here, against eager PyTorch, and its memory.

Each case runs in a fresh Python subprocess, so that one case's memory
(ONNX Runtime arenas, PyTorch caches) does not inflate the next one's peak,
with ``threads`` CPU threads for both backends. Timings are medians over
repeated runs after a warm-up; nothing in a timed section reads or writes
files (inputs are random arrays made beforehand). Peak memory is the
subprocess's peak resident set size (``ru_maxrss`` on Unix; on Windows the
peak working set from psutil, which napari installs; else not reported),
which sees PyTorch's and ONNX Runtime's native allocations (``tracemalloc``
would not); it is read after the fast path's runs and before the eager
ones, and includes the interpreter and the imported libraries
(``base_rss_mib``, read before the first fusion, says how much).

Cases:

* ``pair``: one ``size`` x ``size`` pair. ``fast_ms`` is
  :func:`napari_lightfusion.engine.run_slice` with the automatic backend
  (ONNX Runtime on the CPU when installed; tiled as usual), ``fuse_ms`` the
  whole :func:`napari_lightfusion.fuse` (normalisation and result
  assembly included), ``eager_ms`` the eager PyTorch forward
  ``model(a, b, return_maps=True)`` on the whole image, ``speedup`` is
  ``eager_ms / fast_ms``.
* ``stack``: ``fuse`` on a ``Z x size x size`` stack; eager is the PyTorch
  forward slice by slice.
* ``big``: ``fuse`` on a ``big x big`` uint16 pair (tiled); eager is the
  engine's PyTorch backend with the same tiles (the untiled eager forward
  would need several GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from .timing import median_ms

_MARK = "LIGHTFUSION-BENCH-ROW "


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process so far, in MiB; None where it cannot be read.

    Unix: ``resource.getrusage``. Windows (no ``resource`` module): the peak
    working set from psutil (a dependency of napari) if it can be imported, else None.
    """
    try:
        import resource
    except ImportError:
        try:
            import psutil
        except ImportError:
            return None
        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)
        return None if peak is None else round(peak / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10, 1)  # bytes on macOS, KiB elsewhere


def run_case(case: dict) -> dict:
    """Run one benchmark case in this process and return its row (see module doc).

    ``case``: ``kind`` ("pair", "stack" or "big"), ``size``, ``slices``,
    ``repeats``, ``threads``, ``preset``, ``tile`` (None: the default).
    Meant to run in a fresh subprocess (:func:`run_benchmark` does that).
    """
    import numpy as np
    import torch

    from .. import __version__
    from ..engine import DEFAULT_TILE, resolve_device, run_slice, select_backend
    from ..fusion import fuse
    from ..weights import model_for

    threads = int(case["threads"])
    torch.set_num_threads(threads)
    kind, size, slices = case["kind"], int(case["size"]), int(case.get("slices", 1))
    repeats = int(case["repeats"])
    tile = int(case.get("tile") or DEFAULT_TILE)
    preset = case.get("preset", "PET-MRI")
    cpu = resolve_device("cpu")
    model = model_for(preset)
    backend = select_backend(cpu)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    def eager(a, b):
        with torch.inference_mode():
            return model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], return_maps=True)

    row = {
        "case": "", "kind": kind, "size": size, "slices": slices, "backend": backend,
        "threads": threads, "tile": tile, "repeats": repeats,
        "fast_ms": None, "fuse_ms": None, "eager_ms": None, "speedup": None,
        "peak_rss_mib": None, "base_rss_mib": peak_rss_mib(), "load": round(load, 2),
        "version": __version__,
    }
    if kind == "pair":
        a = rng.random((size, size), dtype=np.float32)
        b = rng.random((size, size), dtype=np.float32)
        row["case"] = f"{size}x{size} pair"
        row["fast_ms"] = median_ms(lambda: run_slice(model, a, b, cpu, tile=tile), repeats, 3)
        row["fuse_ms"] = median_ms(lambda: fuse(a, b, preset, "cpu", tile=tile), repeats, 1)
        row["peak_rss_mib"] = peak_rss_mib()
        row["eager_ms"] = median_ms(lambda: eager(a, b), repeats, 2)
    elif kind == "stack":
        a = rng.random((slices, size, size), dtype=np.float32)
        b = rng.random((slices, size, size), dtype=np.float32)
        row["case"] = f"{slices}x{size}x{size} stack"
        fuse(a[:2], b[:2], preset, "cpu", tile=tile)  # warm-up: export, arena
        row["fuse_ms"] = median_ms(lambda: fuse(a, b, preset, "cpu", tile=tile), repeats, 0)
        row["peak_rss_mib"] = peak_rss_mib()
        eager(a[0], b[0])
        row["eager_ms"] = median_ms(lambda: [eager(x, y) for x, y in zip(a, b)], 1, 0)
        row["fast_ms"] = row["fuse_ms"]
    elif kind == "big":
        a = rng.integers(0, 4096, (size, size), dtype=np.uint16)
        b = rng.integers(0, 65535, (size, size), dtype=np.uint16)
        row["case"] = f"{size}x{size} pair (uint16, tiled)"
        small = rng.random((64, 64), dtype=np.float32)
        fuse(small, small, preset, "cpu", tile=tile)  # warm-up: export
        row["fuse_ms"] = median_ms(lambda: fuse(a, b, preset, "cpu", tile=tile), repeats, 0)
        row["peak_rss_mib"] = peak_rss_mib()
        row["fast_ms"] = row["fuse_ms"]
        unit_a = (a / a.max()).astype(np.float32)
        unit_b = (b / b.max()).astype(np.float32)
        row["eager_ms"] = median_ms(
            lambda: run_slice(model, unit_a, unit_b, cpu, tile=tile, backend="torch"), 1, 0
        )
    else:
        raise ValueError(f"unknown benchmark case {kind!r}")
    row["speedup"] = row["eager_ms"] / row["fast_ms"]
    return row


def _child_env(threads: int) -> dict:
    """Environment for a case subprocess: this package importable, thread counts pinned."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_in_subprocess(case: dict, timeout: float = 900) -> dict:
    """Run :func:`run_case` in a fresh interpreter and return its row."""
    proc = subprocess.run(
        [sys.executable, "-m", "napari_lightfusion.cli", "bench", "--case", json.dumps(case)],
        capture_output=True, text=True, env=_child_env(int(case["threads"])), timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"benchmark case {case['kind']} {case['size']} failed: {tail}")


def run_benchmark(
    repeats: int = 20,
    threads: int = 2,
    sizes: tuple[int, ...] = (256, 512, 1024),
    stack: tuple[int, int] | None = (100, 512),
    big: int | None = 4096,
    *,
    preset: str = "PET-MRI",
    tile: int | None = None,
    progress=None,
) -> list[dict]:
    """Time the fusion on this machine; one row per case, each from a fresh subprocess.

    ``repeats``: timed runs per pair case (fewer for pairs above 512 x 512,
    2 for the stack and the big pair, 1 for their eager runs, so that the
    default run takes a few minutes on two cores). ``threads``: CPU threads
    for both backends. ``sizes``: edges of the square pairs. ``stack``:
    ``(slices, edge)`` or None. ``big``: edge of the large uint16 pair that
    shows the tiled memory bound, or None. ``tile``: tile edge (None: the
    engine's default). ``progress``: optional callable taking a line of text
    before each case. Rows are dicts; :func:`format_table` prints them.
    """
    cases = []
    for size in sizes:
        scaled = round(repeats * min(1.0, (512 / size) ** 2))
        cases.append({"kind": "pair", "size": size, "repeats": max(3, min(repeats, scaled))})
    if stack:
        cases.append({"kind": "stack", "size": stack[1], "slices": stack[0], "repeats": 2})
    if big:
        cases.append({"kind": "big", "size": big, "repeats": 2})
    rows = []
    for case in cases:
        case.update(threads=threads, preset=preset, tile=tile)
        if progress is not None:
            progress(f"bench: {case['kind']} {case.get('slices', 1)}x{case['size']}^2 ...")
        rows.append(run_in_subprocess(case))
    return rows


def _fmt(value, digits=1) -> str:
    """A number for the table; ``-`` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`run_benchmark` as a markdown table, with the machine below it."""
    lines = [
        "| case | backend | fast ms | fuse() ms | eager ms | speedup | peak RSS MiB | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['backend']} | {_fmt(r['fast_ms'])} | {_fmt(r['fuse_ms'])} | "
            f"{_fmt(r['eager_ms'])} | {_fmt(r['speedup'])}x | {_fmt(r['peak_rss_mib'], 0)} | "
            f"{_fmt(r['load'], 2)} |"
        )
    if rows:
        first = rows[0]
        lines.append("")
        lines.append(
            f"{first['threads']} threads, tile {first['tile']}, medians of up to "
            f"{max(r['repeats'] for r in rows)} runs after warm-up; "
            + _base_rss_text(rows)
            + "load = 1-minute load average at the start of each case."
        )
        lines.append(_machine())
    return "\n".join(lines)


def _base_rss_text(rows: list[dict]) -> str:
    """What the peak RSS column includes, or that this platform does not report it."""
    base = [r["base_rss_mib"] for r in rows if r.get("base_rss_mib") is not None]
    if not base:
        return "peak RSS not available on this platform; "
    return f"peak RSS includes the interpreter and libraries (~{min(base):.0f} MiB before any fusion); "


def _machine() -> str:
    """One line naming the CPU and library versions."""
    parts = [
        platform.processor() or platform.machine(),
        f"{os.cpu_count()} CPUs",
        f"Python {platform.python_version()}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ImportError:  # pragma: no cover
        pass
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        parts.append("no onnxruntime")
    return "machine: " + ", ".join(parts)


def run_from_args(args: argparse.Namespace) -> None:
    """Run the benchmark (or, with ``--case``, one case in this process) and print it."""
    if args.case:
        print(_MARK + json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    stack = None if args.stack.lower() == "none" else tuple(int(x) for x in args.stack.lower().split("x"))
    big = None if args.big.lower() in ("none", "0") else int(args.big)
    rows = run_benchmark(
        args.repeats, args.threads, sizes, stack, big, tile=args.tile,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
