"""The exported comparison figure (issue 9: "Export figure")."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from skimage.io import imread

from napari_lightfusion._qt.figure import MIN_TILE, _best, export_figure

rng = np.random.default_rng(2)
GREY = rng.integers(0, 256, (64, 64), dtype=np.uint8)
RGB = rng.random((64, 80, 3))
TABLE = {"LightFusionNet": {"EN": 5.0, "Qabf": 0.61, "SSIM": 1.4}, "max": {"EN": 5.5, "Qabf": 0.45, "SSIM": 1.3}}


def render(tmp_path, name, tiles, table=TABLE, **kwargs) -> np.ndarray:
    path = export_figure(tiles, table, tmp_path / f"{name}.png", **kwargs)
    assert path == tmp_path / f"{name}.png" and path.stat().st_size > 0
    return imread(path)


def test_writes_one_png_on_white_with_tiles_of_at_least_256_px(tmp_path, qapp):
    img = render(tmp_path, "fig", [("MRI", GREY), ("PET", RGB)], title="Pair 23", caption="preset: PET-MRI")
    assert img.ndim == 3 and img.dtype == np.uint8
    assert np.all(img[0, 0, :3] == 255) and np.all(img[-1, -1, :3] == 255)  # white background
    assert img.shape[1] >= 2 * MIN_TILE and img.shape[0] >= MIN_TILE
    assert list(tmp_path.iterdir()) == [tmp_path / "fig.png"]


def test_size_grows_with_the_tiles(tmp_path, qapp):
    one = render(tmp_path, "one", [("a", GREY)], table={})
    three = render(tmp_path, "three", [("a", GREY), ("b", GREY), ("c", RGB)], table={})
    seven = render(tmp_path, "seven", [(str(i), GREY) for i in range(7)], table={})
    assert three.shape[1] > one.shape[1] + 2 * MIN_TILE - 1  # a row grows wider ...
    assert seven.shape[0] > three.shape[0] + MIN_TILE  # ... then wraps into a second row


def test_labels_are_drawn_above_the_tiles(tmp_path, qapp):
    tiles = [("LightFusionNet", GREY), ("Pixel max", RGB)]
    labelled = render(tmp_path, "labelled", tiles)
    blank = render(tmp_path, "blank", [("", img) for _, img in tiles])
    assert labelled.shape == blank.shape
    differ = np.any(labelled != blank, axis=-1)
    rows = np.nonzero(differ.any(axis=1))[0]
    assert rows.size and rows.max() < 24 + 40  # only the label band, above the images
    assert (labelled[rows] < 128).any()  # dark text


def test_table_and_caption_are_drawn_beneath(tmp_path, qapp):
    tiles = [("a", GREY)]
    without = render(tmp_path, "without", tiles, table={})
    with_table = render(tmp_path, "with", tiles)
    captioned = render(tmp_path, "captioned", tiles, caption="LightFusionNet preset: CT-MRI")
    assert with_table.shape[0] > without.shape[0] + 3 * 20  # header + two rows
    assert captioned.shape[0] > with_table.shape[0]
    assert (with_table[without.shape[0] :] < 100).any()  # ink beneath the tiles


def test_best_value_per_metric_follows_the_direction():
    table = {
        "A": {"EN": 1.0, "t": 3.0, "Q": float("nan")},
        "B": {"EN": 2.0, "t": 2.0, "Q": 0.5},
        "C": {"EN": 2.0, "t": 4.0},
    }
    assert _best(table, "EN", "↑") == {"B", "C"}  # ties are all bold
    assert _best(table, "t", "↓") == {"B"}
    assert _best(table, "t", None) == set()
    assert _best(table, "Q", "↑") == set()  # one finite value: nothing to compare


def _bands(mask: np.ndarray) -> list[slice]:
    """Runs of consecutive True entries."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return [slice(a, b) for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0])]


def test_bold_marks_the_best_cell(tmp_path, qapp):
    # one row holds "4.000" twice: best (bold) for EN (higher is better), not for SD (lower is better)
    table = {"A": {"EN": 4.0, "SD": 4.0}, "B": {"EN": 3.0, "SD": 3.0}}
    img = render(tmp_path, "bold", [("", np.full((8, 8), 255, np.uint8))], table, directions={"EN": "↑", "SD": "↓"})
    dark = img[..., :3].min(axis=-1) < 128
    rule = dark.sum(axis=1) > 100
    text_rows = [b for b in _bands(dark.any(axis=1) & ~rule) if b.stop - b.start > 4]
    row_a = dark[text_rows[1]]  # header, then row A
    cells = list(_bands(np.convolve(row_a.any(axis=0), np.ones(9), "same") > 0))
    assert len(cells) == 3  # "A", "4.000", "4.000"
    en, sd = (row_a[:, c].sum() for c in cells[1:])
    assert en > 1.15 * sd, (en, sd)


def test_floats_grey_and_rgba_tiles_and_bad_input(tmp_path, qapp):
    rgba = np.dstack([GREY, GREY, GREY, GREY])
    render(tmp_path, "mixed", [("f", RGB.astype(np.float32)), ("g", GREY), ("rgba", rgba)])
    with pytest.raises(ValueError, match="tile 'bad'"):
        export_figure([("bad", np.zeros((4, 4, 2)))], {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one tile"):
        export_figure([], TABLE, tmp_path / "x.png")
    with pytest.raises(ValueError, match="could not write"):
        export_figure([("a", GREY)], TABLE, tmp_path / "missing" / "x.png")


def test_works_headless_with_the_offscreen_platform(tmp_path):
    out = tmp_path / "offscreen.png"
    code = (
        "import numpy as np; from napari_lightfusion._qt.figure import export_figure; "
        f"export_figure([('MRI', np.zeros((8, 8), np.uint8))], {{'m': {{'EN': 1.0}}}}, r'{out}')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert imread(out).shape[0] >= MIN_TILE


def test_harvard_pet_mri_comparison(tmp_path, qapp, harvard_root):
    from napari_lightfusion import fuse
    from napari_lightfusion.baselines import fuse_baseline
    from napari_lightfusion.metrics import METRICS, evaluate

    mri = imread(harvard_root / "test" / "PET-MRI" / "MRI" / "23.png")
    pet = imread(harvard_root / "test" / "PET-MRI" / "PET" / "23.png")
    fused = {
        "LightFusionNet": fuse(mri, pet, preset="PET-MRI", device="cpu").fused,
        "Pixel max": fuse_baseline("max", mri, pet),
        "Average": fuse_baseline("average", mri, pet),
    }
    table = {name: evaluate(img * 255, mri.astype(float), pet.astype(float)) for name, img in fused.items()}
    img = render(
        tmp_path,
        "harvard",
        [("MRI", mri), ("PET", pet), *fused.items()],
        table,
        caption="LightFusionNet preset: PET-MRI",
    )
    assert img.shape[1] >= 5 * MIN_TILE and set(table["Average"]) == set(METRICS)
