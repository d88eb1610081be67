"""Tests of the ``lightfusion`` command line: each subcommand runs, and user errors are one line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from skimage.io import imread, imsave

from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.cli import main


@pytest.fixture
def pair_files(tmp_path):
    """The sample MRI-like and PET-like images written as PNG files."""
    mri, pet = tmp_path / "mri.png", tmp_path / "pet.png"
    imsave(mri, np.round(phantom_mri(64) * 255).astype(np.uint8), check_contrast=False)
    imsave(pet, phantom_pet(64), check_contrast=False)
    return mri, pet


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fuse_writes_a_colour_image_and_the_maps_and_leaves_inputs_alone(pair_files, tmp_path, capsys):
    before = [_digest(p) for p in pair_files]
    out, maps = tmp_path / "fused.png", tmp_path / "maps"
    assert main(["fuse", *map(str, pair_files), "--out", str(out), "--maps", str(maps), "--device", "cpu"]) == 0
    fused = imread(out)
    assert fused.shape == (64, 64, 3) and fused.dtype == np.uint8 and fused.max() > 0
    assert sorted(p.name for p in maps.iterdir()) == [
        "attention_anatomical.tif", "attention_functional.tif", "mix_weight.tif",  # PET-MRI is a mix network
        "surprise_anatomical.tif", "surprise_functional.tif",
    ]
    weight = imread(maps / "mix_weight.tif")
    assert weight.shape == (64, 64) and 0 <= weight.min() and weight.max() <= 1
    assert [_digest(p) for p in pair_files] == before
    assert "wrote" in capsys.readouterr().out


def test_fuse_takes_a_balance_and_refuses_one_out_of_range(pair_files, tmp_path, capsys):
    default, moved = tmp_path / "default.png", tmp_path / "moved.png"
    assert main(["fuse", *map(str, pair_files), "--out", str(default), "--device", "cpu"]) == 0
    assert main(["fuse", *map(str, pair_files), "--out", str(moved), "--device", "cpu", "--balance", "1"]) == 0
    assert not np.array_equal(imread(default), imread(moved))
    capsys.readouterr()
    assert main(["fuse", *map(str, pair_files), "--out", str(tmp_path / "x.png"), "--balance", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "balance" in err and len(err.splitlines()) == 1 and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, b, tmp: [str(a), str(tmp / "missing.png")], "missing.png"),
        (lambda a, b, tmp: [str(a), str(b), "--preset", "XRAY"], "XRAY"),
        (lambda a, b, tmp: [str(a), str(b), "--device", "tpu"], "tpu"),
    ],
    ids=["missing file", "unknown preset", "unknown device"],
)
def test_fuse_errors_are_one_line(pair_files, tmp_path, capsys, change, message):
    args = change(*pair_files, tmp_path)
    if "--out" not in args:
        args = ["fuse", *args[:2], "--out", str(tmp_path / "f.png"), *args[2:]]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightfusion fuse: error:") and message in err and "\n" not in err
    assert not (tmp_path / "f.png").exists()


def test_mismatched_shapes_are_refused(pair_files, tmp_path, capsys):
    small = tmp_path / "small.png"
    imsave(small, np.zeros((32, 48), np.uint8), check_contrast=False)
    assert main(["fuse", str(pair_files[0]), str(small), "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "shape" in err and "\n" not in err


def test_train_refuses_an_unknown_weighting(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--dataset", "PET-MRI", "--out", str(tmp_path / "o"),
                 "--weighting", "paper"]) == 2
    assert "unknown weighting" in capsys.readouterr().err


def test_evaluate_on_a_wrong_root_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightfusion evaluate: error:") and "\n" not in err
    assert not (tmp_path / "r.md").exists()


@pytest.fixture
def small_root(tmp_path):
    """A data root with two noisy phantom PET-MRI test pairs, 48 x 48."""
    root = tmp_path / "harvard"
    rng = np.random.default_rng(0)
    for name in ("1.png", "2.png"):
        for modality in ("MRI", "PET"):
            folder = root / "test" / "PET-MRI" / modality
            folder.mkdir(parents=True, exist_ok=True)
            image = phantom_pet(48) if modality == "PET" else np.round(255 * phantom_mri(48)).astype(np.uint8)
            image = np.clip(image.astype(int) + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8)
            imsave(folder / name, image, check_contrast=False)
    return root


def test_evaluate_writes_results_for_a_small_test_set(small_root, tmp_path):
    root = small_root
    out = tmp_path / "docs" / "results.md"
    assert main(["evaluate", "--data", str(root), "--out", str(out), "--datasets", "PET-MRI", "--limit", "2"]) == 0
    text = out.read_text()
    assert f"--out {out} --datasets PET-MRI --limit 2`" in text  # the command that made it, as run
    assert "LightFusionNet" in text and "Qabf" in text and "laplacian" in text.lower()
    assert (out.parent / "contact_PET-MRI.png").is_file()


def test_bench_prints_a_table_with_a_speedup(capsys):
    assert main(["bench", "--sizes", "64", "--stack", "none", "--big", "none", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 64x64 pair"))
    speedup = float(row.split("|")[6].strip().rstrip("x"))
    assert speedup > 0


def test_score_refuses_a_missing_weight_file(tmp_path, capsys):
    assert main(["score", str(tmp_path / "none.pt"), "--data", str(tmp_path), "--dataset", "PET-MRI"]) == 2
    assert "none.pt" in capsys.readouterr().err


def test_score_prints_one_row_per_weight_file_and_baseline(small_root, capsys):
    from napari_lightfusion.weights import preset_path

    assert main(["score", str(preset_path("PET-MRI")), "--data", str(small_root), "--dataset", "PET-MRI",
                 "--baselines"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["average", "max", "laplacian", "alpha", "weights/PET-MRI"]


def test_score_gives_a_conditioned_network_one_row_per_balance(small_root, capsys):
    from napari_lightfusion.weights import preset_path

    assert main(["score", str(preset_path("PET-MRI")), "--data", str(small_root), "--dataset", "PET-MRI",
                 "--balance", "0,1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["weights/PET-MRI b=0", "weights/PET-MRI b=1"]
    assert rows[0].split("|")[2:] != rows[1].split("|")[2:]  # b changes the scores


def test_score_on_the_validation_pairs_reads_only_those_of_train(small_root, capsys):
    """``--split validation`` scores the pairs carved out of train/ (never test/): runs are chosen on them."""
    import shutil

    from napari_lightfusion.research.data import is_validation
    from napari_lightfusion.weights import preset_path

    names = [f"{k}.png" for k in range(100)]
    held_out = next(n for n in names if is_validation(n))
    trained_on = next(n for n in names if not is_validation(n))
    for modality in ("MRI", "PET"):
        folder = small_root / "train" / "PET-MRI" / modality
        folder.mkdir(parents=True)
        for name in (held_out, trained_on):
            shutil.copy(small_root / "test" / "PET-MRI" / modality / "1.png", folder / name)
    shutil.rmtree(small_root / "test")
    assert main(["score", str(preset_path("PET-MRI")), "--data", str(small_root), "--dataset", "PET-MRI",
                 "--split", "validation"]) == 0
    assert "1 PET-MRI validation pairs." in capsys.readouterr().out


def test_commands_that_open_napari_prefer_pyqt6(monkeypatch):
    """With both bindings installed qtpy would pick PyQt5 and napari would show its deprecation toast."""
    import importlib.util

    from napari_lightfusion import cli

    monkeypatch.delenv("QT_API", raising=False)
    cli._prefer_pyqt6()
    import os

    expected = "pyqt6" if importlib.util.find_spec("PyQt6") else None
    assert os.environ.get("QT_API") == expected
    monkeypatch.setenv("QT_API", "pyside6")
    cli._prefer_pyqt6()
    assert os.environ["QT_API"] == "pyside6"  # a binding the user asked for is kept
