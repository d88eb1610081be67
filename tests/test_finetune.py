"""Fine-tuning (napari_lightfusion.finetune): it learns, keeps the best, stops, cancels, repeats."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_lightfusion import fuse
from napari_lightfusion._sample_data import microscopy_pair, phantom_mri, phantom_pet, phantom_stack
from napari_lightfusion.finetune import FinetuneConfig, finetune, split_pair, validate
from napari_lightfusion.inputs import prepare_pair
from napari_lightfusion.weights import load_model, model_for, save_weights

#: Tiny and fast: 32-pixel crops, validation every 5 steps, on the CPU.
FAST = dict(minutes=None, crop=32, validate_every=5, device="cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: tiny steps gain nothing from two, and a shared machine loses a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cells():
    """The microscopy sample, small: phase contrast (anatomical) and GFP, uint16 96 x 96."""
    return microscopy_pair(96, seed=1)


def states_equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_few_steps_lower_the_validation_loss_and_leave_the_shared_model_alone(cells):
    shared = model_for("CT-MRI")
    before = {k: v.clone() for k, v in shared.state_dict().items()}
    seen = []
    result = finetune([cells], "CT-MRI", steps=30, progress=seen.append, **FAST)  # the blend net needs ~25 here
    assert result.after["loss"] < result.before["loss"]
    assert result.steps == 30 and result.stopped == "steps" and result.best_step > 0
    assert np.mean(result.losses[15:]) < np.mean(result.losses[:15])
    assert [p.step for p in seen][:2] == [0, 1] and seen[-1].step == 30 and seen[-1].fraction == 1.0
    assert seen[0].validation == result.before
    assert all(torch.equal(before[k], v) for k, v in shared.state_dict().items())
    assert not states_equal(result.model, shared)


def test_seeded_and_repeatable(cells):
    first = finetune([cells], "PET-MRI", steps=6, seed=3, **FAST)
    again = finetune([cells], "PET-MRI", steps=6, seed=3, **FAST)
    other = finetune([cells], "PET-MRI", steps=6, seed=4, **FAST)
    assert states_equal(first.model, again.model) and first.losses == again.losses
    assert first.losses != other.losses  # other crops (the kept weights may be the base's in both)


def test_cancel_keeps_the_best_weights_so_far(cells):
    stop = threading.Event()

    def progress(update):
        if update.step == 12:
            stop.set()

    result = finetune([cells], "CT-MRI", steps=500, progress=progress, cancel=stop, **FAST)
    assert result.cancelled and result.steps == 12
    scores = [v["loss"] for _, v in result.validations]
    assert result.after["loss"] == min(scores)  # the best of steps 0, 5, 10 and 12
    held = split_pair(prepare_pair(*cells))[1]
    again = validate(result.model, held, result.loss_weights, "cpu")
    assert again["loss"] == pytest.approx(result.after["loss"], rel=1e-5)


def test_nothing_better_than_the_base_keeps_the_base(cells):
    result = finetune([cells], "PET-MRI", steps=3, lr=1.0, **FAST)  # a learning rate that can only hurt
    assert result.best_step == 0 and result.after == result.before
    assert states_equal(result.model, model_for("PET-MRI"))


def test_time_budget_stops_and_a_budget_too_small_is_an_error(cells):
    finetune([cells], "PET-MRI", steps=1, **FAST)  # the first optimiser imports parts of torch (seconds, once)
    result = finetune([cells], "PET-MRI", minutes=1.5 / 60, crop=32, validate_every=1000, device="cpu")
    assert result.stopped == "time" and result.steps >= 1
    with pytest.raises(ValueError, match="too small for one step") as exc:
        finetune([cells], "PET-MRI", minutes=1e-9, crop=32, device="cpu")
    assert "\n" not in str(exc.value)


def test_stacks_hold_out_slices_and_2d_pairs_a_band():
    mri, pet = phantom_stack(slices=10, size=48)
    train, held = split_pair(prepare_pair(mri, pet))
    assert len(train) == 8 and len(held) == 2 and held[0].shape == (2, 48, 48)
    assert all(t.shape == (2, 48, 48) for t in train)
    train, held = split_pair(prepare_pair(phantom_mri(64)[:, :40], phantom_pet(64)[:, :40]))
    assert train[0].shape == (2, 48, 40) and held[0].shape == (2, 16, 40)  # a band of the longer side
    result = finetune([(mri, pet)], "PET-MRI", steps=2, **FAST)
    assert result.train_images == 8 and result.validation_images == 2 and result.crop == 32


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
    ]:
        with pytest.raises(ValueError, match=message):
            FinetuneConfig(**options)
    with pytest.raises(ValueError, match="unknown preset"):
        finetune([cells], "XR-MRI", steps=1, **FAST)
    with pytest.raises(ValueError, match="not available"):
        finetune([cells], "PET-MRI", steps=1, minutes=None, device="cuda:99")


def test_result_saves_loads_and_fuses(cells, tmp_path):
    result = finetune([cells], "PET-MRI", steps=5, **FAST)
    side = save_weights(result.model, tmp_path / "tuned.pt", result.sidecar(note="test"))
    tune = side["finetune"]
    assert tune["base"] == "PET-MRI" and tune["steps_taken"] == 5 and tune["seed"] == 0
    assert side["validation"]["before"]["Qabf"] == pytest.approx(result.before["Qabf"], abs=1e-6)
    assert side["loss_weights"] == {"intensity": 20.0, "gradient": 100.0, "ssim": 50.0}
    assert states_equal(load_model(tmp_path / "tuned.pt"), result.model)
    fused = fuse(*cells, weights=tmp_path / "tuned.pt", device="cpu").fused
    assert fused.shape == (96, 96) and 0 <= fused.min() <= fused.max() <= 1


@pytest.mark.parametrize("balance_loss", ["targets", "fade", "hotspot", "split"])
def test_a_balance_conditioned_base_is_fine_tuned_as_it_was_trained(cells, tmp_path, balance_loss):
    import inspect

    from napari_lightfusion.losses import fusion_loss
    from napari_lightfusion.model import LightFusionNet, ModelConfig

    if "mode" not in inspect.signature(fusion_loss).parameters:
        pytest.skip("the losses take no balance mode yet")
    torch.manual_seed(0)
    base = LightFusionNet(ModelConfig(balance=0.3, output="mix" if balance_loss == "split" else "intensity"))
    train = {"default_share": 0.5, "balance_loss": balance_loss, "film_lr_scale": 10.0, "hot_spot_weight": 2.0}
    save_weights(base, tmp_path / "conditioned.pt", {"dataset": None, "train": train})
    result = finetune([cells], str(tmp_path / "conditioned.pt"), steps=6, validate_every=6, crop=32, minutes=None)
    assert result.model.config.balance == 0.3 and result.model.conditioned
    assert result.model.config.output == base.config.output and result.conditioning.hot_spot_weight == 2.0
    assert result.conditioning.balance_loss == balance_loss and result.conditioning.film_lr_scale == 10.0
    assert result.sidecar()["finetune"]["conditioning"]["default_share"] == 0.5
    assert result.best_step == 6  # a random network improves at once
    assert not torch.equal(result.model.film.out.weight, base.film.out.weight)
