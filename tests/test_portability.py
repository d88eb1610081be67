"""Portability: nothing Unix-only is imported at import time.

``resource`` exists only on Unix. Subprocesses where importing it fails
(as on Windows) still import every module outside ``_qt``, print
``lightfusion --help`` and fuse two files with ``lightfusion fuse``.
"""

from __future__ import annotations

import pkgutil

import numpy as np
from skimage.io import imread, imsave

import napari_lightfusion
from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.research import bench_table

UNIX_ONLY = ["resource"]


def test_the_block_works(run_blocked):
    proc = run_blocked(["python", "-c", "import resource"], UNIX_ONLY)
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr


def test_every_module_outside_qt_imports_without_resource(run_blocked):
    names = [
        info.name
        for info in pkgutil.walk_packages(napari_lightfusion.__path__, "napari_lightfusion.")
        if "._qt" not in info.name
    ]
    assert "napari_lightfusion.research.bench" in names and "napari_lightfusion.cli" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "from napari_lightfusion.research.bench import peak_rss_mib\n"
        "assert 'resource' not in sys.modules\n"
        "print('peak', peak_rss_mib())\n"
    )
    proc = run_blocked(["python", "-c", code], UNIX_ONLY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "peak None" in proc.stdout  # Linux without resource: psutil has no peak there, so "not available"


def test_cli_help_and_fuse_without_resource(run_blocked, tmp_path):
    proc = run_blocked(["lightfusion", "--help"], UNIX_ONLY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fuse" in proc.stdout and "lightfusion-research" in proc.stdout
    mri, pet, out = tmp_path / "mri.png", tmp_path / "pet.png", tmp_path / "fused.png"
    imsave(mri, np.round(phantom_mri(48) * 255).astype(np.uint8), check_contrast=False)
    imsave(pet, phantom_pet(48), check_contrast=False)
    proc = run_blocked(["lightfusion", "fuse", str(mri), str(pet), "--out", str(out), "--device", "cpu"], UNIX_ONLY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fused = imread(out)
    assert fused.shape == (48, 48, 3) and fused.max() > 0


def test_bench_table_says_when_peak_memory_is_unavailable():
    row = {
        "case": "64x64 pair",
        "backend": "torch",
        "net_ms": 1.0,
        "fuse_ms": 2.0,
        "eager_ms": 3.0,
        "peak_rss_mib": None,
        "base_rss_mib": None,
        "load": 0.5,
        "threads": 1,
        "tile": 512,
        "repeats": 3,
    }
    text = bench_table.format_table([row])
    assert "| 64x64 pair | torch | 1.0 | 2.0 | 3.0 | 0.50 |" in text
    assert "peak RSS not available on this platform" in text
