"""``lightfusion finetune`` and ``lightfusion presets``: files written, provenance, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_lightfusion._sample_data import microscopy_pair, phantom_mri, phantom_pet, phantom_stack
from napari_lightfusion.cli import main
from napari_lightfusion.weights import load_model, sha256


@pytest.fixture(autouse=True)
def presets(private_presets):
    """Every test here gets a private custom-presets folder and one torch thread."""
    return private_presets


@pytest.fixture
def cell_files(tmp_path):
    """The microscopy sample as two 16-bit PNG files, 64 x 64."""
    phase, gfp = microscopy_pair(64, seed=2)
    paths = tmp_path / "phase.png", tmp_path / "gfp.png"
    for path, image in zip(paths, (phase, gfp)):
        imsave(path, image, check_contrast=False)
    return paths


def run(capsys, *args):
    code = main(["finetune", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()[-1] if err.strip() else ""


@pytest.fixture
def poor_base(tmp_path):
    """An untrained network as a weight file: a few steps improve on it."""
    import torch

    from napari_lightfusion.model import LightFusionNet, ModelConfig
    from napari_lightfusion.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path / "untrained.pt"
    save_weights(LightFusionNet(ModelConfig(output="intensity", balance=0.0)), path, {"dataset": None})
    return path


def test_finetune_writes_weights_and_a_sidecar_and_saves_a_preset(cell_files, tmp_path, capsys, presets, poor_base):
    out = tmp_path / "tuned" / "cells.pt"
    pair = f"{cell_files[0]}:{cell_files[1]}"
    code, stdout, _ = run(
        capsys,
        pair,
        "--from",
        poor_base,
        "--loss",
        "CT-MRI",
        "--out",
        out,
        "--steps",
        4,
        "--seed",
        3,
        "--save-as",
        "cells",
        "--device",
        "cpu",
    )
    assert code == 0 and "improved on your held-out pairs" in stdout and "custom preset 'cells'" in stdout
    assert (
        f"base: {poor_base} (given)" in stdout
        and "loss: fade balance loss" in stdout
        and "(CT-MRI given; output head blend as the CT-MRI preset's, not the base's intensity)" in stdout
    )
    side = json.loads(out.with_suffix(".json").read_text())
    tune = side["finetune"]
    assert tune["base"] == str(poor_base) and tune["steps_taken"] == 4 and tune["seed"] == 3
    assert tune["device"] == "cpu" and tune["improved"] is True and side["objective"]["balance_loss"] == "fade"
    assert side["pairs"] == [
        {
            "anatomical": str(cell_files[0]),
            "functional": str(cell_files[1]),
            "sha256": [sha256(cell_files[0]), sha256(cell_files[1])],
        }
    ]
    assert set(side["validation"]["before"]) == {"loss", "Qabf", "SSIM", "VIF"} and side["train_seconds"] >= 0
    assert side["sha256"] == sha256(out)
    load_model(out)
    assert (presets / "cells.pt").read_bytes() == out.read_bytes()

    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert "cells" in listing and f"fine-tuned from {poor_base}, 4 steps on 1 pair" in listing and "PET-MRI" in listing
    assert main(["presets", "--remove", "cells"]) == 0
    assert not (presets / "cells.pt").exists()


def test_auto_is_the_default_and_a_run_that_does_not_beat_its_base_says_so(cell_files, tmp_path, capsys, presets):
    from napari_lightfusion.weights import PRESETS, model_for

    out = tmp_path / "kept.pt"
    code, stdout, _ = run(
        capsys,
        f"{cell_files[0]}:{cell_files[1]}",
        "--out",
        out,
        "--steps",
        3,
        "--lr",
        10,
        "--save-as",
        "copy",
        "--device",
        "cpu",
    )  # a learning rate that can only hurt
    assert code == 0, stdout
    assert "base: " in stdout and "the best held-out score of 3 presets: CT-MRI " in stdout
    base = next(name for name in PRESETS if f"base: {name} (" in stdout)
    assert "loss: " in stdout and f"(what {base}, the best preset on your held-out pairs, was trained with)" in stdout
    assert (
        "kept the base: fine-tuning did not improve Qabf/SSIM/VIF on your held-out pairs" in stdout
        and f"the weights of '{base}', unchanged" in stdout
        and "not saved as custom preset 'copy'" in stdout
    )
    kept = load_model(out)
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), model_for(base).state_dict().values()))
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["finetune"]["improved"] is False and side["finetune"]["base"] == base
    assert set(side["finetune"]["candidates"]) == set(PRESETS) and not (presets / "copy.pt").exists()


def test_folder_of_pairs_and_tiff_stacks_and_a_custom_base(tmp_path, capsys):
    folder = tmp_path / "pairs"
    (folder / "MRI").mkdir(parents=True)
    (folder / "PET").mkdir()
    for name in ("1.png", "2.png"):
        imsave(folder / "MRI" / name, phantom_mri(48), check_contrast=False)
        imsave(folder / "PET" / name, phantom_pet(48), check_contrast=False)
    imsave(folder / "MRI" / "alone.png", phantom_mri(48), check_contrast=False)  # no partner: ignored
    mri, pet = phantom_stack(slices=5, size=40)
    imsave(tmp_path / "mri.tif", mri, check_contrast=False)
    imsave(tmp_path / "pet.tif", pet, check_contrast=False)
    first = tmp_path / "first.pt"
    code, _, _ = run(
        capsys,
        "--pairs",
        folder,
        f"{tmp_path / 'mri.tif'}:{tmp_path / 'pet.tif'}",
        "--from",
        "PET-MRI",
        "--out",
        first,
        "--steps",
        2,
        "--device",
        "cpu",
    )
    assert code == 0
    side = json.loads(first.with_suffix(".json").read_text())
    assert len(side["pairs"]) == 3 and side["finetune"]["train_images"] == 2 + 4
    code, _, _ = run(capsys, "--pairs", folder, "--from", first, "--out", tmp_path / "second.pt", "--steps", 1)
    assert code == 0 and (tmp_path / "second.pt").exists()


def _garbage(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    return bad


@pytest.mark.parametrize(
    "arguments, message",
    [
        (lambda t, a, b: [f"{a}:{t / 'small.png'}"], "differ in shape"),
        (lambda t, a, b: ["--pairs", t / "empty"], "not a folder of pairs"),
        (lambda t, a, b: ["--pairs", t / "nothing"], "no folder"),
        (lambda t, a, b: [f"{a}:{_garbage(t)}"], "cannot read"),
        (lambda t, a, b: [f"{a}:{t / 'missing.png'}"], "no image file"),
        (lambda t, a, b: [f"{a}:{b}", "--minutes", "0.0000001"], "too small for one step"),
        (lambda t, a, b: [f"{a}:{b}", "--steps", "0"], "at least 1"),
        (lambda t, a, b: [], "give pairs"),
        (lambda t, a, b: [f"{a}{b}"], "ANATOMICAL:FUNCTIONAL"),
        (lambda t, a, b: [f"{a}:{b}", "--from", "XR-MRI"], "unknown preset"),
        (lambda t, a, b: [f"{a}:{b}", "--loss", "XR-MRI"], "unknown preset"),
        (lambda t, a, b: [f"{a}:{b}", "--save-as", "CT-MRI"], "bundled"),
        (lambda t, a, b: [f"{a}:{b}", "--device", "cuda:99"], "not available"),
    ],
    ids=[
        "unregistered",
        "empty folder",
        "no folder",
        "unreadable",
        "missing",
        "budget",
        "steps",
        "no pairs",
        "no colon",
        "preset",
        "loss preset",
        "save-as bundled",
        "device",
    ],
)
def test_errors_are_one_line_and_leave_no_file(cell_files, tmp_path, capsys, arguments, message):
    imsave(tmp_path / "small.png", np.zeros((64, 60), np.uint8), check_contrast=False)
    (tmp_path / "empty").mkdir()
    args = arguments(tmp_path, *cell_files)
    if "--from" not in args:
        args += ["--from", "PET-MRI"]
    if "--steps" not in args and "--minutes" not in args:
        args += ["--steps", "1"]
    code, _, last = run(capsys, *args, "--out", tmp_path / "out.pt")
    assert code == 2 and last.startswith("lightfusion finetune: error:") and message in last, last
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".*"))


def test_out_must_not_overwrite_the_base(cell_files, tmp_path, capsys):
    base = tmp_path / "base.pt"
    assert run(capsys, f"{cell_files[0]}:{cell_files[1]}", "--from", "PET-MRI", "--out", base, "--steps", 1)[0] == 0
    digest = sha256(base)
    code, _, last = run(capsys, f"{cell_files[0]}:{cell_files[1]}", "--from", base, "--out", base, "--steps", 1)
    assert code == 2 and "overwrite" in last and sha256(base) == digest


def test_presets_remove_errors(capsys):
    assert main(["presets", "--remove", "CT-MRI"]) == 2
    assert "bundled" in capsys.readouterr().err
    assert main(["presets", "--remove", "nothing"]) == 2
    assert "no custom preset" in capsys.readouterr().err
