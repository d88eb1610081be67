"""Where the fast path's time goes: ``lightfusion-research bench --profile EDGE`` (operator by operator)
and ``bench --tile-edges`` (the network's time by the edge of its CPU tiles)."""

from __future__ import annotations

import json
from pathlib import Path


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

    from ..fastpath import make_session
    from ..tiling import CPU_TILE, tile_grid, tile_spans
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


def time_tile_edges(
    edges: tuple[int, ...], size: int = 512, slices: int = 10, threads: int = 2, repeats: int = 6
) -> list[tuple[int, int, float, float]]:
    """The network's time on a ``slices`` x ``size`` x ``size`` stack cut into CPU tiles of each edge.

    What :data:`napari_lightfusion.tiling.CPU_TILE` was chosen by: the
    engine's tiles (:func:`~napari_lightfusion.tiling.tile_grid`, the
    network's halo) of each edge run on ``threads`` threads
    (:func:`~napari_lightfusion.threads.run_jobs`), one tile a thread, the
    edges taking turns run by run (:func:`~napari_lightfusion.research.timing.blocks_ms`
    with blocks of one), on wall and then on CPU time. Returns ``(edge, tiles a slice, wall ms a slice,
    CPU ms a slice)``.
    """
    import numpy as np

    from ..engine import _film
    from ..fastpath import session_for
    from ..threads import run_jobs
    from ..tiling import check_tile, tile_grid, tile_spans
    from ..weights import model_for
    from .timing import blocks_ms

    edges = tuple(check_tile(edge) for edge in edges)  # one line for an edge below 16, before anything runs

    model = model_for("PET-MRI")
    fast = session_for(model, threads=1, maps=False)
    scale, shift = _film(model, None)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, slices, size, size), dtype=np.float32)
    halo = model.receptive_radius
    methods, counts = {}, {}

    def run(tile):
        z, (y0, y1, _, _), (x0, x1, _, _) = tile
        fast.run(a[z, y0:y1, x0:x1], b[z, y0:y1, x0:x1], scale, shift)

    for edge in edges:
        core_h, core_w = tile_grid(size, size, edge)
        tiles = [
            (z, y, x)
            for z in range(slices)
            for y in tile_spans(size, core_h, halo)
            for x in tile_spans(size, core_w, halo)
        ]
        counts[edge] = len(tiles) // slices
        methods[edge] = lambda tiles=tiles: run_jobs(run, tiles, threads)
    wall = blocks_ms(methods, dict.fromkeys(methods, repeats), 1, "wall")
    cpu = blocks_ms(methods, dict.fromkeys(methods, repeats), 1, "cpu")
    return [(edge, counts[edge], wall[edge] / slices, cpu[edge] / slices) for edge in edges]


def format_tile_edges(rows: list[tuple[int, int, float, float]], size: int, threads: int) -> str:
    """The rows of :func:`time_tile_edges` as a markdown table."""
    on = f"{threads} thread{'s' if threads != 1 else ''}"
    lines = [f"| CPU tile edge ({size}x{size}, {on}) | tiles a slice | wall ms a slice | CPU ms a slice |"]
    lines.append("|---:|---:|---:|---:|")
    lines += [f"| {edge} | {count} | {wall:.1f} | {cpu:.1f} |" for edge, count, wall, cpu in rows]
    return "\n".join(lines)
