"""Fine-tuning keeps no state that lowers a measure: Qabf, SSIM and VIF each within MAX_DROP of the base."""

from __future__ import annotations

import math

import pytest
import torch

from napari_lightfusion import finetune_choice, training
from napari_lightfusion._sample_data import microscopy_pair
from napari_lightfusion.finetune import KEPT_BASE, MAX_DROP, FinetuneConfig, finetune
from napari_lightfusion.finetune_choice import decide, keeps_measures, lowered, refusal
from napari_lightfusion.training import held_out_score
from napari_lightfusion.weights import model_for

BASE = {"Qabf": 0.60, "SSIM": 1.50, "VIF": 0.60, "loss": 1.0}


def scaled(qabf=1.0, ssim=1.0, vif=1.0) -> dict:
    """The base's measures times these factors."""
    return {"Qabf": 0.60 * qabf, "SSIM": 1.50 * ssim, "VIF": 0.60 * vif, "loss": 1.0}


def test_the_tolerance_is_the_targets_3_percent():
    from napari_lightfusion.research.crossfit import WITHIN

    assert MAX_DROP == WITHIN == 0.03 and FinetuneConfig().max_drop == MAX_DROP
    with pytest.raises(ValueError, match="max_drop"):
        FinetuneConfig(max_drop=1.0)


def test_a_higher_score_that_drops_one_measure_by_10_percent_keeps_the_base_and_names_it():
    tuned = scaled(qabf=0.90, vif=1.40)  # the geometric mean rises 8 %, Qabf falls 10 %
    assert held_out_score(tuned) > held_out_score(BASE) * 1.05
    decision = decide(BASE, [(0, BASE), (100, tuned)], min_gain=0.005)
    assert not decision.improved and decision.step == 0 and decision.values == BASE
    assert decision.tuned == tuned and decision.tuned_step == 100
    assert list(decision.lost) == ["Qabf"] and decision.lost["Qabf"] == pytest.approx(-0.10)
    line = refusal(BASE, decision.tuned, decision.lost)
    assert "lowered Qabf by 10.0% (0.600 -> 0.540)" in line and "more than the 3% any measure may fall" in line
    assert "\n" not in line


def test_every_measure_higher_is_accepted():
    tuned = scaled(1.05, 1.01, 1.10)
    decision = decide(BASE, [(0, BASE), (50, tuned)], min_gain=0.005)
    assert decision.improved and decision.step == 50 and decision.values == tuned and not decision.lost


def test_a_fall_within_the_tolerance_is_accepted():
    tuned = scaled(qabf=0.98, vif=1.20)  # Qabf -2 %: within 3 %
    assert not lowered(tuned, BASE)
    decision = decide(BASE, [(0, BASE), (50, tuned)], min_gain=0.005)
    assert decision.improved and decision.step == 50
    assert lowered(scaled(qabf=0.96), BASE) == {"Qabf": pytest.approx(-0.04)}


def test_the_best_state_kept_is_the_best_that_lowers_no_measure():
    blurry = scaled(qabf=0.75, vif=1.60)  # the highest score, Qabf -25 %
    fair = scaled(1.02, 1.00, 1.05)
    states = [(0, BASE), (100, fair), (200, blurry), (300, scaled(1.01, 1.0, 1.01))]
    assert max(held_out_score(v) for _, v in states) == held_out_score(blurry)
    decision = decide(BASE, states, min_gain=0.005)
    assert decision.improved and decision.step == 100 and decision.values == fair
    rank = keeps_measures(BASE)
    assert (
        rank(blurry) == (0, -math.inf)
        and rank(fair) == (2, held_out_score(fair))
        and rank(BASE) == (2, held_out_score(BASE))
    )


REFERENCE = {"Qabf": 0.80, "SSIM": 1.45, "VIF": 0.50, "loss": 2.0}  # the best preset: sharper, less VIF than the base


def test_a_state_that_keeps_every_measure_of_the_best_preset_is_kept_though_below_the_base_on_one():
    assert held_out_score(REFERENCE) > held_out_score(BASE)
    like_reference = {"Qabf": 0.79, "SSIM": 1.46, "VIF": 0.50, "loss": 1.0}  # VIF -17 % against the base
    higher = scaled(1.02, 1.0, 1.02)  # keeps the base's measures, a higher score, but Qabf -23 % against the best
    states = [(0, BASE), (100, higher), (200, like_reference)]
    decision = decide(BASE, states, min_gain=0.005, reference=REFERENCE)
    assert decision.improved and decision.step == 200 and decision.lost == {"VIF": pytest.approx(0.50 / 0.60 - 1)}
    rank = keeps_measures(BASE, reference=REFERENCE, min_gain=0.005)
    assert rank(like_reference)[0] == 2 and rank(higher)[0] == 1 and rank(BASE)[0] == 0  # the base is below min_gain
    # without a state that keeps the best preset's measures, one that keeps the base's is kept, as without a reference
    assert decide(BASE, states[:2], min_gain=0.005, reference=REFERENCE).step == 100
    # and one that keeps neither is not
    assert not decide(BASE, [(100, scaled(qabf=0.9, vif=1.5))], min_gain=0.005, reference=REFERENCE).improved


def test_the_margin_still_applies_and_every_measure_is_checked():
    assert not decide(BASE, [(10, scaled(1.001, 1.001, 1.001))], min_gain=0.005).improved  # below the margin
    several = scaled(ssim=0.95, vif=0.50)
    decision = decide(BASE, [(10, several)], min_gain=0.0)
    assert not decision.improved and set(decision.lost) == {"SSIM", "VIF"}
    assert "SSIM by 5.0%" in refusal(BASE, several, decision.lost) and "VIF by 50.0%" in refusal(
        BASE, several, decision.lost
    )
    assert decide(BASE, [], min_gain=0.0) == finetune_choice.Decision(False, 0, BASE)


def test_a_measure_the_base_lacks_is_not_compared_one_the_state_lacks_is_lost():
    base = {**BASE, "VIF": float("nan")}  # VIF of parts under 17 x 17 pixels
    assert not lowered(scaled(vif=float("nan")), base)
    assert lowered({**scaled(1.1, 1.1), "VIF": float("nan")}, BASE) == {"VIF": -1.0}


@pytest.fixture
def scripted(private_presets, monkeypatch):
    """A run whose held-out validations are given: the base scores BASE, step k scores ``script[k]``."""
    script = {}
    monkeypatch.setattr(finetune_choice, "score_presets", lambda held, names: {name: dict(BASE) for name in names})
    real = training.validate

    def validate(model, images, objective, measures=training.SCORED):
        values = real(model, images, objective, ())
        return {**values, **script.pop(min(script))} if script else {**values, **BASE}

    monkeypatch.setattr(training, "validate", validate)
    return script


FAST = dict(steps=10, validate_every=5, minutes=None, crop=32, device="cpu")


def states_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_run_keeps_the_later_state_that_lowers_no_measure(scripted):
    scripted.update({5: scaled(qabf=0.80, vif=1.50), 10: scaled(1.02, 1.0, 1.04)})
    seen = []
    result = finetune([microscopy_pair(64, seed=1)], "PET-MRI", progress=seen.append, **FAST)
    assert [p.best_step for p in seen if p.validation is not None and p.step] == [0, 10]  # step 5 never was the best
    assert result.improved and result.best_step == 10 and result.after["Qabf"] == pytest.approx(0.612)
    assert not result.lost and not result.refusal and result.verdict.startswith("improved")
    assert not states_equal(result.model, model_for("PET-MRI"))


def test_a_run_whose_every_state_lowers_a_measure_keeps_the_base_and_says_which(scripted):
    scripted.update({5: scaled(qabf=0.745, vif=1.45), 10: scaled(qabf=0.85, vif=1.15)})  # as SPECT -> CT in crossfit.md
    result = finetune([microscopy_pair(64, seed=1)], "PET-MRI", **FAST)
    assert not result.improved and result.best_step == 0 and result.after == result.before
    assert states_equal(result.model, model_for("PET-MRI"))
    assert result.best_tuned["Qabf"] == pytest.approx(0.447) and result.lost == {"Qabf": pytest.approx(-0.255)}
    lines = result.report()
    assert lines[-1] == result.verdict and result.verdict.startswith(KEPT_BASE) and "Qabf -25.5%" in result.verdict
    assert lines[-2] == result.refusal  # the widget shows every line but the last, then its own kept-base line
    assert result.refusal.startswith("the best fine-tuned state would have lowered Qabf by 25.5% (0.600 -> 0.447)")
    assert result.sidecar()["finetune"]["lost"] == {"Qabf": pytest.approx(-0.255)}
    assert result.sidecar()["finetune"]["max_drop"] == MAX_DROP


def test_a_run_from_a_weaker_base_keeps_the_best_presets_measures_and_says_it_is_below_the_base(scripted, monkeypatch):
    scores = {"CT-MRI": REFERENCE, "PET-MRI": BASE}
    monkeypatch.setattr(
        finetune_choice, "score_presets", lambda held, names: {name: dict(scores.get(name, BASE)) for name in names}
    )
    like_reference = {"Qabf": 0.79, "SSIM": 1.46, "VIF": 0.50}
    scripted.update({5: scaled(1.02, 1.0, 1.02), 10: like_reference})  # keeps the base's measures; the best's
    result = finetune([microscopy_pair(64, seed=1)], "PET-MRI", **FAST)
    assert result.reference == "CT-MRI" and result.improved and result.best_step == 10
    assert result.lost == {"VIF": pytest.approx(0.50 / 0.60 - 1)}
    assert "below the base on VIF -16.7%, but within 3% of CT-MRI, the best preset" in result.verdict
    assert result.sidecar()["finetune"]["reference"] == "CT-MRI"
