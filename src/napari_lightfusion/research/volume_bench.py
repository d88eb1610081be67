"""Memory and throughput of volume fusion: ``python -m napari_lightfusion.research.volume_bench``.

Makes a synthetic registered pair on disk (uint16, written slice by slice so
that making it costs no memory either), then measures in a fresh process
each time (peak RSS from ``wait4``, so nothing else in this process counts):

* ``volume``: ``lightfusion fuse-volume`` on the pair (TIFF stacks, or zarr
  with ``--format zarr``), for each depth given (``--slices 20 60``): wall
  seconds, slices per second, peak RSS. A bound
  that holds whatever the depth shows as the same peak for every depth.
* ``lazy``: :func:`napari_lightfusion.lazy.fuse_lazy` on zarr arrays opened
  lazily, one slice computed (what napari does for the slice it shows):
  seconds to the first slice, peak RSS (beside that of a process that only
  imports the same modules), and the size of the volume that was *not* loaded.

Examples (the README's figures)::

    nice -n 10 python -m napari_lightfusion.research.volume_bench volume --size 2048 --slices 20 60
    nice -n 10 python -m napari_lightfusion.research.volume_bench lazy --size 512 --slices 300
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
            array = zarr.open_array(str(path), mode="w", shape=(slices, size, size), chunks=(1, size, size),
                                    dtype="uint16", zarr_format=2)
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
        seconds, peak, out = measure([sys.executable, "-m", "napari_lightfusion.cli", "fuse-volume", str(a), str(b),
                                      "--out", str(out), "--preset", "CT-MRI", "--scheduler", scheduler])
        fusing = float(out.strip().split(", ")[-1].split()[0])  # "wrote OUT: N slices fused, M already there, S s"
        rows.append({"pair": f"{slices}x{size}x{size} uint16 {fmt}", "process s": seconds, "fuse-volume s": fusing,
                     "slices/s": slices / fusing, "peak RSS MiB": peak,
                     "input MiB": 2 * slices * size * size * 2 / 2**20})
    return rows


def lazy_slice(a: str, b: str, index: int) -> None:
    """Child process: open the zarr pair lazily, fuse one slice, print seconds."""
    import dask.array as da

    from napari_lightfusion.lazy import fuse_lazy

    start = time.perf_counter()
    result = fuse_lazy(da.from_zarr(a), da.from_zarr(b), preset="CT-MRI")
    np.asarray(result.fused[index])
    np.asarray(result.attention[:, index])
    print(f"{time.perf_counter() - start:.3f}")


def bench_lazy(folder: Path, size: int, slices: int) -> dict:
    """fuse_lazy on a zarr pair: one slice and its attention map computed, in a fresh process."""
    a, b = make_pair(folder, slices, size, "zarr")
    wall, peak, out = measure([sys.executable, "-m", "napari_lightfusion.research.volume_bench", "_slice",
                               str(a), str(b), str(slices // 2)])
    _, imports, _ = measure([sys.executable, "-c", "import dask.array, napari_lightfusion.lazy, onnxruntime"])
    return {"pair": f"{slices}x{size}x{size} uint16 zarr", "first slice s": float(out.strip()),
            "process s": wall, "peak RSS MiB": peak, "imports alone MiB": imports,
            "input MiB": 2 * slices * size * size * 2 / 2**20}


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
    child = sub.add_parser("_slice")
    child.add_argument("a")
    child.add_argument("b")
    child.add_argument("index", type=int)
    args = parser.parse_args(argv)
    if args.what == "_slice":
        lazy_slice(args.a, args.b, args.index)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        if args.what == "volume":
            rows = bench_volume(Path(tmp), args.size, args.slices, args.scheduler, args.format)
        else:
            rows = [bench_lazy(Path(tmp), args.size, args.slices)]
    print(table(rows))


if __name__ == "__main__":
    main()
