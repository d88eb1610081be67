"""Fine-tuning (napari_lightfusion.finetune): base and loss chosen by measurement, never worse, stops, repeats."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_lightfusion import finetune_choice, fuse
from napari_lightfusion._sample_data import microscopy_pair, phantom_mri, phantom_pet, phantom_stack
from napari_lightfusion.finetune import KEPT_BASE, FinetuneConfig, finetune
from napari_lightfusion.inputs import prepare_pair
from napari_lightfusion.model import LightFusionNet, ModelConfig
from napari_lightfusion.objective import Objective, objective_of, with_hot_spots
from napari_lightfusion.pair_data import split_pair, split_prepared
from napari_lightfusion.training import held_out_score, validate
from napari_lightfusion.weights import PRESETS, load_model, model_for, preset_path, read_sidecar, save_weights

#: Tiny and fast: 32-pixel crops, validation every 5 steps, on the CPU.
FAST = dict(minutes=None, crop=32, validate_every=5, device="cpu")


@pytest.fixture(autouse=True)
def presets(private_presets):
    """A private custom-presets folder (``base="auto"`` weighs every preset) and one torch thread."""
    return private_presets


@pytest.fixture(scope="module")
def cells():
    """The microscopy sample, small: phase contrast (anatomical) and GFP, uint16 96 x 96."""
    return microscopy_pair(96, seed=1)


@pytest.fixture(scope="module")
def poor_base(tmp_path_factory):
    """An untrained network as a weight file: any training improves it at once."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "untrained.pt"
    save_weights(LightFusionNet(ModelConfig(output="intensity", balance=0.0)), path, {"dataset": None})
    return str(path)


def states_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_few_steps_improve_a_poor_base_and_leave_the_shared_model_alone(cells, poor_base):
    shared = model_for(weights=poor_base)
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    seen = []
    result = finetune([cells], poor_base, steps=20, progress=seen.append, **FAST)
    assert result.improved and not result.kept_base and result.best_step > 0
    assert held_out_score(result.after) > held_out_score(result.before) * 1.005
    assert result.steps == 20 and result.stopped == "steps"
    assert [p.step for p in seen][:2] == [0, 1] and seen[-1].step == 20 and seen[-1].fraction == 1.0
    assert seen[0].validation == result.before
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())
    assert not states_equal(result.model, shared)
    assert result.verdict.startswith("improved on your held-out pairs")
    held = with_hot_spots(split_pair(prepare_pair(*cells))[1])
    again = validate(result.model, held, result.objective)
    assert held_out_score(again) == pytest.approx(held_out_score(result.after), rel=1e-5)


def test_auto_scores_every_preset_and_starts_from_the_best(cells, poor_base, presets):
    from napari_lightfusion.weights import save_custom_preset

    save_custom_preset("untrained", poor_base)
    result = finetune([cells], steps=2, **FAST)  # base="auto", loss="auto"
    assert set(result.candidates) == {*PRESETS, "untrained"}
    scores = {name: held_out_score(v) for name, v in result.candidates.items()}
    assert result.base == max(scores, key=scores.get) != "untrained"
    assert result.before["Qabf"] == result.candidates[result.base]["Qabf"]
    assert result.base_reason.startswith("the best held-out score of 4 presets")
    recorded = objective_of(read_sidecar(preset_path(result.base)))
    assert result.objective_from == result.base and result.objective == replace(recorded, default_share=1.0)
    assert result.sidecar()["finetune"]["candidates"][result.base]["Qabf"] == pytest.approx(
        result.before["Qabf"], abs=1e-6
    )


def test_the_loss_comes_from_the_best_preset_on_the_pairs_not_from_the_base(cells, monkeypatch):
    scores = {
        "CT-MRI": {"Qabf": 0.5, "SSIM": 1.0, "VIF": 0.5, "loss": 1.0},
        "PET-MRI": {"Qabf": 0.4, "SSIM": 1.0, "VIF": 0.4, "loss": 1.0},
        "SPECT-MRI": {"Qabf": 0.6, "SSIM": 1.0, "VIF": 0.6, "loss": 1.0},
    }
    monkeypatch.setattr(finetune_choice, "score_presets", lambda held, names: dict(scores))
    result = finetune([cells], "PET-MRI", steps=2, **FAST)
    assert result.base == "PET-MRI" and result.base_reason.startswith("given; held-out scores CT-MRI 0.630")
    assert result.objective_from == "SPECT-MRI" and result.objective.balance_loss == "split"
    assert result.objective.default_share == 1.0 and "SPECT-MRI, the best preset" in result.objective_reason
    tuned = result.model if result.improved else None
    if tuned is not None:  # the PET-MRI network takes the SPECT-MRI objective's default b
        assert tuned.config.balance == model_for("SPECT-MRI").config.balance and tuned.config.output == "mix"
    explicit = finetune([cells], "PET-MRI", loss="CT-MRI", steps=2, **FAST)
    assert explicit.objective_from == "CT-MRI" and explicit.objective.balance_loss == "fade"
    given = finetune([cells], "PET-MRI", loss=Objective(balance=0.5), steps=2, **FAST)
    assert given.objective.balance == 0.5 and given.objective_reason == "given"


def test_nothing_better_than_the_base_keeps_the_base_and_says_so(cells):
    result = finetune([cells], "PET-MRI", steps=3, lr=1.0, **FAST)  # a learning rate that can only hurt
    assert not result.improved and result.kept_base and result.best_step == 0 and result.after == result.before
    assert states_equal(result.model, model_for("PET-MRI")) and result.model.config == model_for("PET-MRI").config
    assert result.verdict.startswith(KEPT_BASE) and "'PET-MRI' unchanged" in result.verdict
    assert result.best_tuned is not None and held_out_score(result.best_tuned) < held_out_score(result.before)
    assert result.sidecar()["finetune"]["improved"] is False
    assert result.report()[-1] == result.verdict and result.report()[0].startswith("base: PET-MRI (given")


def test_a_gain_below_the_margin_keeps_the_base(cells, poor_base):
    result = finetune([cells], poor_base, steps=10, min_gain=1e6, **FAST)  # no run gains a million-fold
    assert result.kept_base and result.best_tuned is not None
    assert held_out_score(result.best_tuned) > held_out_score(result.before)  # better, but not by the margin


def test_seeded_and_repeatable(cells, poor_base):
    first = finetune([cells], poor_base, steps=6, seed=3, **FAST)
    again = finetune([cells], poor_base, steps=6, seed=3, **FAST)
    other = finetune([cells], poor_base, steps=6, seed=4, **FAST)
    assert states_equal(first.model, again.model) and first.losses == again.losses
    assert first.losses != other.losses


def test_cancel_keeps_the_best_state_so_far(cells, poor_base):
    stop = threading.Event()

    def progress(update):
        if update.step == 12:
            stop.set()

    result = finetune([cells], poor_base, steps=500, progress=progress, cancel=stop, **FAST)
    assert result.cancelled and result.steps == 12 and result.improved
    scores = [held_out_score(v) for _, v in result.validations]
    assert [s for s, _ in result.validations] == [0, 5, 10, 12]
    assert held_out_score(result.after) == max(scores)


def test_time_budget_stops_and_a_budget_too_small_is_an_error(cells, poor_base):
    finetune([cells], poor_base, steps=1, **FAST)  # the first optimiser imports parts of torch (seconds, once)
    result = finetune([cells], poor_base, loss="CT-MRI", minutes=1.5 / 60, crop=32, validate_every=1000, device="cpu")
    assert result.stopped == "time" and result.steps >= 1
    with pytest.raises(ValueError, match="too small for one step") as exc:
        finetune([cells], "PET-MRI", minutes=1e-9, crop=32, device="cpu")
    assert "\n" not in str(exc.value)


def test_stacks_and_five_pairs_hold_out_whole_slices_fewer_a_band():
    mri, pet = phantom_stack(slices=10, size=48)
    train, held = split_pair(prepare_pair(mri, pet))
    assert len(train) == 8 and len(held) == 2 and held[0].shape == (2, 48, 48)
    assert all(t.shape == (2, 48, 48) for t in train)
    train, held = split_pair(prepare_pair(phantom_mri(64)[:, :40], phantom_pet(64)[:, :40]))
    assert train[0].shape == (2, 48, 40) and held[0].shape == (2, 16, 40)  # a band of the longer side
    pairs = [prepare_pair(phantom_mri(40 + i), phantom_pet(40 + i)) for i in range(6)]
    train, held = split_prepared(pairs)
    assert len(held) == 1 and held[0].shape == (2, 42, 42) and len(train) == 5  # the middle of the group of five
    result = finetune([(mri, pet)], "PET-MRI", steps=2, **FAST)
    assert result.train_images == 8 and result.validation_images == 2 and result.crop == 32


def test_held_out_parts_beyond_the_scored_ones_are_trained_on():
    mri, pet = phantom_stack(slices=20, size=40)
    result = finetune([(mri, pet)], "PET-MRI", loss="PET-MRI", steps=1, max_validation=2, **FAST)
    assert result.validation_images == 2 and result.train_images == 18


def test_colour_and_several_pairs_of_different_sizes(cells):
    pairs = [cells, (phantom_mri(64), phantom_pet(64))]
    result = finetune(pairs, "CT-MRI", steps=2, **FAST)
    assert result.train_images == 2 and result.validation_images == 2


@pytest.mark.parametrize(
    "pairs, message",
    [
        ([], "no image pairs"),
        ([(np.zeros((64, 64)), np.zeros((64, 60)))], "differ in shape"),
        ([(np.zeros((20, 64)), np.zeros((20, 64)))], "too small"),
        ([np.zeros((64, 64))], "two images"),
    ],
    ids=["none", "unregistered", "tiny", "not a pair"],
)
def test_bad_pairs_are_one_line_errors(pairs, message):
    with pytest.raises(ValueError, match=message) as exc:
        finetune(pairs, "PET-MRI", steps=1, **FAST)
    assert "\n" not in str(exc.value)


def test_bad_settings_are_one_line_errors(cells):
    for options, message in [
        (dict(steps=None, minutes=None), "steps or a time budget"),
        (dict(steps=0), "at least 1"),
        (dict(minutes=-1.0), "positive"),
        (dict(min_gain=-0.1), "min_gain"),
    ]:
        with pytest.raises(ValueError, match=message):
            FinetuneConfig(**options)
    with pytest.raises(ValueError, match="unknown preset"):
        finetune([cells], "XR-MRI", steps=1, **FAST)
    with pytest.raises(ValueError, match="unknown preset"):
        finetune([cells], "PET-MRI", loss="XR-MRI", steps=1, **FAST)
    with pytest.raises(ValueError, match="not available"):
        finetune([cells], "PET-MRI", steps=1, minutes=None, device="cuda:99")


def test_result_saves_loads_and_fuses(cells, poor_base, tmp_path):
    result = finetune([cells], poor_base, loss="CT-MRI", steps=5, **FAST)
    side = save_weights(result.model, tmp_path / "tuned.pt", result.sidecar(note="test"))
    tune = side["finetune"]
    assert tune["base"] == poor_base and tune["steps_taken"] == 5 and tune["seed"] == 0 and tune["improved"]
    assert tune["objective_from"] == "CT-MRI" and objective_of(side) == result.objective
    assert side["validation"]["before"]["Qabf"] == pytest.approx(result.before["Qabf"], abs=1e-6)
    assert side["loss_weights"] == {"intensity": 20.0, "gradient": 100.0, "ssim": 50.0}
    assert states_equal(load_model(tmp_path / "tuned.pt"), result.model)
    fused = fuse(*cells, weights=tmp_path / "tuned.pt", device="cpu").fused
    assert fused.shape == (96, 96) and 0 <= fused.min() <= fused.max() <= 1


@pytest.mark.parametrize("balance_loss", ["targets", "fade", "hotspot", "split"])
def test_a_conditioned_base_trains_with_the_objective_its_sidecar_records(cells, tmp_path, balance_loss):
    torch.manual_seed(0)
    base = LightFusionNet(ModelConfig(balance=0.3, output="mix" if balance_loss == "split" else "intensity"))
    train = {"default_share": 0.5, "balance_loss": balance_loss, "film_lr_scale": 10.0, "hot_spot_weight": 2.0}
    path = str(tmp_path / "conditioned.pt")
    save_weights(base, path, {"dataset": None, "train": train})
    result = finetune(
        [cells], path, loss=path, steps=6, validate_every=6, crop=32, minutes=None, default_share=None
    )  # the objective's share of batches at the default b, not 1
    assert result.model.config.balance == 0.3 and result.model.conditioned
    assert result.model.config.output == base.config.output and result.objective.hot_spot_weight == 2.0
    assert result.objective.balance_loss == balance_loss and result.objective.film_lr_scale == 10.0
    assert result.sidecar()["objective"]["default_share"] == 0.5
    assert result.best_step == 6  # a random network improves at once
    assert not torch.equal(result.model.film.out.weight, base.film.out.weight)


def test_on_ct_mri_pairs_the_loss_is_the_ct_mri_presets(harvard_root):
    """The measurement the loss choice rests on: on CT-MRI pairs the CT-MRI preset scores best."""
    from napari_lightfusion.pair_data import folder_pairs, read_pairs

    pairs = read_pairs(folder_pairs(harvard_root / "train" / "CT-MRI")[:40])
    held = with_hot_spots(split_prepared(pairs)[1][:4])
    choice = finetune_choice.choose("PET-MRI", "auto", held)
    assert choice.objective_from == "CT-MRI" and choice.objective.balance_loss == "fade"
    assert choice.base == "PET-MRI"


def test_fine_tuning_leaves_a_ceiling_term_out(cells):
    """A ceiling term needs per-pair targets computed before training, which a fine-tune has no time for."""
    given = Objective(balance=0.5, balance_loss="split", ceiling_weight=8.0)
    result = finetune([cells], "PET-MRI", loss=given, steps=2, **FAST)
    assert result.objective_reason == "given" and result.objective.balance == 0.5
    assert result.objective.ceiling_weight == 0.0 and not result.objective.needs_ceilings
