"""Tests of the hot-spot ceiling: fused images that lead pixel average on both hot-spot measures as far as any can.

The images are scored with the evaluator's measures (scikit-image), not the
optimiser's own SSIM, so a lead here is one ``docs/results.md`` would see.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.colour import grey
from napari_lightfusion.metrics import hot_spot_scores
from napari_lightfusion.research.cli import main
from napari_lightfusion.research.hot_spot_ceiling import ceiling_images, leads, pair_ceilings


def _pair(seed: int, size: int = 48):
    rng = np.random.default_rng(seed)
    mri = np.clip(phantom_mri(size) + rng.normal(0, 0.04, (size, size)), 0, 1)
    pet = np.clip(grey(phantom_pet(size) / 255.0) + rng.normal(0, 0.04, (size, size)), 0, 1)
    return mri, pet


def _means(images, pairs):
    rows = [hot_spot_scores(f * 255, a * 255, b * 255) for f, (a, b) in zip(images, pairs)]
    return {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}


def test_the_ceiling_leads_pixel_average_on_both_measures_by_the_evaluators_scores():
    pairs = [_pair(0), _pair(1)]
    best = ceiling_images(pairs, steps=60)
    average = _means([0.5 * (a + b) for a, b in pairs], pairs)
    lead_a, lead_f = leads(_means(best, pairs), average)
    assert lead_a > 0.005 and lead_f > 0.005
    assert all(f.shape == a.shape and f.min() >= 0.0 and f.max() <= 1.0 for f, (a, _) in zip(best, pairs))


def test_a_pair_without_a_hot_spot_keeps_the_pixel_average():
    mri, _ = _pair(0)
    dark = np.zeros_like(mri)  # nothing lit: no hot spot
    (fused,) = ceiling_images([(mri, dark)], steps=5)
    np.testing.assert_allclose(fused, 0.5 * mri, atol=2e-3)  # the logit of the clamped average, back


def test_each_pairs_own_ceiling_leads_the_pixel_average_on_both_measures_of_that_pair():
    pairs = [_pair(3), _pair(4, size=40), _pair(5)]  # two sizes: optimised in two batches
    dark = (pairs[0][0], np.zeros_like(pairs[0][0]))  # no hot spot: keeps the average
    parts = [np.stack(p).astype(np.float32) for p in [*pairs, dark]]
    best = pair_ceilings(parts, steps=40, chunk=1)
    assert [f.shape for f in best] == [p.shape[1:] for p in parts] and best[0].dtype == np.float32
    for f, (a, b) in zip(best, pairs):
        lead_a, lead_f = leads(_means([f], [(a, b)]), _means([0.5 * (a + b)], [(a, b)]))
        assert lead_a > 0.003 and lead_f > 0.003  # each pair on its own, by the evaluator's scores
    np.testing.assert_allclose(best[3], 0.5 * dark[0], atol=1e-6)


@pytest.fixture
def pet_root(tmp_path):
    """Two noisy phantom PET-MRI test pairs, 48 x 48."""
    for k in (1, 2):
        mri, pet = _pair(k)
        for modality, image in (("MRI", mri), ("PET", pet)):
            folder = tmp_path / "test" / "PET-MRI" / modality
            folder.mkdir(parents=True, exist_ok=True)
            imsave(folder / f"{k}.png", np.round(255 * image).astype(np.uint8), check_contrast=False)
    return tmp_path


def test_the_command_prints_the_ceiling_beside_the_presets_points_on_the_issue_grid(pet_root, capsys):
    argv = ["hot-spot-ceiling", "--data", str(pet_root), "--dataset", "PET-MRI", "--steps", "20", "--threads", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PET-MRI, first 2 test pairs: pixel average anatomy / function kept")
    assert lines[1].startswith("ceiling (any fused image, 20 steps): leads +")
    assert [line.split(":")[0] for line in lines[2:]] == [f"bundled preset b = {0.1 * i:.1f}" for i in range(11)]


def test_the_command_refuses_a_pair_without_a_functional_image_in_one_line(pet_root, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["hot-spot-ceiling", "--data", str(pet_root), "--dataset", "CT-MRI"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and "invalid choice: 'CT-MRI'" in err


@pytest.mark.parametrize("option", [["--steps", "0"], ["--limit", "0"]])
def test_the_command_refuses_nothing_to_do_in_one_line(pet_root, option, capsys):
    assert main(["hot-spot-ceiling", "--data", str(pet_root), "--dataset", "PET-MRI", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightfusion-research hot-spot-ceiling: error: steps and limit must be at least 1")
    assert "\n" not in err


def test_balance_auto_prints_the_per_pair_b_beside_the_best_single_b(pet_root, capsys):
    argv = ["balance-auto", "--data", str(pet_root), "--datasets", "PET-MRI", "--splits", "test", "--threads", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| dataset | split, pairs | pixel average") and len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:2] == ["PET-MRI", "test, 2"] and cells[3].startswith("b ")
    low, high = (float(v) for v in cells[5].split("–"))
    assert 0.0 <= low <= high <= 1.0 and float(cells[6]) > 0
    before, after = (part.split(" / ") for part in cells[7].split(" → "))
    assert len(before) == len(after) == 3 and all(float(v) > 0 for v in before + after)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--datasets", "CT-MRI"], "unknown dataset 'CT-MRI'"),
        (["--splits", "train"], "unknown split 'train'"),
        (["--limit", "0"], "limit must be at least 1"),
        (["--splits", "validation"], "train/PET-MRI (is "),  # no train/ folder
        (["--datasets", "PET-MRI,SPECT-MRI", "--weights", "w.pt"], "--weights is one network"),
        (["--datasets", "PET-MRI,SPECT-MRI", "--weights", "w.pt"], "--weights is one network"),
    ],
)
def test_balance_auto_refuses_what_it_cannot_measure_in_one_line(pet_root, option, message, capsys):
    assert main(["balance-auto", "--data", str(pet_root), "--datasets", "PET-MRI", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
