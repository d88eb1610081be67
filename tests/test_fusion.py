"""The Qt-free inference API: inputs it takes, what it returns, what it refuses."""

import numpy as np
import pytest
from yuv import rgb_to_yuv

from napari_lightfusion import fuse
from napari_lightfusion.inputs import prepare_pair, to_unit


@pytest.fixture
def grey():
    return np.random.default_rng(0).random((40, 52)).astype(np.float32)


@pytest.fixture
def colour():
    return (np.random.default_rng(1).random((40, 52, 3)) * 255).astype(np.uint8)


def test_grey_pair_gives_grey_result_with_maps(grey):
    result = fuse(grey, grey[::-1], preset="CT-MRI", device="cpu", maps=True)
    assert result.fused.shape == grey.shape and result.fused.dtype == np.float32
    assert 0.0 <= result.fused.min() <= result.fused.max() <= 1.0
    assert result.surprise.shape == result.attention.shape == (2, *grey.shape)
    assert result.seconds > 0 and result.device == "cpu" and result.preset == "CT-MRI"


def test_colour_functional_keeps_its_chrominance(grey, colour):
    result = fuse(grey, colour, preset="PET-MRI", maps=True)
    assert result.fused.shape == colour.shape
    yuv_in = rgb_to_yuv(colour / 255.0)
    yuv_out = rgb_to_yuv(result.fused.astype(np.float64))
    unclipped = (result.fused > 0.001).all(-1) & (result.fused < 0.999).all(-1)
    assert np.allclose(yuv_out[unclipped][:, 1:], yuv_in[unclipped][:, 1:], atol=1e-5)


def test_argument_order_does_not_change_the_image_but_orders_the_maps(grey, colour):
    ab = fuse(grey, colour, maps=True)
    ba = fuse(colour, grey, maps=True)
    assert np.array_equal(ab.fused, ba.fused)
    assert np.array_equal(ab.attention[0], ba.attention[1])


def test_stacks_fuse_slice_by_slice(grey):
    stack = np.stack([grey, grey[::-1], grey.T[:40, :52] if False else grey * 0.5])
    result = fuse(stack, stack[:, ::-1], preset="CT-MRI", maps=True)
    assert result.fused.shape == stack.shape
    assert result.attention.shape == (2, *stack.shape)
    single = fuse(stack[1], stack[1, ::-1], preset="CT-MRI", maps=True)
    assert np.allclose(result.fused[1], single.fused, atol=1e-6)


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255), (np.uint16, 4000), (np.int16, 1000), (np.float64, 7.5)])
def test_integer_and_float_types_are_accepted(grey, dtype, scale):
    data = (grey * scale).astype(dtype)
    result = fuse(data, data, preset="CT-MRI")
    assert np.isfinite(result.fused).all()


def test_rgba_alpha_is_dropped(grey, colour):
    rgba = np.concatenate([colour, np.full((*colour.shape[:2], 1), 7, np.uint8)], axis=-1)
    assert np.array_equal(fuse(grey, rgba).fused, fuse(grey, colour).fused)


def test_normalisation_rules():
    assert np.allclose(to_unit(np.array([[0, 255]], np.uint8)), [[0, 1]])
    assert np.allclose(to_unit(np.array([[100, 300]], np.uint16)), [[0, 1]])
    assert np.allclose(to_unit(np.array([[-1000, 1000]], np.int16)), [[0, 1]])
    assert np.allclose(to_unit(np.array([[0.2, 0.4]])), [[0.2, 0.4]])  # already in [0, 1]
    assert np.allclose(to_unit(np.array([[0.0, 50.0, 100.0]]), limits=(0, 50)), [[0, 1, 1]])
    assert np.allclose(to_unit(np.array([[np.nan, 1.0, 3.0]])), [[0, 0, 1]])


def test_inputs_are_not_modified(grey, colour):
    a, b = grey.copy(), colour.copy()
    fuse(a, b)
    prepare_pair(a, b, a_limits=(0, 2))
    assert np.array_equal(a, grey) and np.array_equal(b, colour)


@pytest.mark.parametrize(
    "a,b,message",
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), "differ in shape"),
        (np.zeros((5, 5)), np.zeros((2, 5, 5)), "dimensionality"),
        (np.zeros(4), np.zeros(4), "at least 2 dimensions"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "empty"),
        (np.full((4, 4), np.nan), np.zeros((4, 4)), "no finite values"),
        (np.zeros((2, 2, 2, 2, 2)), np.zeros((2, 2, 2, 2, 2)), "shape"),
        (np.array([["a", "b"], ["c", "d"]]), np.zeros((2, 2)), "data type"),
    ],
)
def test_bad_input_gives_a_clear_value_error(a, b, message):
    with pytest.raises(ValueError, match=message):
        fuse(a, b)


def test_unknown_preset_and_missing_device_are_refused(grey):
    with pytest.raises(ValueError, match="unknown preset"):
        fuse(grey, grey, preset="MRI-MRI")
    with pytest.raises(ValueError, match="not available|unknown device"):
        fuse(grey, grey, device="cuda:7")
    with pytest.raises(ValueError, match="channel"):
        fuse(grey, grey, channel=99)


def test_single_channel_maps_differ_from_the_mean(grey):
    mean = fuse(grey, grey[::-1], preset="CT-MRI", maps=True)
    one = fuse(grey, grey[::-1], preset="CT-MRI", channel=3, maps=True)
    assert np.array_equal(mean.fused, one.fused)
    assert not np.allclose(mean.attention, one.attention)


def test_values_near_the_float64_limit_normalise_without_overflow():
    from napari_lightfusion.inputs import to_unit

    unit = to_unit(np.array([[1.2e307, -1.3e307, 6.4e307]]))
    assert np.isfinite(unit).all() and unit.min() == 0.0 and unit.max() == 1.0


def test_without_maps_only_the_image_comes_back(grey, colour):
    stack = np.stack([grey, grey[::-1]])
    for a, b in ((grey, colour), (stack, stack[:, ::-1])):
        with_maps = fuse(a, b, preset="CT-MRI", maps=True)
        without = fuse(a, b, preset="CT-MRI")  # the default: no maps
        assert without.surprise is None and without.attention is None
        assert without.fused.shape == with_maps.fused.shape
        assert np.abs(without.fused - with_maps.fused).max() <= 1e-5


def test_balance_is_checked_and_kept_by_the_plan(grey):
    from napari_lightfusion import plan_fusion

    assert plan_fusion(grey, grey, "CT-MRI", balance=0.25).balance == 0.25
    assert plan_fusion(grey, grey, "CT-MRI").balance is None
    for bad in (-0.5, 2, float("nan"), "x"):
        with pytest.raises(ValueError, match="^balance must be"):
            fuse(grey, grey, balance=bad)


def test_the_paper_networks_ignore_a_valid_balance(grey, tmp_path):
    import torch

    from napari_lightfusion.model import LightFusionNet
    from napari_lightfusion.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path / "paper.pt"
    save_weights(LightFusionNet().eval(), path, {"dataset": "test"})  # balance None: the paper's network
    low = fuse(grey, grey[::-1], weights=path, balance=0.0).fused
    assert np.array_equal(low, fuse(grey, grey[::-1], weights=path, balance=1.0).fused)


@pytest.fixture
def mix_weights(tmp_path):
    """A weight file of a balance-conditioned LightFusionNet with the mix head (its weights scaled so w varies)."""
    import torch

    from napari_lightfusion.model import LightFusionNet
    from napari_lightfusion.weights import save_weights

    torch.manual_seed(2)
    net = LightFusionNet(output="mix", balance=0.3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    path = tmp_path / "mix.pt"
    save_weights(net, path, {})
    return path


def test_mix_network_gives_the_first_inputs_weight_in_either_input_order(grey, colour, mix_weights):
    """The weight is the first given input's share, like the maps' order: swapping the inputs gives 1 - w."""
    ab = fuse(grey, colour, weights=mix_weights, device="cpu", maps=True)
    ba = fuse(colour, grey, weights=mix_weights, device="cpu", maps=True)
    assert ab.weight.shape == grey.shape and ab.weight.dtype == np.float32
    assert 0.0 <= ab.weight.min() <= ab.weight.max() <= 1.0 and ab.weight.std() > 0.01
    np.testing.assert_allclose(ab.weight, 1.0 - ba.weight, atol=1e-6)
    assert np.array_equal(ab.attention[0], ba.attention[1])
    assert fuse(grey, colour, weights=mix_weights, maps=False).weight is None
    assert fuse(grey, colour, preset="SPECT-MRI").weight is None  # the paper's intensity head


def test_a_stacks_weight_is_the_slices_weights(grey, mix_weights):
    from napari_lightfusion import plan_fusion

    stack = np.stack([grey, grey[::-1], grey[:, ::-1]])
    plan = plan_fusion(stack, stack[:, ::-1], weights=mix_weights, device="cpu", maps=True)
    whole = plan.run()
    joined = plan.join([plan.run_slice(k) for k in range(len(plan))])
    assert whole.weight.shape == stack.shape
    assert np.abs(joined.weight - whole.weight).max() <= 1e-5


def test_blend_weight_says_which_input_each_fused_value_came_from(grey, tmp_path):
    """A blend network's fused grey image is exactly weight * first + (1 - weight) * second."""
    import torch

    from napari_lightfusion.model import LightFusionNet
    from napari_lightfusion.weights import save_weights

    torch.manual_seed(6)
    net = LightFusionNet(output="blend").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    save_weights(net, tmp_path / "blend.pt", {})
    other = grey[::-1].copy()
    result = fuse(grey, other, weights=tmp_path / "blend.pt", device="cpu", a_limits=(0, 1), b_limits=(0, 1), maps=True)
    assert ((result.weight > 0.01) & (result.weight < 0.99)).any()
    np.testing.assert_allclose(result.fused, result.weight * grey + (1 - result.weight) * other, atol=1e-4)


def test_colour_put_back_tile_by_tile_is_the_whole_slice_colour_step():
    """fuse() colours each tile on the thread that fused it; the result is the colour step over whole slices."""
    from napari_lightfusion.engine import run_stack
    from napari_lightfusion.weights import model_for

    rng = np.random.default_rng(5)
    mri = rng.integers(0, 256, (2, 150, 170), dtype=np.uint8)
    pet = rng.integers(0, 256, (2, 150, 170, 3), dtype=np.uint8)
    pair = prepare_pair(mri, pet)
    grey = run_stack(model_for("PET-MRI"), pair.anatomical, pair.functional, "cpu", tile=64, maps=False).fused
    got = fuse(mri, pet, "PET-MRI", "cpu", tile=64).fused
    assert got.shape == (2, 150, 170, 3)
    np.testing.assert_allclose(got, pair.finish(grey), atol=1e-6)
