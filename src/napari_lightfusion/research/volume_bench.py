"""Memory and throughput of volume fusion: ``python -m napari_lightfusion.research.volume_bench``.

Makes a synthetic registered pair on disk (uint16, written slice by slice so
that making it costs no memory either), then measures in a fresh process
each time (peak RSS from ``wait4``, so nothing else in this process counts):

* ``volume``: ``lightfusion fuse-volume`` on the pair (TIFF stacks, or zarr
  with ``--format zarr``), for each depth given (``--slices 20 60``): wall
  seconds, slices per second, peak RSS. A bound
  that holds whatever the depth shows as the same peak for every depth.
* ``napari`` (needs a display: ``xvfb-run -a``): the zarr pair as lazy
  layers in napari, their lazy fused layer added, the slider moved over
  ``--steps`` slices (napari fuses each slice it shows), then *Export fused
  volume* (:func:`napari_lightfusion._qt.volume_export.export_fused`):
  seconds per slider move, export throughput, peak RSS.
* ``lazy``: :func:`napari_lightfusion.lazy.fuse_lazy` on zarr arrays opened
  lazily, one slice computed (what napari does for the slice it shows):
  seconds to the first slice, peak RSS (beside that of a process that only
  imports the same modules), and the size of the volume that was *not* loaded.

Examples (the figures of docs/volumes.md)::

    nice -n 10 python -m napari_lightfusion.research.volume_bench volume --size 2048 --slices 20 60
    nice -n 10 python -m napari_lightfusion.research.volume_bench lazy --size 512 --slices 300
    nice -n 10 xvfb-run -a python -m napari_lightfusion.research.volume_bench napari --size 512 --slices 300
    nice -n 10 python -m napari_lightfusion.research.volume_bench volume --size 512 --slices 300 --format zarr
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_slice(z: int, size: int, which: int) -> np.ndarray:
    """A smooth uint16 slice with some noise: ``which`` 0 is MRI-like, 1 PET-like."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    rng = np.random.default_rng(z * 2 + which)
    if which == 0:
        image = 1500 + 1200 * np.sin(12 * xx + z / 7.0) * np.cos(9 * yy) + rng.normal(0, 60, xx.shape)
    else:
        image = 4000 * np.exp(-((xx - 0.5 - 0.1 * np.sin(z / 9.0)) ** 2 + (yy - 0.45) ** 2) * 18)
        image += rng.normal(0, 30, xx.shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def make_pair(folder: Path, slices: int, size: int, fmt: str) -> tuple[Path, Path]:
    """Write the pair as TIFF stacks or zarr arrays (one chunk per slice); returns their paths."""
    import tifffile
    import zarr

    paths = []
    for which in (0, 1):
        if fmt == "tiff":
            path = folder / f"{'ab'[which]}{slices}x{size}.tif"
            with tifffile.TiffWriter(path, bigtiff=True) as tif:
                for z in range(slices):
                    tif.write(synthetic_slice(z, size, which), photometric="minisblack", contiguous=True)
        else:
            path = folder / f"{'ab'[which]}{slices}x{size}.zarr"
            array = zarr.open_array(
                str(path), mode="w", shape=(slices, size, size), chunks=(1, size, size), dtype="uint16", zarr_format=2
            )
            for z in range(slices):
                array[z] = synthetic_slice(z, size, which)
        paths.append(path)
    return paths[0], paths[1]


def measure(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; (wall seconds, peak RSS in MiB of that process, its stdout)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode})")
    return seconds, usage.ru_maxrss / 1024.0, out


def bench_volume(folder: Path, size: int, depths: list[int], scheduler: str, fmt: str = "tiff") -> list[dict]:
    """fuse-volume on a pair of each depth (TIFF stacks or zarr arrays): seconds, slices/s, peak RSS."""
    rows = []
    for slices in depths:
        a, b = make_pair(folder, slices, size, fmt)
        out = folder / f"out{slices}x{size}.zarr"
        seconds, peak, out = measure(
            [
                sys.executable,
                "-m",
                "napari_lightfusion.cli",
                "fuse-volume",
                str(a),
                str(b),
                "--out",
                str(out),
                "--preset",
                "CT-MRI",
                "--scheduler",
                scheduler,
            ]
        )
        fusing = float(out.strip().split(", ")[-1].split()[0])  # "wrote OUT: N slices fused, M already there, S s"
        rows.append(
            {
                "pair": f"{slices}x{size}x{size} uint16 {fmt}",
                "process s": seconds,
                "fuse-volume s": fusing,
                "slices/s": slices / fusing,
                "peak RSS MiB": peak,
                "input MiB": 2 * slices * size * size * 2 / 2**20,
            }
        )
    return rows


def lazy_slice(a: str, b: str, index: int) -> None:
    """Child process: open the zarr pair lazily, fuse one slice, print seconds."""
    import dask.array as da

    from napari_lightfusion.lazy import fuse_lazy

    start = time.perf_counter()
    result = fuse_lazy(da.from_zarr(a), da.from_zarr(b), preset="CT-MRI", maps=True)
    np.asarray(result.fused[index])
    np.asarray(result.attention[:, index])
    print(f"{time.perf_counter() - start:.3f}")


def bench_lazy(folder: Path, size: int, slices: int) -> dict:
    """fuse_lazy on a zarr pair: one slice and its attention map computed, in a fresh process."""
    a, b = make_pair(folder, slices, size, "zarr")
    wall, peak, out = measure(
        [sys.executable, "-m", "napari_lightfusion.research.volume_bench", "_slice", str(a), str(b), str(slices // 2)]
    )
    _, imports, _ = measure([sys.executable, "-c", "import dask.array, napari_lightfusion.lazy, onnxruntime"])
    return {
        "pair": f"{slices}x{size}x{size} uint16 zarr",
        "first slice s": float(out.strip()),
        "process s": wall,
        "peak RSS MiB": peak,
        "imports alone MiB": imports,
        "input MiB": 2 * slices * size * size * 2 / 2**20,
    }


def napari_child(a: str, b: str, out: str, steps: int) -> None:
    """Child process: a lazy pair in napari, its lazy fused layer browsed over ``steps`` slices
    (napari computes each shown slice), then exported; prints the timings as one JSON line."""
    import json

    import dask.array as da
    import napari

    from napari_lightfusion._qt.volume_export import export_fused
    from napari_lightfusion.lazy import fuse_lazy

    from .qt_wait import wait_until

    viewer = napari.Viewer(show=False)
    mri = viewer.add_image(da.from_zarr(a), name="mri")
    pet = viewer.add_image(da.from_zarr(b), name="pet", colormap="magma", blending="additive")
    start = time.perf_counter()
    result = fuse_lazy(
        mri.data,
        pet.data,
        "CT-MRI",
        a_limits=tuple(mri.contrast_limits),
        b_limits=tuple(pet.contrast_limits),
        maps=False,
    )
    fused = viewer.add_image(result.fused, name="fused", contrast_limits=(0.0, 1.0))
    first = time.perf_counter() - start
    moves = []
    for z in np.linspace(0, mri.data.shape[0] - 1, steps).round().astype(int)[1:]:
        t = time.perf_counter()
        viewer.dims.set_point(0, int(z))  # napari's (synchronous) slicing fuses the slice it shows
        moves.append(time.perf_counter() - t)
    done = []
    start = time.perf_counter()
    worker = export_fused(viewer, fused, out)
    worker.finished.connect(lambda: done.append(True))
    wait_until(lambda: bool(done), 3600, "the export")
    print(json.dumps({"first": first, "move": float(np.median(moves)), "export": time.perf_counter() - start}))
    viewer.close()


def bench_napari(folder: Path, size: int, slices: int, steps: int) -> dict:
    """A lazy zarr pair in napari: fused layer added, browsed, exported, in a fresh process."""
    import json

    a, b = make_pair(folder, slices, size, "zarr")
    wall, peak, out = measure(
        [
            sys.executable,
            "-m",
            "napari_lightfusion.research.volume_bench",
            "_napari",
            str(a),
            str(b),
            str(folder / "export.zarr"),
            str(steps),
        ]
    )
    times = json.loads(out.strip().splitlines()[-1])
    return {
        "pair": f"{slices}x{size}x{size} uint16 zarr",
        "fused layer added s": times["first"],
        "slider move median ms": 1e3 * times["move"],
        "export s": times["export"],
        "export slices/s": slices / times["export"],
        "peak RSS MiB": peak,
        "input MiB": 2 * slices * size * size * 2 / 2**20,
    }


def table(rows: list[dict]) -> str:
    """Rows as a markdown table."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    v = sub.add_parser("volume")
    v.add_argument("--size", type=int, default=2048)
    v.add_argument("--slices", type=int, nargs="+", default=[20, 60])
    v.add_argument("--scheduler", default="threads")
    v.add_argument("--format", choices=("tiff", "zarr"), default="tiff")
    v.add_argument("--dir", type=Path, default=None, help="where the pair is made (default: a temporary folder)")
    lz = sub.add_parser("lazy")
    lz.add_argument("--size", type=int, default=512)
    lz.add_argument("--slices", type=int, default=300)
    lz.add_argument("--dir", type=Path, default=None)
    nap = sub.add_parser("napari")
    nap.add_argument("--size", type=int, default=512)
    nap.add_argument("--slices", type=int, default=300)
    nap.add_argument("--steps", type=int, default=12, help="slider positions browsed")
    nap.add_argument("--dir", type=Path, default=None)
    child_napari = sub.add_parser("_napari")
    for name in ("a", "b", "out"):
        child_napari.add_argument(name)
    child_napari.add_argument("steps", type=int)
    child = sub.add_parser("_slice")
    child.add_argument("a")
    child.add_argument("b")
    child.add_argument("index", type=int)
    args = parser.parse_args(argv)
    if args.what == "_slice":
        lazy_slice(args.a, args.b, args.index)
        return
    if args.what == "_napari":
        napari_child(args.a, args.b, args.out, args.steps)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.what == "volume":
            rows = bench_volume(Path(tmp), args.size, args.slices, args.scheduler, args.format)
        elif args.what == "lazy":
            rows = [bench_lazy(Path(tmp), args.size, args.slices)]
        else:
            rows = [bench_napari(Path(tmp), args.size, args.slices, args.steps)]
    print(table(rows))


if __name__ == "__main__":
    main()
