"""``lightfusion-research bench``: how fast the fusion runs here, and where ``fuse()``'s time goes.

Each case runs in a fresh Python subprocess, so that one case's memory
(ONNX Runtime arenas, PyTorch caches) does not inflate the next one's peak,
with ``threads`` CPU threads for every method. Timings are medians; the
methods of a case run in **alternating blocks** (:func:`blocks_ms`): a
block is one untimed call and then ``block`` timed calls of one method,
and the methods' blocks take turns. Calling two methods in turn call by
call would distort both: ONNX Runtime's and PyTorch's thread pools keep
spinning for a while after each run and fight the next method's threads
for the cores (the fast path measured 17-20 ms that way against ~5 ms in
blocks). Taking turns block by block still spreads a change of load on a
shared machine over every method, so the ratios of one run hold. Nothing
timed reads or writes files (inputs are arrays made beforehand). Peak
memory is the subprocess's peak resident set size (``ru_maxrss`` on Unix;
on Windows the peak working set from psutil, which napari installs; else
not reported), read after the engine's runs and before the references'.

Inputs are what a user fuses: a uint8 grey MRI and a uint8 RGB PET (or a
grey second image for a grey pair), random, since the network's time does
not depend on the content. Columns (one row per case; see
:mod:`napari_lightfusion.research.bench_table`):

* ``net_ms``: the engine (:func:`napari_lightfusion.engine.run_stack`)
  on the pair's two prepared grey streams, without maps: the bare network
  as the automatic backend runs it (ONNX Runtime's tiles on the CPU
  threads, PyTorch on a GPU);
* ``fuse_ms``: :func:`napari_lightfusion.fuse` with its defaults (no
  maps), and ``fuse_ratio`` = ``fuse_ms / net_ms``; the overhead split,
  each part timed on its own in the same blocks: ``prepare_ms`` (checks,
  normalisation, luma: :func:`napari_lightfusion.inputs.prepare_pair`),
  ``colour_ms`` (the fused luma under the PET's colour:
  ``PreparedPair.finish``), ``rest_ms`` (what is left: planning, result
  assembly, noise);
* ``maps_ms``: ``fuse(..., maps=True)``, what a fusion with the maps shown costs;
* ``eager_ms``: the eager PyTorch forward ``model(a, b)`` on the whole
  image (slice by slice for a stack; tiled like the engine for the big
  pair, whose untiled forward would need several GiB);
* ``plain_ms``: ``torch.onnx.export`` of the same network as it is (no
  rewriting), run by ONNX Runtime with its default options; ``openvino_ms``:
  that ONNX model compiled by OpenVINO for the CPU, when ``openvino`` is
  installed; ``compile_ms``: ``torch.compile`` (inductor) of the model,
  with ``compile=True`` (its compilation takes a minute);
* ``gmacs``: the network's multiply-accumulates
  (:func:`napari_lightfusion.model.count_macs`, convolutions only) per
  second of ``net_ms``, and ``peak_percent`` its share of the CPU's peak
  (:func:`~napari_lightfusion.research.bench_table.cpu_peak_gmacs`).

Cases: ``pair`` (one ``size`` x ``size`` pair, grey and colour rows),
``stack`` (``Z x size x size``, colour), ``big`` (a ``big x big`` uint16
grey pair, tiled). With ``device="cuda"`` the pair and stack cases run
again on the GPU (PyTorch; no ONNX columns) after the CPU ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .timing import CLOCKS, blocks_ms

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


def _inputs(rng, shape: tuple, colour: bool):
    """A uint8 grey MRI and a uint8 PET of ``shape``: RGB when ``colour``, else grey."""
    import numpy as np

    mri = rng.integers(0, 256, shape, dtype=np.uint8)
    pet = rng.integers(0, 256, (*shape, 3) if colour else shape, dtype=np.uint8)
    return mri, pet


def run_case(case: dict) -> dict:
    """Run one benchmark case in this process and return its row (see module doc).

    ``case``: ``kind`` ("pair", "stack" or "big"), ``size``, ``slices``,
    ``colour`` (pairs: an RGB PET, else grey), ``repeats``, ``threads``,
    ``preset``, ``tile`` (None: the default), ``device`` ("cpu" by default,
    or "cuda"), ``clock`` ("wall" by default, or "cpu": see
    :func:`blocks_ms`), ``block`` (timed runs a block), ``compile`` (add the
    ``torch.compile`` reference). Meant to run in a fresh subprocess
    (:func:`run_benchmark` does that).
    """
    import numpy as np
    import torch

    from .. import __version__
    from ..engine import model_on, resolve_device, run_slice, run_stack, select_backend
    from ..fusion import fuse, plan_fusion
    from ..inputs import prepare_pair
    from ..model import count_macs
    from ..tiling import DEFAULT_TILE
    from ..weights import model_for
    from .bench_references import compiled_forward, openvino_session, plain_onnx_session
    from .bench_table import cpu_peak_gmacs

    threads = int(case["threads"])
    torch.set_num_threads(threads)
    kind, size, slices = case["kind"], int(case["size"]), int(case.get("slices", 1))
    repeats, block = int(case["repeats"]), int(case.get("block", 5))
    tile = int(case.get("tile") or DEFAULT_TILE)
    preset = case.get("preset", "PET-MRI")
    device = resolve_device(case.get("device", "cpu"))
    gpu = device.type != "cpu"
    model = model_for(preset)
    placed = model_on(model, device)
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    colour = bool(case.get("colour", kind == "stack"))
    where = f" on {device.type}" if gpu else ""

    def eager(a, b):
        with torch.inference_mode():
            out = placed(torch.from_numpy(a)[None, None].to(device), torch.from_numpy(b)[None, None].to(device))
            if gpu:
                torch.cuda.synchronize(device)
            return out

    row = {
        "case": "",
        "kind": kind,
        "size": size,
        "slices": slices,
        "colour": colour,
        "backend": select_backend(device),
        "device": device.type,
        "threads": threads,
        "tile": tile,
        "repeats": repeats,
        "block": block,
        "clock": case.get("clock", "wall"),
        "base_rss_mib": peak_rss_mib(),
        "load": round(load, 2),
        "version": __version__,
    }
    timed = lambda methods, runs: row.update(blocks_ms(methods, runs, block, row["clock"]))  # noqa: E731
    if kind == "big":
        a = rng.integers(0, 4096, (size, size), dtype=np.uint16)
        b = rng.integers(0, 65535, (size, size), dtype=np.uint16)
        row["case"] = f"{size}x{size} grey pair (uint16, tiled){where}"
        pair = prepare_pair(a, b)
        units = (pair.anatomical[0], pair.functional[0])
        methods = {"net_ms": lambda: run_slice(model, *units, device, tile=tile, maps=False)}
        methods["fuse_ms"] = lambda: fuse(a, b, preset, device, tile=tile)
        timed(methods, dict.fromkeys(methods, repeats))
        row["peak_rss_mib"] = peak_rss_mib()
        tiled = {"eager_ms": lambda: run_slice(model, *units, device, tile=tile, backend="torch", maps=False)}
        timed(tiled, {"eager_ms": 1})
    else:
        shape = (size, size) if kind == "pair" else (slices, size, size)
        if kind not in ("pair", "stack"):
            raise ValueError(f"unknown benchmark case {kind!r}")
        mri, pet = _inputs(rng, shape, colour)
        pair = prepare_pair(mri, pet)
        fused_y = run_stack(model, pair.anatomical, pair.functional, device, tile=tile, maps=False).fused
        row["case"] = (
            f"{size}x{size} {'colour' if colour else 'grey'} pair"
            if kind == "pair"
            else f"{slices}x{size}x{size} colour stack"
        ) + where
        methods = {
            "net_ms": lambda: run_stack(model, pair.anatomical, pair.functional, device, tile=tile, maps=False),
            "fuse_ms": lambda: fuse(mri, pet, preset, device, tile=tile),
            "prepare_ms": lambda: prepare_pair(mri, pet),
        }
        if colour:
            plan = plan_fusion(mri, pet, preset, device, tile=tile)
            methods["colour_ms"] = lambda: plan.coloured(fused_y, slice(None), kind == "stack")
        if kind == "pair":
            methods["maps_ms"] = lambda: fuse(mri, pet, preset, device, tile=tile, maps=True)
        timed(methods, dict.fromkeys(methods, repeats))
        row["peak_rss_mib"] = peak_rss_mib()
        a, b = pair.anatomical, pair.functional
        references = {"eager_ms": eager}
        if not gpu:
            references["plain_ms"] = plain_onnx_session(model, threads)
            if (vino := openvino_session(model, threads)) is not None:
                references["openvino_ms"] = vino
            if case.get("compile"):
                references["compile_ms"] = compiled_forward(placed, device)
        row["reference_diff"] = {
            name: _largest_difference(fn(a[0], b[0]), fused_y[0]) for name, fn in references.items()
        }
        per_slice = {name: (lambda fn=fn: [fn(x, y) for x, y in zip(a, b)]) for name, fn in references.items()}
        timed(per_slice, {name: (max(2, repeats // 4) if kind == "pair" else 1) for name in per_slice})
    row["rest_ms"] = (
        None
        if "prepare_ms" not in row
        else (row["fuse_ms"] - row["net_ms"] - row["prepare_ms"] - row.get("colour_ms", 0.0))
    )
    row["fuse_ratio"] = row["fuse_ms"] / row["net_ms"]
    row["gmacs"] = count_macs(model, size, size) * slices / (row["net_ms"] / 1e3) / 1e9
    peak, _ = cpu_peak_gmacs(threads)
    row["peak_percent"] = None if gpu or not peak else 100 * row["gmacs"] / peak
    return row


def _largest_difference(reference, fused) -> float:
    """The largest absolute difference between a reference's fused slice and the network's (any array type).

    A reference that does not give the network's result (OpenVINO in
    bfloat16, say) is not timing the same work; the table prints this.
    """
    import numpy as np

    out = reference.detach().float().cpu().numpy() if hasattr(reference, "detach") else np.asarray(reference)
    return float(np.abs(out.reshape(fused.shape) - fused).max())


def _child_env(threads: int) -> dict:
    """Environment for a case subprocess: this package importable, thread counts pinned."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_in_subprocess(case: dict, timeout: float = 1800) -> dict:
    """Run :func:`run_case` in a fresh interpreter and return its row."""
    proc = subprocess.run(
        [sys.executable, "-m", "napari_lightfusion.research", "bench", "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        env=_child_env(int(case["threads"])),
        timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
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
    block: int = 5,
    compile: bool = False,
    progress=None,
) -> list[dict]:
    """Time the fusion on this machine; one row per case, each from a fresh subprocess.

    ``repeats``: timed runs per method of a pair case (fewer for pairs
    above 512 x 512 and for eager PyTorch and the other references, 2 for
    the stack and the big pair, 1 for their references). ``threads``: CPU
    threads for every method. ``sizes``: edges of the square pairs, each
    timed as a grey and as a colour pair. ``stack``: ``(slices, edge)`` or
    None. ``big``: edge of the large uint16 pair that shows the tiled
    memory bound, or None. ``tile``: tile edge (None: the engine's
    default). ``clock``: "wall" or "cpu"; ``block``: timed runs per block
    (:func:`blocks_ms`). ``compile``: add the ``torch.compile`` reference.
    ``device``: "cpu", or a GPU ("cuda") on which the pair and stack cases
    run again after the CPU ones. ``progress``: optional callable taking a
    line of text before each case. Rows are dicts;
    :func:`~napari_lightfusion.research.bench_table.format_table` prints them.
    """
    from ..engine import resolve_device

    gpu = resolve_device(device)  # a missing device is a one-line error before anything runs
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; use wall or cpu")
    cases = []
    for size in sizes:
        scaled = round(repeats * min(1.0, (512 / size) ** 2))
        cases += [
            {"kind": "pair", "size": size, "colour": colour, "repeats": max(3, min(repeats, scaled))}
            for colour in (False, True)
        ]
    if stack:
        cases.append({"kind": "stack", "size": stack[1], "slices": stack[0], "repeats": 2, "block": 1})
    if big:
        cases.append({"kind": "big", "size": big, "repeats": 2, "block": 1})
    if gpu.type != "cpu":
        cases += [{**c, "device": str(gpu)} for c in cases if c["kind"] != "big"]
    rows = []
    for case in cases:
        case = {
            "block": block,
            **case,
            "threads": threads,
            "preset": preset,
            "tile": tile,
            "clock": clock,
            "compile": compile,
        }
        if progress is not None:
            progress(
                f"bench: {case['kind']} {case.get('slices', 1)}x{case['size']}^2 on {case.get('device', 'cpu')} ..."
            )
        rows.append(run_in_subprocess(case))
    return rows


def run_from_args(args: argparse.Namespace) -> None:
    """Run the benchmark (or, with ``--case``, one case in this process) and print it."""
    from .bench_table import format_table

    if args.case:
        print(_MARK + json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    if getattr(args, "profile", None):
        from .bench_profile import format_profile, profile_fast_path

        print(format_profile(profile_fast_path(args.profile, args.repeats), args.profile))
        return
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    if getattr(args, "tile_edges", None):
        from .bench_profile import format_tile_edges, time_tile_edges

        edges = tuple(int(e) for e in args.tile_edges.split(",") if e.strip())
        print(format_tile_edges(time_tile_edges(edges, sizes[0], threads=args.threads), sizes[0], args.threads))
        return
    stack = None if args.stack.lower() == "none" else tuple(int(x) for x in args.stack.lower().split("x"))
    big = None if args.big.lower() in ("none", "0") else int(args.big)
    rows = run_benchmark(
        args.repeats,
        args.threads,
        sizes,
        stack,
        big,
        tile=args.tile,
        device=getattr(args, "device", "cpu"),
        clock=getattr(args, "clock", "wall"),
        block=getattr(args, "block", 5),
        compile=getattr(args, "compile", False),
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
