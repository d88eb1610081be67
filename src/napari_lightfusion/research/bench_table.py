"""The benchmark's table: its rows as markdown, with the CPU's peak and the machine below them.

:func:`format_table` prints the rows of
:func:`napari_lightfusion.research.bench.run_benchmark`; :func:`cpu_peak_gmacs`
estimates the peak the network's throughput is a fraction of.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: Columns of the table: (header, row key, digits; None for text).
COLUMNS = (
    ("case", "case", None),
    ("backend", "backend", None),
    ("network ms", "net_ms", 1),
    ("fuse() ms", "fuse_ms", 1),
    ("fuse / network", "fuse_ratio", 2),
    ("inputs ms", "prepare_ms", 2),
    ("colour ms", "colour_ms", 2),
    ("rest ms", "rest_ms", 2),
    ("+maps ms", "maps_ms", 1),
    ("eager ms", "eager_ms", 1),
    ("plain ONNX ms", "plain_ms", 1),
    ("OpenVINO ms", "openvino_ms", 1),
    ("torch.compile ms", "compile_ms", 1),
    ("GMAC/s", "gmacs", 1),
    ("% of peak", "peak_percent", 0),
    ("peak RSS MiB", "peak_rss_mib", 0),
    ("load", "load", 2),
)


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


def _fmt(value, digits) -> str:
    """A cell: text as it is, a number with ``digits`` decimals, ``-`` for None."""
    if digits is None:
        return str(value)
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`~napari_lightfusion.research.bench.run_benchmark` as a markdown table and notes.

    Columns without a value in any row (no OpenVINO installed, no
    ``--compile``) are left out.
    """
    columns = [c for c in COLUMNS if any(r.get(c[1]) is not None for r in rows)]
    lines = [
        "| " + " | ".join(c[0] for c in columns) + " |",
        "|" + "|".join("---" if c[2] is None else "---:" for c in columns) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(r.get(key), digits) for _, key, digits in columns) + " |" for r in rows]
    if rows:
        first = rows[0]
        threads = int(first["threads"])
        lines += ["", _method_note(first, rows), _split_note()]
        lines.extend(_throughput(rows))
        lines.extend(_agreement(rows))
        peak, how = cpu_peak_gmacs(threads)
        if peak:
            lines.append(f'CPU peak ~{peak:.0f} GMAC/s ({how}); "% of peak" is the network\'s share of it.')
        lines.append(_machine())
    return "\n".join(lines)


def _method_note(first: dict, rows: list[dict]) -> str:
    """How the figures were taken: threads, tile, blocks, clock, what the peak RSS includes."""
    threads = int(first["threads"])
    clock = "CPU time of the process" if first.get("clock") == "cpu" else "wall time"
    return (
        f"{threads} thread{'s' if threads != 1 else ''}, tile {first['tile']}, medians of up to "
        f"{max(r['repeats'] for r in rows)} runs per method, {clock}; the methods of a case run in "
        f"alternating blocks of {' or '.join(str(b) for b in sorted({r.get('block', 1) for r in rows}))} runs, "
        "the first run of each block untimed (ONNX "
        "Runtime's and PyTorch's thread pools spin for a while after a run and would slow another "
        "method's next call); " + _base_rss_text(rows) + "load = 1-minute load average at the start of each case."
    )


def _split_note() -> str:
    """What the overhead columns hold."""
    return (
        "network = the engine on the two prepared grey streams, no maps (ONNX Runtime's tiles on the "
        "threads); fuse() = `fuse(a, b)` with its defaults on uint8 inputs (grey MRI, RGB PET for a colour "
        "pair); its overhead over the network, timed apart in the same blocks: inputs = checks, "
        "normalisation and luma (`prepare_pair`), colour = the fused luma put back under the PET's colour "
        "(`with_luma`, in parts on the threads, as fuse() runs it: `FusionPlan.coloured`), "
        "rest = fuse() - network - inputs - colour (planning, result assembly, noise); "
        "+maps = `fuse(..., maps=True)`."
    )


def _throughput(rows: list[dict]) -> list[str]:
    """One line with each stack row's slices per second through fuse() (CPU and GPU side by side)."""
    stacks = [r for r in rows if r.get("kind") == "stack" and r.get("fuse_ms")]
    if not stacks:
        return []
    parts = [f"{r.get('device', 'cpu')} {1e3 * r['slices'] / r['fuse_ms']:.1f}" for r in stacks]
    return [f"stack throughput through fuse(), slices/s: {', '.join(parts)}."]


#: The references' names in the agreement line.
_REFERENCE_NAMES = {
    "eager_ms": "eager",
    "plain_ms": "plain ONNX",
    "openvino_ms": "OpenVINO",
    "compile_ms": "torch.compile",
}


def _agreement(rows: list[dict]) -> list[str]:
    """One line with each reference's largest difference from the network's fused image, over every case.

    So that a faster reference that computes something else (lower
    precision) shows itself beside its time.
    """
    worst: dict = {}
    for row in rows:
        for key, diff in (row.get("reference_diff") or {}).items():
            worst[key] = max(worst.get(key, 0.0), diff)
    if not worst:
        return []
    parts = [f"{_REFERENCE_NAMES.get(key, key)} {diff:.1e}" for key, diff in worst.items()]
    return [
        f"largest |difference| of each reference's fused image from the network's (first slice): {', '.join(parts)}."
    ]


def _base_rss_text(rows: list[dict]) -> str:
    """What the peak RSS column includes, or that this platform does not report it."""
    base = [r["base_rss_mib"] for r in rows if r.get("base_rss_mib") is not None]
    if not base:
        return "peak RSS not available on this platform; "
    return f"peak RSS includes the interpreter and libraries (~{min(base):.0f} MiB before any fusion); "


def cpu_text(cpuinfo: str | None = None) -> str:
    """The CPU a figure was measured on: ``"AMD EPYC, AVX-512F, 2 CPUs"`` (its name, vector unit, CPU count).

    The name is ``/proc/cpuinfo``'s model name where there is one (Linux
    leaves :func:`platform.processor` empty), else what :mod:`platform` says.
    """
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        text = ""
    names = [v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if k.strip() == "model name"]
    _, how = cpu_peak_gmacs(1, text or None)
    isa = how[how.find("(") + 1 : how.find(")")] if "(" in how else "unknown ISA"
    name = names[0] if names else platform.processor() or platform.machine()
    return f"{name}, {isa}, {os.cpu_count()} CPUs"


def _machine() -> str:
    """One line naming the CPU, its vector unit and the library versions."""
    parts = [cpu_text(), f"Python {platform.python_version()}"]
    import onnxruntime
    import torch

    parts += [f"torch {torch.__version__}", f"onnxruntime {onnxruntime.__version__}"]
    return "machine: " + ", ".join(parts)
