"""Bundled weights: present, checked on load, clear errors when damaged."""

import json
import shutil

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
