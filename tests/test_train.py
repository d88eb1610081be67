"""Training: the shared core (crops, objective, schedule, best state), and ``research.train`` over it."""

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_lightfusion.losses import LossWeights
from napari_lightfusion.model import LightFusionNet, ModelConfig
from napari_lightfusion.objective import Objective, objective_of, with_hot_spots
from napari_lightfusion.pair_data import is_validation, load_pairs, pair_names, planes, read_image
from napari_lightfusion.research.train import TrainConfig, start_from, train
from napari_lightfusion.training import Crops, Schedule, held_out_score, lower_loss, train_steps, validate
from napari_lightfusion.weights import PRESETS, load_model, preset_path, read_sidecar, sha256


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def phantom_pairs(n, size=64, seed=0):
    """Grey 'MRI' discs and colour 'PET' blobs at random places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        cy, cx = rng.integers(16, size - 16, 2)
        mri = ((yy - cy) ** 2 + (xx - cx) ** 2 < 150).astype(float) * 0.7
        by, bx = rng.integers(8, size - 8, 2)
        blob = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / 40.0)
        pet = np.stack([blob, blob * 0.5, 0.2 * blob], axis=-1)
        yield (mri * 255).astype(np.uint8), (pet * 255).astype(np.uint8)


@pytest.fixture
def data_root(tmp_path):
    for i, (mri, pet) in enumerate(phantom_pairs(12)):
        for modality, image in (("MRI", mri), ("PET", pet)):
            folder = tmp_path / "train" / "PET-MRI" / modality
            folder.mkdir(parents=True, exist_ok=True)
            imsave(folder / f"{i:03d}.png", image, check_contrast=False)
    return tmp_path


@pytest.fixture
def arrays(data_root):
    return planes(load_pairs(data_root, "train", "PET-MRI"))


def test_the_loop_lowers_the_loss_and_keeps_the_best_or_the_last_state(arrays):
    torch.manual_seed(0)
    model = LightFusionNet()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    schedule = Schedule(steps=40, crop=32, lr=1e-2, validate_every=10)
    steps = list(
        train_steps(model, Objective(), arrays[:9], arrays[9:], schedule, keep="last", rank=lower_loss, measures=())
    )
    losses = [p.validation["loss"] for p in steps if p.validation is not None]
    assert [p.step for p in steps if p.validation is not None] == [0, 10, 20, 30, 40]
    assert losses[-1] < 0.95 * losses[0]
    assert validate(model, arrays[9:], Objective(), measures=())["loss"] == pytest.approx(losses[-1], rel=1e-5)

    model.load_state_dict(start)  # again, with a rank that prefers the worst loss: the start is kept
    list(
        train_steps(
            model, Objective(), arrays[:9], arrays[9:], schedule, keep="best", rank=lambda v: v["loss"], measures=()
        )
    )
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_the_network_trains_channels_last_on_the_cpu_and_comes_back_in_the_usual_layout(arrays):
    model = LightFusionNet()
    weight = model.encoder_a[1][0].weight  # a dilated depthwise 3x3 kernel (16, 1, 3, 3): where the layout pays
    assert weight.stride() == (9, 9, 3, 1)
    strides = [weight.stride() for _ in train_steps(model, Objective(), arrays[:4], (), Schedule(steps=2, crop=32))]
    assert strides and set(strides) == {(9, 1, 3, 1)}  # channels last: the channel stride is 1
    assert model.encoder_a[1][0].weight.stride() == (9, 9, 3, 1)


def test_the_schedule_decays_the_learning_rate_every_lr_step_steps(arrays):
    model = LightFusionNet(ModelConfig(balance=0.2))
    schedule = Schedule(steps=7, crop=16, lr=1e-3, lr_step=3, lr_gamma=0.5, validate_every=None)
    seen = [
        p.lr
        for p in train_steps(
            model, Objective(balance=0.2), arrays[:4], arrays[4:5], schedule, rank=lower_loss, measures=()
        )
        if p.terms
    ]
    assert seen == pytest.approx([1e-3] * 3 + [5e-4] * 3 + [2.5e-4])


def test_annealing_lowers_the_learning_rate_along_a_half_cosine_to_the_end_of_the_run(arrays):
    model = LightFusionNet(ModelConfig(balance=0.2))
    schedule = Schedule(steps=5, crop=16, lr=1e-3, anneal=True, validate_every=None)
    run = train_steps(model, Objective(balance=0.2), arrays[:4], arrays[4:5], schedule, rank=lower_loss, measures=())
    seen = [p.lr for p in run if p.terms]
    expected = [0.5e-3 * (1 + math.cos(math.pi * k / 5)) for k in range(5)]
    assert seen == pytest.approx(expected)
    assert schedule.lr_factor(5, 0.0) == pytest.approx(0.0)
    timed = Schedule(steps=None, seconds=100.0, anneal=True)
    assert timed.lr_factor(0, 50.0) == pytest.approx(0.5)  # half the time budget: half the peak
    assert timed.lr_factor(0, 150.0) == pytest.approx(0.0)
    assert Schedule(steps=10).lr_factor(9, 0.0) == 1.0  # constant without annealing
    with pytest.raises(ValueError, match="not both"):
        Schedule(steps=10, lr_step=3, anneal=True)


def test_crops_are_seeded_flipped_and_carry_the_hot_spot(arrays):
    images = with_hot_spots(arrays)
    first = Crops(images, 16, seed=1).batch(4)
    again = Crops(images, 16, seed=1).batch(4)
    other = Crops(images, 16, seed=2).batch(4)
    assert first[0].shape == first[1].shape == first[2].shape == (4, 1, 16, 16) and first[3] is None
    assert all(torch.equal(x, y) for x, y in zip(first[:3], again[:3])) and not torch.equal(first[0], other[0])
    assert set(first[2].unique().tolist()) <= {0.0, 1.0}
    assert Crops([np.zeros((2, 20, 40), np.float32)], 64, seed=0).crop == 20  # no bigger than the smallest part
    a, b, hot, ceiling = Crops(arrays, 16, seed=0).batch(2)
    assert hot is None and ceiling is None


def test_hot_spot_plane_is_the_metrics_hot_spot(data_root):
    from napari_lightfusion.colour import grey
    from napari_lightfusion.metrics import hot_spot

    pair = load_pairs(data_root, "train", "PET-MRI")[0]
    (image,) = with_hot_spots(planes([pair]))
    expected = hot_spot(grey(pair.other) * 255, pair.anatomical * 255)
    assert image.shape == (3, 64, 64) and np.array_equal(image[2], expected.astype(np.float32))


def test_balance_is_drawn_per_batch_around_its_default():
    rng = np.random.default_rng(0)
    assert Objective().draw(rng) is None  # the paper's network
    draws = [Objective(balance=0.3, default_share=0.25).draw(rng) for _ in range(2000)]
    assert all(0.0 <= d <= 1.0 for d in draws)
    assert 0.2 < sum(d == 0.3 for d in draws) / len(draws) < 0.3
    assert 0.4 < np.mean([d for d in draws if d != 0.3]) < 0.6  # the rest uniform
    unconditioned = Objective(balance=0.3).for_model(LightFusionNet())
    assert {unconditioned.draw(rng) for _ in range(20)} == {0.3}  # it cannot take b: trained at the default only


def test_each_bundled_presets_objective_comes_from_its_sidecar():
    found = {name: objective_of(read_sidecar(preset_path(name))) for name in PRESETS}
    assert found["CT-MRI"] == Objective(LossWeights(), 0.0, "fade", 0.25, 1.0, 10.0)
    middle = {"middle_weight": 32.0, "middle_margin": 0.03, "middle_band": 0.05}
    assert found["PET-MRI"] == Objective(LossWeights(), 0.24, "split", 0.25, 2.0, 10.0, **middle)
    assert found["SPECT-MRI"] == Objective(LossWeights(), 0.25, "split", 0.25, 8.0, 10.0)
    assert found["PET-MRI"].needs_hot_spots and not found["CT-MRI"].needs_hot_spots
    assert Objective.from_dict(found["PET-MRI"].to_dict()) == found["PET-MRI"]
    assert objective_of({"objective": found["SPECT-MRI"].to_dict()}) == found["SPECT-MRI"]
    assert objective_of({}) == Objective()  # nothing recorded: the paper's loss, Eq. 5
    assert found["PET-MRI"].describe() == (
        "split balance loss (hot-spot weight 2), middle term 32 (margin 0.03 at b 0.5 +- 0.05, 25% of batches "
        "there), default b 0.24 (25% of the other batches there, the rest b uniform), Eq. 5 weights"
    )
    assert "(every batch there)" in Objective(balance=0.0, default_share=1.0).describe()
    assert Objective(LossWeights(100, 50, 20)).describe() == "the paper's loss, weights 100/50/20"
    with pytest.raises(ValueError, match="balance loss"):
        Objective(balance_loss="sideways")


def test_held_out_score_is_the_geometric_mean_of_qabf_ssim_vif():
    assert held_out_score({"Qabf": 0.5, "SSIM": 1.0, "VIF": 2.0, "loss": 9.0}) == pytest.approx(1.0)
    assert held_out_score({"Qabf": 0.8, "SSIM": 0.8, "VIF": 0.8}) == pytest.approx(0.8)
    assert held_out_score({"Qabf": float("nan"), "SSIM": 0.5, "VIF": 2.0}) == pytest.approx(1.0)  # the others
    assert math.isnan(held_out_score({"Qabf": float("nan"), "SSIM": float("nan"), "VIF": float("nan")}))
    assert held_out_score({"Qabf": 0.7, "SSIM": 1.0, "VIF": 0.0}) == 0.0  # lost everything: the lowest score


def test_validate_scores_the_held_out_arrays(arrays):
    model = LightFusionNet()
    values = validate(model, arrays[:2], Objective(), measures=("Qabf", "SSIM", "VIF", "MI"))
    assert set(values) == {"loss", "Qabf", "SSIM", "VIF", "MI"} and all(np.isfinite(list(values.values())))


def test_train_writes_weights_sidecar_and_log_and_is_repeatable(data_root, tmp_path):
    config = TrainConfig(epochs=2, crop=32, seed=3, val_every=1)
    side = train(data_root, "PET-MRI", tmp_path / "one", config, progress=False)
    again = train(data_root, "PET-MRI", tmp_path / "two", config, progress=False)
    weights = tmp_path / "one" / "PET-MRI.pt"
    assert side["sha256"] == sha256(weights) == again["sha256"]
    stored = json.loads(weights.with_suffix(".json").read_text())
    for key in ("model", "dataset", "loss_weights", "train", "source_commit", "train_seconds"):
        assert key in stored
    assert stored["train"]["epochs"] == 2 and stored["train"]["seed"] == 3
    with open(tmp_path / "one" / "PET-MRI.log.csv", newline="") as log:
        rows = list(csv.DictReader(log))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["loss"]) > 0 for r in rows) and all(r["val_loss"] for r in rows)
    assert float(rows[-1]["val_loss"]) == pytest.approx(stored["final_validation_loss"], abs=1e-6)
    load_model(weights)  # the sidecar and the file agree


def test_the_last_epoch_is_validated_when_it_is_off_the_interval(data_root, tmp_path):
    side = train(data_root, "PET-MRI", tmp_path, TrainConfig(epochs=3, crop=32, val_every=2), progress=False)
    with open(tmp_path / "PET-MRI.log.csv", newline="") as log:
        rows = list(csv.DictReader(log))
    assert [bool(r["val_loss"]) for r in rows] == [False, True, True]
    assert float(rows[-1]["val_loss"]) == pytest.approx(side["final_validation_loss"], abs=1e-6)


def test_validation_split_is_by_name_and_disjoint():
    names = [f"{i:05d}.png" for i in range(2000)]
    val = [n for n in names if is_validation(n)]
    assert 150 < len(val) < 250  # about 10 %
    assert val == [n for n in names if is_validation(n)]  # deterministic


def test_reader_normalises_grey_stored_as_rgb(tmp_path):
    grey = (np.arange(64).reshape(8, 8) * 3).astype(np.uint8)
    imsave(tmp_path / "g.png", np.stack([grey] * 3, -1), check_contrast=False)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (8, 8) and np.allclose(image, grey / 255.0)


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="harvard data root"):
        pair_names(tmp_path, "train", "PET-MRI")
    with pytest.raises(ValueError, match="unknown dataset"):
        pair_names(tmp_path, "train", "XR-MRI")


@pytest.mark.parametrize("balance_loss", ["targets", "split"])
def test_training_a_conditioned_network_writes_its_default_balance(data_root, tmp_path, balance_loss):
    config = TrainConfig(epochs=1, crop=32, model=ModelConfig(balance=0.25), balance_loss=balance_loss)
    side = train(data_root, "PET-MRI", tmp_path, config, progress=False)
    assert side["model"]["balance"] == 0.25 and side["device"] == "cpu"
    model = load_model(tmp_path / "PET-MRI.pt")
    assert model.conditioned and model.config.balance == 0.25
    scale, _ = model.condition(1.0)
    assert not torch.equal(scale, torch.ones_like(scale))  # the conditioning was trained
    assert objective_of(side) == config.objective()  # what fine-tuning will read back


def test_training_from_a_preset_with_another_mixing_head_keeps_its_features():
    base = load_model(preset_path("SPECT-MRI"))  # a mix head
    assert base.config.output == "mix"
    config = TrainConfig(
        epochs=1, init=str(preset_path("SPECT-MRI")), model=replace(base.config, output="blend", balance=0.0)
    )
    start = LightFusionNet(config.model)
    start_from(start, config.init)
    features = {k: v for k, v in base.state_dict().items() if not k.startswith("decoder.2.")}
    assert all(torch.equal(start.state_dict()[k], v) for k, v in features.items())
    assert not start.decoder[2].weight.any() and not start.decoder[2].bias.any()  # the even mixture
    with pytest.raises(ValueError, match="does not fit"):
        start_from(LightFusionNet(replace(config.model, width=8)), config.init)


def test_annealed_training_is_recorded_and_needs_no_step_schedule(data_root, tmp_path):
    config = TrainConfig(epochs=2, crop=32, lr=5e-3, anneal=True, val_every=1)
    side = train(data_root, "PET-MRI", tmp_path, config, progress=False)
    assert side["train"]["anneal"] is True
    with open(tmp_path / "PET-MRI.log.csv", newline="") as log:
        rates = [float(r["lr"]) for r in csv.DictReader(log)]
    assert rates[0] < 5e-3 and rates[-1] < rates[0]  # falling along the cosine, not halved at epoch 50


def test_middle_term_acts_near_half_and_takes_a_quarter_of_the_draws():
    rng = np.random.default_rng(1)
    middle = Objective(balance=0.35, balance_loss="split", hot_spot_weight=2.0, middle_weight=16.0)
    assert middle.has_middle and middle.needs_hot_spots and not Objective(balance=0.35).has_middle
    draws = np.array([middle.draw(rng) for _ in range(4000)])
    in_band = np.abs(draws - 0.5) <= 0.05
    assert 0.28 < in_band.mean() < 0.34  # a quarter drawn there, plus the uniform draws that land there (0.306)
    assert 0.15 < (draws == 0.35).mean() < 0.22  # the default share of the rest
    # every batch at the default b (a fine-tune): no middle draws
    assert {replace(middle, default_share=1.0).draw(rng) for _ in range(50)} == {0.35}
    torch.manual_seed(0)
    f, a, b = torch.rand(3, 2, 1, 32, 32)
    hot = (b > 0.6).float()
    inside, terms = middle.loss(f, a, b, 0.51, hot)
    outside, plain = middle.loss(f, a, b, 0.44, hot)
    assert "middle" in terms and "middle" not in plain
    without = replace(middle, middle_weight=0.0).loss(f, a, b, 0.51, hot)[0]
    assert inside.item() == pytest.approx(without.item() + 50.0 * 16.0 * terms["middle"].item(), rel=1e-5)
    assert "middle term 16 (margin 0.03 at b 0.5 +- 0.05, 25% of batches there)" in middle.describe()
    sidecar = {
        "model": {"balance": 0.35},
        "train": {"balance_loss": "split", "hot_spot_weight": 2.0, "middle_weight": 16.0},
    }
    assert objective_of(sidecar) == middle
    with pytest.raises(ValueError, match="middle"):
        Objective(balance=0.35, middle_weight=-1.0)


def test_ceiling_term_acts_in_the_middle_band_on_batches_that_carry_the_ceilings():
    ceiling = Objective(balance=0.3, balance_loss="split", ceiling_weight=8.0)
    assert ceiling.needs_ceilings and ceiling.needs_hot_spots and not ceiling.has_middle
    assert not Objective(balance=None, ceiling_weight=8.0).needs_ceilings  # the paper's network takes no b
    rng = np.random.default_rng(2)
    draws = np.array([ceiling.draw(rng) for _ in range(2000)])
    assert 0.25 < (np.abs(draws - 0.5) <= 0.05).mean() < 0.36  # the band is drawn as for the middle term
    torch.manual_seed(0)
    f, a, b, c = torch.rand(4, 2, 1, 32, 32)
    hot = (b > 0.6).float()
    inside, terms = ceiling.loss(f, a, b, 0.52, hot, c)
    assert terms["ceiling"].item() == pytest.approx(((f - c).abs() * hot).sum().item() / hot.sum().item(), rel=1e-5)
    plain = ceiling.loss(f, a, b, 0.52, hot)[0]  # no ceilings (validation, fine-tuning): no term
    assert inside.item() == pytest.approx(plain.item() + 50.0 * 8.0 * terms["ceiling"].item(), rel=1e-5)
    assert "ceiling" not in ceiling.loss(f, a, b, 0.3, hot, c)[1]  # outside the band
    assert "ceiling term 8 at b 0.5 +- 0.05" in ceiling.describe()
    recorded = {"model": {"balance": 0.3}, "train": {"balance_loss": "split", "ceiling_weight": 8.0}}
    assert objective_of(recorded) == ceiling
    with pytest.raises(ValueError, match="ceiling"):
        Objective(balance=0.3, ceiling_weight=-1.0)


def test_crops_carry_the_ceiling_plane_with_the_same_crop_and_flips(arrays):
    images = [np.concatenate([part, part[:1]]) for part in with_hot_spots(arrays)]  # the ceiling plane := the MRI
    a, b, hot, ceiling = Crops(images, 16, seed=4).batch(6)
    assert torch.equal(ceiling, a) and hot is not None


def test_mri_gamma_copies_are_seeded_by_name_and_within_the_range():
    from napari_lightfusion.research.train import mri_gamma_copies

    part = np.stack([np.full((4, 4), 0.5), np.full((4, 4), 0.2)]).astype(np.float32)
    first = mri_gamma_copies([part, part], ["a.png", "b.png"], 3.0)
    again = mri_gamma_copies([part], ["a.png"], 3.0)
    assert np.array_equal(first[0], again[0]) and not np.array_equal(first[0], first[1])
    powers = [np.log(c[0, 0, 0]) / np.log(0.5) for c in first]
    assert all(1 / 3 <= p <= 3 for p in powers)
    assert all(np.array_equal(c[1], part[1]) for c in first)  # the functional plane is left alone
    assert np.array_equal(mri_gamma_copies([part], ["a.png"], 1.0)[0], part)
    with pytest.raises(ValueError, match="at least 1"):
        mri_gamma_copies([part], ["a.png"], 0.5)


def test_training_with_the_ceiling_term_and_gamma_copies_records_both(data_root, tmp_path, capsys):
    config = TrainConfig(
        epochs=1,
        crop=32,
        model=ModelConfig(balance=0.3, output="mix"),
        balance_loss="split",
        ceiling_weight=4.0,
        ceiling_steps=3,
        mri_gamma=2.0,
    )
    side = train(data_root, "PET-MRI", tmp_path, config, progress=True)
    assert side["train"]["ceiling_weight"] == 4.0 and side["train"]["mri_gamma"] == 2.0
    assert objective_of(side) == config.objective() and objective_of(side).needs_ceilings
    n = side["train_pairs"]
    err = capsys.readouterr().err  # the bar over the pairs and their copies
    assert "hot-spot ceilings, 3 steps each: 100%" in err and f"{2 * n}/{2 * n}" in err


def test_frozen_features_leave_all_but_the_balance_layer_and_the_head_as_they_were(arrays):
    from napari_lightfusion.research.train import freeze_features

    model = LightFusionNet(ModelConfig(balance=0.2, output="mix"))
    assert freeze_features(model) == 304 + model.decoder[-1].weight.numel() + model.decoder[-1].bias.numel()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    schedule = Schedule(steps=3, crop=16, lr=1e-2, validate_every=None)
    run = train_steps(
        model, Objective(balance=0.2), arrays[:4], (), schedule, keep="last", rank=lower_loss, measures=()
    )
    list(run)
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and all(name.startswith(("film.", "decoder.2.")) for name in moved)
    assert any(name.startswith("film.") for name in moved) and any(name.startswith("decoder.2.") for name in moved)


def test_a_bad_recipe_fails_before_the_ceilings_are_computed(data_root, tmp_path, monkeypatch):
    import napari_lightfusion.research.train as research_train

    monkeypatch.setattr(research_train, "with_ceilings", lambda *a, **k: pytest.fail("ceilings computed first"))
    config = TrainConfig(
        epochs=1, crop=32, model=ModelConfig(balance=0.3, output="mix"), ceiling_weight=4.0, freeze_features=True
    )
    with pytest.raises(ValueError, match="freezing the features needs"):
        research_train.train(data_root, "PET-MRI", tmp_path, config, progress=False)
