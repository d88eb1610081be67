"""Training: the loss falls, runs are repeatable, and the outputs are complete."""

import csv
import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from napari_lightfusion.losses import fusion_loss
from napari_lightfusion.model import LightFusionNet
from napari_lightfusion.research.data import is_validation, load_pairs, pair_names, read_image
from napari_lightfusion.research.train import TrainConfig, random_batch, train
from napari_lightfusion.weights import load_model, sha256


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


def test_a_few_steps_lower_the_loss(data_root):
    torch.manual_seed(0)
    from napari_lightfusion.research.train import pairs_to_tensor

    images = pairs_to_tensor(load_pairs(data_root, "train", "PET-MRI"))
    model = LightFusionNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    a, b = images[:, :1], images[:, 1:]
    first, _ = fusion_loss(model(a, b), a, b)
    for _ in range(40):
        loss, _ = fusion_loss(model(a, b), a, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first.item()


def test_train_writes_weights_sidecar_and_log_and_is_repeatable(data_root, tmp_path):
    config = TrainConfig(epochs=2, crop=32, seed=3)
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
    assert all(float(r["loss"]) > 0 for r in rows)
    load_model(weights)  # the sidecar and the file agree


def test_validation_split_is_by_name_and_disjoint():
    names = [f"{i:05d}.png" for i in range(2000)]
    val = [n for n in names if is_validation(n)]
    assert 150 < len(val) < 250  # about 10 %
    assert val == [n for n in names if is_validation(n)]  # deterministic


def test_random_batch_shapes_and_flips_are_seeded():
    images = torch.rand(5, 2, 40, 40)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a1, b1 = random_batch(images, 4, 16, g1)
    a2, b2 = random_batch(images, 4, 16, g2)
    assert a1.shape == b1.shape == (4, 1, 16, 16)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)


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


def test_balance_is_drawn_per_batch_around_its_default():
    from napari_lightfusion.model import ModelConfig
    from napari_lightfusion.research.train import draw_balance

    g = torch.Generator().manual_seed(0)
    assert draw_balance(TrainConfig(), g) is None  # the paper's network
    config = TrainConfig(model=ModelConfig(balance=0.3), default_share=0.25)
    draws = [draw_balance(config, g) for _ in range(2000)]
    assert all(0.0 <= d <= 1.0 for d in draws)
    at_default = sum(d == 0.3 for d in draws) / len(draws)
    assert 0.2 < at_default < 0.3
    assert 0.4 < np.mean([d for d in draws if d != 0.3]) < 0.6  # the rest uniform


def test_training_a_conditioned_network_writes_its_default_balance(data_root, tmp_path):
    from napari_lightfusion.model import ModelConfig

    config = TrainConfig(epochs=1, crop=32, model=ModelConfig(balance=0.25))
    side = train(data_root, "PET-MRI", tmp_path, config, progress=False)
    assert side["model"]["balance"] == 0.25 and side["device"] == "cpu"
    model = load_model(tmp_path / "PET-MRI.pt")
    assert model.conditioned and model.config.balance == 0.25
    scale, _ = model.condition(1.0)
    assert not torch.equal(scale, torch.ones_like(scale))  # the conditioning was trained


def test_hot_spot_plane_travels_with_the_crops(data_root):
    from napari_lightfusion.metrics import hot_spot
    from napari_lightfusion.research.train import pairs_to_tensor

    pairs = load_pairs(data_root, "train", "PET-MRI")
    images = pairs_to_tensor(pairs, hot_spots=True)
    assert images.shape[1] == 3
    p = pairs[0]
    from napari_lightfusion.colour import grey

    expected = hot_spot(grey(p.other) * 255, p.anatomical * 255)
    assert torch.equal(images[0, 2], torch.from_numpy(expected.astype(np.float32)))
    a, b, hot = random_batch(images, 3, 16, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == hot.shape == (3, 1, 16, 16)
    assert set(hot.unique().tolist()) <= {0.0, 1.0}
