"""``lightfusion-research crossfit``: the six off-diagonal fine-tuning cases, on a tiny synthetic atlas."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_lightfusion.research import crossfit
from napari_lightfusion.research.cli import main


@pytest.fixture(autouse=True)
def presets(private_presets):
    return private_presets


@pytest.fixture
def atlas(tmp_path):
    """``train/CT-MRI`` (6 pairs) and ``test/CT-MRI`` (2 pairs) of 64 x 64 phantoms: grey MRI discs, bright CT rings."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for split, count in (("train", 6), ("test", 2)):
        for i in range(count):
            cy, cx = rng.integers(24, 40, 2)
            r = np.hypot(yy - cy, xx - cx)
            mri = (np.clip(1 - r / 22, 0, 1) * 180 + rng.normal(0, 4, r.shape)).clip(0, 255).astype(np.uint8)
            ct = ((np.abs(r - 20) < 2.5) * 240).astype(np.uint8)
            for modality, image in (("MRI", mri), ("CT", ct)):
                folder = tmp_path / split / "CT-MRI" / modality
                folder.mkdir(parents=True, exist_ok=True)
                imsave(folder / f"{i}.png", image, check_contrast=False)
    return tmp_path


def test_cases_parse_and_unknown_ones_are_refused():
    assert crossfit.parse_cases(None) == list(crossfit.CASES) == crossfit.parse_cases("all")
    assert len(crossfit.CASES) == 6 and all(base != target for base, target in crossfit.CASES)
    assert crossfit.parse_cases("PET-MRI:CT-MRI, CT-MRI:SPECT-MRI") == [("PET-MRI", "CT-MRI"), ("CT-MRI", "SPECT-MRI")]
    for text in ("CT-MRI:CT-MRI", "PET-MRI", ","):
        with pytest.raises(ValueError):
            crossfit.parse_cases(text)


def test_the_target_is_within_3_percent_and_mi_not_below():
    bundled = {"Qabf": 0.6, "SSIM": 1.5, "VIF": 0.7, "MI": 2.8}
    assert crossfit.meets({"Qabf": 0.6 * 0.971, "SSIM": 1.5, "VIF": 0.7 * 0.98, "MI": 2.8}, bundled)
    assert not crossfit.meets({"Qabf": 0.6 * 0.969, "SSIM": 1.5, "VIF": 0.7, "MI": 2.9}, bundled)
    assert not crossfit.meets({"Qabf": 0.7, "SSIM": 1.6, "VIF": 0.8, "MI": 2.79}, bundled)


def test_one_case_runs_as_a_user_would_and_prints_its_row(atlas, tmp_path, capsys):
    doc = tmp_path / "crossfit.md"
    code = main(
        [
            "crossfit",
            "--data",
            str(atlas),
            "--steps",
            "2",
            "--threads",
            "1",
            "--cases",
            "PET-MRI:CT-MRI",
            "--doc",
            str(doc),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith("| PET-MRI -> CT-MRI")]
    assert len(rows) == 1 and " | 2 | " in rows[0] and rows[0].rstrip().endswith(("met |", "missed |"))
    assert out.splitlines()[0].startswith("PET-MRI -> CT-MRI: loss of ")  # the line said as the case ends
    text = doc.read_text()
    assert "lightfusion-research crossfit --data" in text and "1 torch threads" in text and rows[0] in text


def test_a_case_scores_the_tuned_network_and_the_bundled_preset_on_the_test_pairs(atlas):
    from napari_lightfusion.finetune import FinetuneConfig

    bundled = crossfit.bundled_scores(atlas, "CT-MRI")
    row = crossfit.run_case(atlas, "SPECT-MRI", "CT-MRI", FinetuneConfig(steps=2, minutes=None), bundled)
    assert row["test_pairs"] == 2 and row["steps"] == 2 and set(row["tuned"]) == set(crossfit.MEASURES)
    assert all(np.isfinite(v) for v in row["tuned"].values()) and row["bundled"] is bundled
    assert row["meets"] == crossfit.meets(row["tuned"], bundled) and row["seconds"] > 0


def test_a_kept_base_says_which_measure_the_tuned_state_lowered():
    from napari_lightfusion.research.crossfit import table

    scores = dict.fromkeys(("Qabf", "SSIM", "VIF", "MI"), 0.5)
    row = {"case": "PET-MRI -> CT-MRI", "loss_from": "CT-MRI", "steps": 10, "seconds": 120.0, "tuned": scores}
    row |= {"bundled": scores, "meets": False, "improved": False, "lost": {"VIF": -0.135}}
    assert "(kept the base: it lowered VIF -13.5%)" in table([row])
    assert "(kept the base) |" in table([{**row, "lost": {}}])
