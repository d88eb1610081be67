"""The bundled weights fuse sensibly: on a phantom, and on real test pairs when present."""

import numpy as np
import pytest
from yuv import rgb_to_yuv

from napari_lightfusion import fuse
from napari_lightfusion.colour import luminance
from napari_lightfusion.weights import PRESETS


def phantom():
    """A grey ring (anatomy) and a separate colour hot spot (function)."""
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 64)
    mri = np.where((r > 40) & (r < 48), 0.8, 0.15) * (r < 56)
    spot = np.exp(-((yy - 64) ** 2 + (xx - 64) ** 2) / 60.0)
    pet = np.stack([spot, 0.6 * spot, 0.1 * spot], axis=-1)
    return mri.astype(np.float32), pet.astype(np.float32)


@pytest.mark.parametrize("preset", PRESETS)
def test_fused_phantom_keeps_the_bright_structures_of_both(preset):
    mri, pet = phantom()
    fused = fuse(mri, pet if preset != "CT-MRI" else luminance(pet), preset=preset).fused
    y = luminance(fused) if fused.ndim == 3 else fused
    ring = mri > 0.7
    hot = np.zeros_like(mri, bool)
    hot[60:69, 60:69] = True
    yy, xx = np.mgrid[:128, :128]
    around = (np.hypot(yy - 64, xx - 64) > 20) & (np.hypot(yy - 64, xx - 64) < 35)  # anatomy around the spot
    background = mri < 0.01
    assert y[ring].mean() > 0.6 * mri[ring].mean()
    assert y[ring].mean() > y[background].mean() + 0.3
    # At their default balance (anatomy first) the PET-MRI and SPECT-MRI presets keep about 40 % of the
    # functional luminance where the MRI is dark (41 % and 36 %, at b = 0.24 and 0.25; CT-MRI 93 %): the spot
    # stands out from the anatomy around it by 0.073 and 0.043 in luminance and by its colour, which the colour step
    # keeps without changing that luminance; a higher b brightens it further (by 0.02 at least, unless, as CT-MRI's,
    # it keeps 90 % of the functional luminance already: then it need only be brighter).
    assert y[hot].mean() > 0.3 * luminance(pet)[hot].mean()
    assert y[hot].mean() > y[around].mean() + 0.04
    if fused.ndim == 3:  # the spot keeps the functional hue: red above green above blue, as in the source
        r, g, b = (fused[hot][:, c].mean() for c in range(3))
        assert r > g > b and r - b > 0.05
    brighter = fuse(mri, pet if preset != "CT-MRI" else luminance(pet), preset=preset, balance=0.5).fused
    spot, brighter_spot = y[hot].mean(), (luminance(brighter) if brighter.ndim == 3 else brighter)[hot].mean()
    headroom = spot < 0.9 * luminance(pet)[hot].mean()
    assert brighter_spot > spot + (0.02 if headroom else 0.0)


def test_real_pet_mri_pair_shows_mri_anatomy_with_pet_colour(harvard_root):
    from napari_lightfusion.pair_data import load_pairs

    pair = load_pairs(harvard_root, "test", "PET-MRI")[5]
    fused = fuse(pair.anatomical, pair.other, preset="PET-MRI").fused
    assert fused.shape == pair.other.shape
    y = luminance(fused)
    # anatomy: the fused luminance follows the MRI where the MRI is bright
    bright = pair.anatomical > 0.4
    assert np.corrcoef(y[bright], pair.anatomical[bright])[0, 1] > 0.5
    # colour: the fused chrominance is the PET's wherever nothing was clipped
    ok = (fused > 0.01).all(-1) & (fused < 0.99).all(-1)
    diff = np.abs(rgb_to_yuv(fused)[ok][:, 1:] - rgb_to_yuv(pair.other)[ok][:, 1:])
    assert ok.mean() > 0.2 and diff.max() < 1e-4


@pytest.mark.parametrize("dataset", PRESETS)
def test_real_pairs_fuse_to_finite_images_in_range(harvard_root, dataset):
    from napari_lightfusion.pair_data import load_pairs, pair_names

    names = pair_names(harvard_root, "test", dataset)[:2]
    for pair in load_pairs(harvard_root, "test", dataset, names):
        result = fuse(pair.anatomical, pair.other, preset=dataset)
        assert np.isfinite(result.fused).all()
        assert 0 <= result.fused.min() <= result.fused.max() <= 1
        assert result.fused.std() > 0.05


@pytest.mark.parametrize("dataset", PRESETS)
def test_bundled_network_beats_pixel_average_where_docs_say_it_does(harvard_root, dataset):
    """Ahead of pixel average on Qabf, SSIM and VIF everywhere, on MI for PET-MRI and SPECT-MRI.

    On every third test pair; docs/results.md has all pairs, and says that
    CT-MRI is behind the average on MI.
    """
    from napari_lightfusion.pair_data import pair_names
    from napari_lightfusion.research.methods import baseline_method, network_method
    from napari_lightfusion.research.scoring import evaluate_dataset

    names = pair_names(harvard_root, "test", dataset)[::3]
    methods = {"net": network_method(preset=dataset), "average": baseline_method("average")}
    means = evaluate_dataset(harvard_root, dataset, methods, names=names).means
    for metric in ("Qabf", "SSIM", "VIF") + (("MI",) if dataset != "CT-MRI" else ()):
        assert means["net"][metric] > means["average"][metric], (metric, means["net"][metric], means["average"][metric])


@pytest.mark.parametrize("preset", PRESETS)
def test_bundled_presets_take_a_balance_whose_default_is_recorded(preset):
    """Each preset's default b is in its sidecar: 0 (the paper's loss at b = 0), or chosen by default-balance."""
    from napari_lightfusion.weights import model_for, preset_path, read_sidecar

    model = model_for(preset)
    side = read_sidecar(preset_path(preset))
    default_b = model.config.balance
    assert model.conditioned and default_b is not None
    if default_b != 0.0:  # moved from 0: the sidecar says how and against what
        choice = side["default_balance"]
        assert choice["balance"] == default_b and choice["pairs"] > 10 and "validation" in choice["rule"]
    mri, pet = phantom()
    functional = pet if preset != "CT-MRI" else luminance(pet)
    default = fuse(mri, functional, preset=preset).fused
    assert np.array_equal(default, fuse(mri, functional, preset=preset, balance=default_b).fused)
    assert not np.allclose(default, fuse(mri, functional, preset=preset, balance=1.0).fused, atol=1e-3)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="balance"):
            fuse(mri, functional, preset=preset, balance=bad)


@pytest.mark.parametrize("dataset", ["PET-MRI", "SPECT-MRI"])
def test_balance_trades_anatomy_for_function_inside_the_hot_spots(harvard_root, dataset):
    """b = 0 keeps more anatomy under the uptake, b = 1 more of the uptake's gradations (first 12 test pairs)."""
    from napari_lightfusion.research.balance import balance_curve

    curve = balance_curve(harvard_root, dataset, balances=(0.0, 0.5, 1.0), limit=12)["network"]
    anatomy = [curve[b]["anatomy kept"] for b in (0.0, 0.5, 1.0)]
    function = [curve[b]["function kept"] for b in (0.0, 0.5, 1.0)]
    assert anatomy[0] > anatomy[1] > anatomy[2]
    assert function[0] < function[1] < function[2]
    assert anatomy[0] > 0.6 and function[2] > 0.8


def test_dominating_needs_both_measures_at_or_above_the_reference():
    from napari_lightfusion.research.balance import balance_markdown, dominating

    network = {
        0.0: {"anatomy kept": 0.9, "function kept": 0.2},
        0.5: {"anatomy kept": 0.5, "function kept": 0.6},  # equal on anatomy, above on function
        1.0: {"anatomy kept": 0.1, "function kept": 0.95},
    }
    average = {"anatomy kept": 0.5, "function kept": 0.55}
    assert dominating(network, average) == [0.5]
    curve = {"network": network, "baselines": {"average": average}, "pairs": 3}
    text = balance_markdown({"PET-MRI": curve})
    assert "| **LightFusionNet b = 0.5** | **0.500** | **0.600** |" in text
    assert "b = 0.5 (bold) dominate" in text and "by at most 0.000 on the nearer one" in text
    assert "No b measured" in balance_markdown({"PET-MRI": {**curve, "network": {1.0: network[1.0]}}})
    ahead = {"means": {"anatomy kept": 0.52, "function kept": 0.57}, "chosen": [0.42, 0.58]}
    text = balance_markdown({"PET-MRI": {**curve, "auto": ahead}})
    assert "| **LightFusionNet b = auto (per pair: 0.42–0.58)** | **0.520** | **0.570** |" in text
    assert "leads it by +0.020 / +0.020" in text and "not a held-out score" in text
    behind = {"means": {"anatomy kept": 0.52, "function kept": 0.54}, "chosen": [0.5, 0.5]}
    text = balance_markdown({"PET-MRI": {**curve, "auto": behind}})
    assert "| LightFusionNet b = auto (per pair: 0.5–0.5) | 0.520 | 0.540 |" in text and "+0.020 / -0.010" in text


def test_the_curve_is_refined_where_it_crosses_the_average_anatomy():
    from napari_lightfusion.research.balance import crossing_steps

    network = {b: {"anatomy kept": 1.0 - b, "function kept": b} for b in (0.0, 0.4, 0.45, 0.5, 1.0)}
    assert crossing_steps(network, 0.53) == [0.46, 0.47, 0.48, 0.49]  # 0.55 and 0.5 bracket it
    assert crossing_steps(network, 2.0) == []


def test_default_balance_is_picked_on_validation_pairs_and_written_to_the_sidecar(harvard_root, tmp_path):
    """A preset compared with itself picks its own default b (distance 0); the choice lands in a copy's sidecar."""
    import json
    import shutil

    from napari_lightfusion.research.balance import pick_default_balance, set_default_balance
    from napari_lightfusion.weights import model_for, preset_path

    like = preset_path("SPECT-MRI")
    own = model_for("SPECT-MRI").config.balance
    copy = tmp_path / "retrained.pt"
    shutil.copy(like, copy)
    shutil.copy(like.with_suffix(".json"), copy.with_suffix(".json"))
    choice = pick_default_balance(harvard_root, "SPECT-MRI", copy, like, balances=(own, 0.6))
    assert choice["balance"] == own and choice["chosen"]["distance"] == 0.0 and choice["pairs"] > 10
    choice["balance"] = 0.6  # as if the retrained network had matched there
    set_default_balance(copy, choice)
    side = json.loads(copy.with_suffix(".json").read_text())
    assert side["model"]["balance"] == 0.6 and side["default_balance"]["like"]["sha256"] == side["sha256"]
    assert model_for(None, copy).config.balance == 0.6
    with pytest.raises(ValueError, match="balance"):
        set_default_balance(copy, {**choice, "balance": 1.5})
