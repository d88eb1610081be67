"""Bundled weights: present, checked on load, clear errors when damaged."""

import json
import shutil
from pathlib import Path

import pytest

from napari_lightfusion.model import LightFusionNet, count_parameters
from napari_lightfusion.weights import PRESETS, WeightError, load_model, preset_path, sha256


@pytest.mark.parametrize("preset", PRESETS)
def test_bundled_preset_loads_and_matches_its_sidecar(preset):
    path = preset_path(preset)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == sha256(path)
    assert sidecar["dataset"] == preset
    for key in ("model", "train", "loss_weights", "source_commit", "train_seconds"):
        assert key in sidecar
    model = load_model(path)
    assert isinstance(model, LightFusionNet)
    assert count_parameters(model) <= 5000


@pytest.fixture
def copied(tmp_path):
    src = preset_path("PET-MRI")
    dst = tmp_path / "w.pt"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def one_line(exc):
    return "\n" not in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(WeightError, match="missing") as exc:
        load_model(tmp_path / "nothing.pt")
    assert one_line(exc) and "nothing.pt" in str(exc.value)


def test_truncated_file(copied):
    data = copied.read_bytes()
    copied.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightError, match="sha256") as exc:
        load_model(copied)
    assert one_line(exc) and str(copied) in str(exc.value)


def test_altered_file(copied):
    data = bytearray(copied.read_bytes())
    data[-100] ^= 0xFF
    copied.write_bytes(bytes(data))
    with pytest.raises(WeightError, match="sha256"):
        load_model(copied)


def test_weights_of_another_architecture(copied):
    side = json.loads(copied.with_suffix(".json").read_text())
    side["model"]["width"] = 8  # the sidecar now describes a different network
    copied.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(WeightError, match="does not fit") as exc:
        load_model(copied)
    assert one_line(exc)


def test_missing_sidecar(copied):
    copied.with_suffix(".json").unlink()
    with pytest.raises(WeightError, match="sidecar"):
        load_model(copied)


def test_unknown_preset():
    with pytest.raises(WeightError, match="unknown preset"):
        preset_path("XR-MRI")


# --------------------------------------------------------------------------
# custom presets (the user's data folder; here a temporary one)


@pytest.fixture
def presets(tmp_path, monkeypatch):
    """An empty custom presets folder for the test."""
    folder = tmp_path / "presets"
    monkeypatch.setenv("LIGHTFUSION_PRESETS_DIR", str(folder))
    return folder


def test_custom_preset_round_trips_through_fuse(presets, copied):
    import numpy as np

    from napari_lightfusion import fuse
    from napari_lightfusion.weights import all_presets, custom_presets, save_custom_preset

    assert custom_presets() == {} and all_presets() == list(PRESETS)
    path = save_custom_preset("my cells", copied)
    assert path.parent == presets and custom_presets() == {"my cells": path}
    assert all_presets() == [*PRESETS, "my cells"]  # bundled first
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["preset"] == "my cells" and side["sha256"] == sha256(path) and side["copied_from"] == str(copied)
    a, b = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    by_name = fuse(a, b, preset="my cells", device="cpu")
    by_path = fuse(a, b, preset=str(path), device="cpu")
    bundled = fuse(a, b, preset="PET-MRI", device="cpu")  # the copied file holds the PET-MRI weights
    assert np.array_equal(by_name.fused, bundled.fused) and np.array_equal(by_path.fused, bundled.fused)
    assert by_name.preset == "my cells"


def test_custom_preset_from_a_model_and_removal(presets):
    from napari_lightfusion.weights import (
        custom_presets,
        describe_presets,
        model_for,
        remove_custom_preset,
        save_custom_preset,
    )

    model = model_for("CT-MRI")
    path = save_custom_preset("ct copy", model=model, sidecar={"finetune": {"base": "CT-MRI", "steps_taken": 7}})
    assert preset_path("ct copy") == path
    listing = describe_presets()
    assert "ct copy" in listing and "fine-tuned from CT-MRI, 7 steps" in listing and "bundled" in listing
    # a preset trained further from its own earlier file names that file by its hash, not only by its name
    assert "started from CT-MRI.pt (sha256 c7f435eac8a1)" in listing
    with pytest.raises(WeightError, match="exists already"):
        save_custom_preset("ct copy", model=model, sidecar={})
    save_custom_preset("ct copy", model=model, sidecar={}, overwrite=True)
    remove_custom_preset("ct copy")
    assert custom_presets() == {} and not path.exists() and not path.with_suffix(".json").exists()
    with pytest.raises(WeightError, match="no custom preset"):
        remove_custom_preset("ct copy")
    with pytest.raises(WeightError, match="bundled"):
        remove_custom_preset("CT-MRI")


def test_altered_custom_weights_are_refused_in_one_line(presets, copied):
    import numpy as np

    from napari_lightfusion import fuse
    from napari_lightfusion.weights import describe_presets, save_custom_preset

    path = save_custom_preset("mine", copied)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightError, match="sha256") as exc:
        fuse(np.zeros((32, 32)), np.zeros((32, 32)), preset="mine", device="cpu")
    assert one_line(exc) and str(path) in str(exc.value)
    assert "DOES NOT MATCH" in describe_presets()
    with pytest.raises(WeightError, match="sha256"):  # nor can it be copied under another name
        save_custom_preset("again", path)


@pytest.mark.parametrize("name", ["", "CT-MRI", "../escape", "a/b", "x" * 65, ".hidden"])
def test_bad_custom_preset_names(presets, copied, name):
    from napari_lightfusion.weights import save_custom_preset

    with pytest.raises(WeightError) as exc:
        save_custom_preset(name, copied)
    assert one_line(exc) and not presets.exists()


def test_no_preset_is_an_error_not_a_silent_default(presets):
    import numpy as np

    from napari_lightfusion import fuse

    image = np.zeros((32, 32), np.float32)
    with pytest.raises(WeightError, match="no preset given") as exc:
        fuse(image, image, preset=None)
    assert one_line(exc) and "PET-MRI" in str(exc.value)


def test_unknown_names_and_missing_paths(presets):
    with pytest.raises(WeightError, match="unknown preset 'mine'.*CT-MRI"):
        preset_path("mine")
    with pytest.raises(WeightError, match="missing"):
        preset_path(str(presets / "nothing.pt"))


def test_default_presets_folder_is_the_users_data_folder(monkeypatch):
    from platformdirs import user_data_dir

    from napari_lightfusion.weights import presets_dir

    monkeypatch.delenv("LIGHTFUSION_PRESETS_DIR", raising=False)
    assert presets_dir() == Path(user_data_dir("napari-lightfusion")) / "presets"
