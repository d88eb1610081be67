"""``lightfusion bench``: how fast the fusion runs here, against eager PyTorch and a plain ONNX export.

Each case runs in a fresh Python subprocess, so that one case's memory
(ONNX Runtime arenas, PyTorch caches) does not inflate the next one's peak,
with ``threads`` CPU threads for every method. Timings are medians over
repeated runs after a warm-up, the methods of a case taking turns run by
run (so that a change of load on a shared machine hits all of them alike
and the ratios hold), in two groups: the engine's runs, then the
references (eager PyTorch, the plain export), whose idle threads keep
spinning for a while after each call and would slow the engine's next run
if they took turns with it; nothing timed reads or writes files (inputs are
random arrays made beforehand). Peak memory is the subprocess's peak
resident set size (``ru_maxrss`` on Unix; on Windows the peak working set
from psutil, which napari installs; else not reported), which sees
PyTorch's and ONNX Runtime's native allocations (``tracemalloc`` would
not); it is read after the fast path's runs and before the eager ones, and
includes the interpreter and the imported libraries (``base_rss_mib``,
read before the first fusion, says how much).

Columns (one row per case):

* ``fast_ms``: the engine alone without maps
  (:func:`napari_lightfusion.engine.run_slice`, or ``run_stack`` for a
  stack, ``maps=False``) with the automatic backend: ONNX Runtime on the CPU
  when installed, PyTorch on CUDA;
* ``fuse_ms``: the whole :func:`napari_lightfusion.fuse` without maps
  (normalisation and result assembly included);
* ``maps_ms``: the engine with the maps (what Live mode runs);
* ``eager_ms``: the eager PyTorch forward ``model(a, b)`` on the whole
  image (slice by slice for a stack; tiled like the engine for the big
  pair, whose untiled forward would need several GiB); ``speedup`` =
  ``eager_ms / fast_ms``;
* ``plain_ms``: ``torch.onnx.export`` of the same network as it is (no
  rewriting), run by ONNX Runtime with its default options and ``threads``
  intra-op threads; ``vs_plain`` = ``plain_ms / fast_ms``;
* ``gmacs``: the network's multiply-accumulates
  (:func:`napari_lightfusion.model.count_macs`, convolutions only) per
  second of ``fast_ms``; :func:`cpu_peak_gmacs` estimates the CPU's peak
  for the same threads (see there how), and the table says what fraction
  that is.

Cases: ``pair`` (one ``size`` x ``size`` float pair), ``stack`` (``Z x size
x size``), ``big`` (a ``big x big`` uint16 pair, tiled). With
``device="cuda"`` the pair and stack cases run again on the GPU (PyTorch;
no plain-ONNX column) after the CPU ones, so a stack's throughput on each
stands side by side.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def cpu_peak_gmacs(threads: int, cpuinfo: str | None = None) -> tuple[float | None, str]:
    """Estimated peak float32 multiply-accumulates per second of ``threads`` cores, in G, and how.

    peak = threads x clock x SIMD lanes x FMA units, with the clock from
    ``/proc/cpuinfo`` (``cpu MHz``, else bogomips / 2), 16 float32 lanes with
    AVX-512F, 8 with AVX2 + FMA, 4 otherwise, and 2 FMA units a core (server
    cores with AVX-512 or AVX2 have two; a core with one halves the peak).
    ``(None, reason)`` where ``/proc/cpuinfo`` cannot be read (not Linux).
    ``cpuinfo``: its text, if already read.
    """
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return None, "no /proc/cpuinfo here"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set(fields.get("flags", "").split())
    try:
        mhz = float(fields.get("cpu mhz") or float(fields["bogomips"]) / 2)
    except (KeyError, ValueError):
        return None, "no clock in /proc/cpuinfo"
    lanes, isa = (16, "AVX-512F") if "avx512f" in flags else (8, "AVX2+FMA") if {"avx2", "fma"} <= flags else (4, "SSE")
    peak = threads * mhz / 1e3 * lanes * 2
    cores = f"{threads} core{'s' if threads != 1 else ''}"
    how = f"{cores} x {mhz / 1e3:.2f} GHz x {lanes} float32 lanes ({isa}) x 2 FMA units"
    return peak, how


def plain_onnx_session(model, threads: int):
    """``torch.onnx.export`` of ``model(a, b)`` as it is, in an ONNX Runtime session with default options.

    The reference the fast path is measured against: what anyone would get
    by exporting the network without rewriting it (``threads`` intra-op
    threads; everything else ONNX Runtime's defaults).
    """
    import io
    import warnings

    import onnxruntime as ort
    import torch

    sample = torch.rand(1, 1, 32, 32)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("a", "b", "fused")}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample, sample), buffer, input_names=["a", "b"], output_names=["fused"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"a": a[None, None], "b": b[None, None]})[0]


#: Clocks a benchmark can time with: wall time, or the CPU time of the whole process.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_ms(methods: dict, repeats: dict, warmup: int = 1, clock: str = "wall") -> dict:
    """Median milliseconds of each method, the methods taking turns run by run.

    ``methods``: name -> callable; ``repeats``: name -> timed runs (a method
    with fewer runs drops out of the later turns). ``warmup`` untimed calls
    of each first. ``clock``: "wall", or "cpu" for the CPU time of all the
    process's threads (which other programs on a busy machine do not
    inflate, but which counts threads that spin while they wait: compare
    methods on it with one thread).
    """
    now = CLOCKS[clock]
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in methods}
    for turn in range(max(repeats.values())):
        for name, fn in methods.items():
            if turn < repeats[name]:
                start = now()
                fn()
                times[name].append(now() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def profile_fast_path(size: int = 512, repeats: int = 10, preset: str = "PET-MRI") -> list[tuple[str, float, float]]:
    """Where the fast path's time goes on one ``size`` x ``size`` slice without maps.

    ONNX Runtime's own profile (``enable_profiling``) of the engine's tiles
    of one slice, run ``repeats`` times on one thread, summed by operator
    type. Returns ``(operator, share of the total, milliseconds per slice)``,
    largest first.
    """
    import tempfile

    import numpy as np
    import torch

    from ..engine import CPU_TILE, tile_grid, tile_spans
    from ..fastpath import make_session
    from ..weights import model_for

    model = model_for(preset)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, size, size), dtype=np.float32)
    core_h, core_w = tile_grid(size, size, CPU_TILE)
    halo = model.receptive_radius
    tiles = [(y, x) for y in tile_spans(size, core_h, halo) for x in tile_spans(size, core_w, halo)]
    with tempfile.TemporaryDirectory() as folder:
        fast = make_session(model, threads=1, maps=False, profile=str(Path(folder) / "fast"))
        with torch.no_grad():
            scale, shift = (t.numpy() for t in model.condition(None))
        for _ in range(repeats + 1):  # the first pass plans the memory of each tile shape
            for (y0, y1, _, _), (x0, x1, _, _) in tiles:
                fast.run(a[None, y0:y1, x0:x1], b[None, y0:y1, x0:x1], scale, shift)
        session = fast.for_balance(scale, shift) if fast.conditioned else fast.session
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0) + event["dur"]
    whole = sum(totals.values()) or 1
    runs = repeats + 1
    rows = [(op, t / whole, t / 1e3 / runs) for op, t in totals.items()]
    return sorted(rows, key=lambda r: -r[1])


def format_profile(rows: list[tuple[str, float, float]], size: int) -> str:
    """The rows of :func:`profile_fast_path` as a markdown table."""
    lines = [f"| operator ({size}x{size} slice, one thread) | share | ms per slice |", "|---|---:|---:|"]
    lines += [f"| {op} | {100 * share:.1f} % | {ms:.2f} |" for op, share, ms in rows]
    lines.append(f"| total | 100 % | {sum(r[2] for r in rows):.2f} |")
    return "\n".join(lines)


def run_case(case: dict) -> dict:
    """Run one benchmark case in this process and return its row (see module doc).

    ``case``: ``kind`` ("pair", "stack" or "big"), ``size``, ``slices``,
    ``repeats``, ``threads``, ``preset``, ``tile`` (None: the default),
    ``device`` ("cpu" by default, or "cuda"), ``clock`` ("wall" by default,
    or "cpu": see :func:`interleaved_ms`).
    Meant to run in a fresh subprocess (:func:`run_benchmark` does that).
    """
    import numpy as np
    import torch

    from .. import __version__
    from ..engine import DEFAULT_TILE, model_on, resolve_device, run_slice, run_stack, select_backend
    from ..fusion import fuse
    from ..model import count_macs
    from ..weights import model_for

    threads = int(case["threads"])
    torch.set_num_threads(threads)
    kind, size, slices = case["kind"], int(case["size"]), int(case.get("slices", 1))
    repeats = int(case["repeats"])
    tile = int(case.get("tile") or DEFAULT_TILE)
    preset = case.get("preset", "PET-MRI")
    device = resolve_device(case.get("device", "cpu"))
    gpu = device.type != "cpu"
    model = model_for(preset)
    placed = model_on(model, device)
    backend = select_backend(device)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    clock = case.get("clock", "wall")
    timed = functools.partial(interleaved_ms, clock=clock)

    def eager(a, b):
        with torch.inference_mode():
            out = placed(torch.from_numpy(a)[None, None].to(device), torch.from_numpy(b)[None, None].to(device))
            if gpu:
                torch.cuda.synchronize(device)
            return out

    plain = plain_onnx_session(model, threads) if not gpu and kind != "big" else None
    row = {
        "case": "", "kind": kind, "size": size, "slices": slices, "backend": backend, "device": device.type,
        "threads": threads, "tile": tile, "repeats": repeats, "clock": clock,
        "fast_ms": None, "fuse_ms": None, "maps_ms": None, "eager_ms": None, "speedup": None,
        "plain_ms": None, "vs_plain": None, "gmacs": None,
        "peak_rss_mib": None, "base_rss_mib": peak_rss_mib(), "load": round(load, 2),
        "version": __version__,
    }
    where = f" on {device.type}" if gpu else ""
    if kind == "pair":
        a = rng.random((size, size), dtype=np.float32)
        b = rng.random((size, size), dtype=np.float32)
        row["case"] = f"{size}x{size} pair{where}"
        methods = {
            "fast_ms": lambda: run_slice(model, a, b, device, tile=tile, maps=False),
            "maps_ms": lambda: run_slice(model, a, b, device, tile=tile),
            "fuse_ms": lambda: fuse(a, b, preset, device, tile=tile, maps=False),
        }
        row.update(timed(methods, dict.fromkeys(methods, repeats), warmup=2))
        row["peak_rss_mib"] = peak_rss_mib()
        methods = {"eager_ms": lambda: eager(a, b)}
        if plain is not None:
            methods["plain_ms"] = lambda: plain(a, b)
        row.update(timed(methods, dict.fromkeys(methods, repeats), warmup=2))
    elif kind == "stack":
        a = rng.random((slices, size, size), dtype=np.float32)
        b = rng.random((slices, size, size), dtype=np.float32)
        row["case"] = f"{slices}x{size}x{size} stack{where}"
        fuse(a[:2], b[:2], preset, device, tile=tile, maps=False)  # warm-up: export, arena
        methods = {
            "fast_ms": lambda: run_stack(model, a, b, device, tile=tile, maps=False),
            "fuse_ms": lambda: fuse(a, b, preset, device, tile=tile, maps=False),
        }
        row.update(timed(methods, dict.fromkeys(methods, repeats), warmup=0))
        row["peak_rss_mib"] = peak_rss_mib()
        eager(a[0], b[0])
        methods = {"eager_ms": lambda: [eager(x, y) for x, y in zip(a, b)]}
        if plain is not None:
            plain(a[0], b[0])
            methods["plain_ms"] = lambda: [plain(x, y) for x, y in zip(a, b)]
        row.update(timed(methods, dict.fromkeys(methods, 1), warmup=0))
    elif kind == "big":
        a = rng.integers(0, 4096, (size, size), dtype=np.uint16)
        b = rng.integers(0, 65535, (size, size), dtype=np.uint16)
        row["case"] = f"{size}x{size} pair (uint16, tiled){where}"
        small = rng.random((64, 64), dtype=np.float32)
        fuse(small, small, preset, device, tile=tile)  # warm-up: export
        row["fuse_ms"] = timed({"f": lambda: fuse(a, b, preset, device, tile=tile, maps=False)},
                                        {"f": repeats}, warmup=0)["f"]
        row["peak_rss_mib"] = peak_rss_mib()
        unit_a = (a / a.max()).astype(np.float32)
        unit_b = (b / b.max()).astype(np.float32)
        fast = {"fast_ms": lambda: run_slice(model, unit_a, unit_b, device, tile=tile, maps=False)}
        row.update(timed(fast, {"fast_ms": repeats}, warmup=0))
        tiled = {"eager_ms": lambda: run_slice(model, unit_a, unit_b, device, tile=tile, backend="torch", maps=False)}
        row.update(timed(tiled, {"eager_ms": 1}, warmup=0))
    else:
        raise ValueError(f"unknown benchmark case {kind!r}")
    row["speedup"] = row["eager_ms"] / row["fast_ms"]
    if row["plain_ms"] is not None:
        row["vs_plain"] = row["plain_ms"] / row["fast_ms"]
    row["gmacs"] = count_macs(model, size, size) * slices / (row["fast_ms"] / 1e3) / 1e9
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
    device: str = "cpu",
    clock: str = "wall",
    progress=None,
) -> list[dict]:
    """Time the fusion on this machine; one row per case, each from a fresh subprocess.

    ``repeats``: timed runs per pair case (fewer for pairs above 512 x 512,
    2 for the stack and the big pair, 1 for their eager runs, so that the
    default run takes a few minutes on two cores). ``threads``: CPU threads
    for both backends. ``sizes``: edges of the square pairs. ``stack``:
    ``(slices, edge)`` or None. ``big``: edge of the large uint16 pair that
    shows the tiled memory bound, or None. ``tile``: tile edge (None: the
    engine's default). ``clock``: "wall" or "cpu" (:func:`interleaved_ms`).
    ``device``: "cpu", or a GPU ("cuda") on which the
    pair and stack cases run again after the CPU ones. ``progress``:
    optional callable taking a line of text before each case. Rows are
    dicts; :func:`format_table` prints them.
    """
    from ..engine import resolve_device

    gpu = resolve_device(device)  # a missing device is a one-line error before anything runs
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; use wall or cpu")
    cases = []
    for size in sizes:
        scaled = round(repeats * min(1.0, (512 / size) ** 2))
        cases.append({"kind": "pair", "size": size, "repeats": max(3, min(repeats, scaled))})
    if stack:
        cases.append({"kind": "stack", "size": stack[1], "slices": stack[0], "repeats": 2})
    if big:
        cases.append({"kind": "big", "size": big, "repeats": 2})
    if gpu.type != "cpu":
        cases += [{**c, "device": str(gpu)} for c in cases if c["kind"] != "big"]
    rows = []
    for case in cases:
        case.update(threads=threads, preset=preset, tile=tile, clock=clock)
        if progress is not None:
            progress(f"bench: {case['kind']} {case.get('slices', 1)}x{case['size']}^2 "
                     f"on {case.get('device', 'cpu')} ...")
        rows.append(run_in_subprocess(case))
    return rows


def _fmt(value, digits=1) -> str:
    """A number for the table; ``-`` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`run_benchmark` as a markdown table, with the machine and the peak below it."""
    lines = [
        "| case | backend | fast ms | fuse() ms | eager ms | speedup | peak RSS MiB | load "
        "| +maps ms | plain ONNX ms | vs plain | GMAC/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['backend']} | {_fmt(r['fast_ms'])} | {_fmt(r['fuse_ms'])} | "
            f"{_fmt(r['eager_ms'])} | {_fmt(r['speedup'])}x | {_fmt(r['peak_rss_mib'], 0)} | "
            f"{_fmt(r['load'], 2)} | {_fmt(r.get('maps_ms'))} | {_fmt(r.get('plain_ms'))} | "
            f"{_fmt(r.get('vs_plain'))}{'x' if r.get('vs_plain') is not None else ''} | {_fmt(r.get('gmacs'))} |"
        )
    if rows:
        first = rows[0]
        lines.append("")
        lines.append(
            f"{first['threads']} thread{'s' if first['threads'] != 1 else ''}, tile {first['tile']}, medians of up to "
            f"{max(r['repeats'] for r in rows)} runs after warm-up, methods taking turns, "
            f"{'CPU time of the process' if first.get('clock') == 'cpu' else 'wall time'}; "
            + _base_rss_text(rows)
            + "load = 1-minute load average at the start of each case."
        )
        lines.extend(_throughput(rows))
        peak, how = cpu_peak_gmacs(int(first["threads"]))
        cpu = [r["gmacs"] for r in rows if r.get("gmacs") is not None and r.get("device", "cpu") == "cpu"]
        if peak and cpu:
            low, high = (f"{100 * g / peak:.0f}" for g in (min(cpu), max(cpu)))
            lines.append(
                f"CPU peak ~{peak:.0f} GMAC/s ({how}); the fast path reaches "
                f"{low if low == high else f'{low}-{high}'} % of it."
            )
        lines.append(_machine())
    return "\n".join(lines)


def _throughput(rows: list[dict]) -> list[str]:
    """One line with each stack row's slices per second (CPU and GPU side by side)."""
    stacks = [r for r in rows if r.get("kind") == "stack" and r.get("fast_ms")]
    if not stacks:
        return []
    parts = [f"{r.get('device', 'cpu')} {1e3 * r['slices'] / r['fast_ms']:.1f}" for r in stacks]
    return [f"stack throughput, slices/s: {', '.join(parts)}."]


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
    import onnxruntime
    import torch

    parts += [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    return "machine: " + ", ".join(parts)


def run_from_args(args: argparse.Namespace) -> None:
    """Run the benchmark (or, with ``--case``, one case in this process) and print it."""
    if args.case:
        print(_MARK + json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    if getattr(args, "profile", None):
        print(format_profile(profile_fast_path(args.profile, args.repeats), args.profile))
        return
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    stack = None if args.stack.lower() == "none" else tuple(int(x) for x in args.stack.lower().split("x"))
    big = None if args.big.lower() in ("none", "0") else int(args.big)
    rows = run_benchmark(
        args.repeats, args.threads, sizes, stack, big, tile=args.tile, device=getattr(args, "device", "cpu"),
        clock=getattr(args, "clock", "wall"),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
