"""Each loss term on inputs whose value is worked out by hand."""

import pytest
import torch

from napari_lightfusion.losses import (
    LossWeights,
    fusion_loss,
    gradient_loss,
    intensity_loss,
    sobel_magnitude,
    ssim,
    ssim_loss,
)


def const(value, size=16):
    return torch.full((1, 1, size, size), float(value))


def test_intensity_loss_is_l1_to_the_maximum():
    a, b = const(0.2), const(0.6)
    # |0.5 - max(0.2, 0.6)| = 0.1
    assert intensity_loss(const(0.5), a, b).item() == pytest.approx(0.1)
    assert intensity_loss(const(0.6), a, b).item() == pytest.approx(0.0)


def test_sobel_magnitude_of_a_ramp():
    # I(x) = 0.1 x: Sobel-x = (1 + 2 + 1) * (0.1 * 2) = 0.8 inside, Sobel-y = 0
    ramp = (torch.arange(8.0) * 0.1).repeat(8, 1)[None, None]
    mag = sobel_magnitude(ramp)
    assert torch.allclose(mag[..., 1:-1, 1:-1], torch.full((6, 6), 0.8), atol=1e-5)
    # replicate padding: at the left edge the difference is one step -> 0.4
    assert torch.allclose(mag[..., 1:-1, 0], torch.full((6,), 0.4), atol=1e-5)


def test_gradient_loss():
    ramp = (torch.arange(8.0) * 0.1).repeat(8, 1)[None, None]
    flat = const(0.3, 8)
    # the fused image has no gradient, the target is the ramp's magnitude
    expected = sobel_magnitude(ramp).mean().item()
    assert gradient_loss(flat, ramp, flat).item() == pytest.approx(expected, abs=1e-5)
    assert gradient_loss(ramp, ramp, flat).item() == pytest.approx(0.0, abs=1e-5)


def test_ssim_of_identical_images_is_one_and_of_constants_by_formula():
    x = torch.rand(1, 1, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    # constants m1, m2: variances are 0, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    c1 = 0.01**2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert ssim(const(0.2, 32), const(0.6, 32)).item() == pytest.approx(expected, rel=1e-4)


def test_ssim_equals_the_2d_gaussian_window_of_wang_et_al_with_its_gradient():
    """The separable filtering is an implementation detail: values and gradients of the 11 x 11 window."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 40, 40, requires_grad=True)
    y = torch.rand(2, 1, 40, 40)
    g = torch.exp(-((torch.arange(11.0) - 5) ** 2) / (2 * 1.5**2))
    window = (torch.outer(g, g) / g.sum() ** 2)[None, None]
    c1, c2 = 0.01**2, 0.03**2

    def blur(t):
        return torch.nn.functional.conv2d(t, window)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    want = (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    (want_grad,) = torch.autograd.grad(want, x)
    got = ssim(x, y)
    (got_grad,) = torch.autograd.grad(got, x)
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.allclose(got_grad, want_grad, atol=1e-8, rtol=1e-4)
    y.requires_grad_(True)  # a second image that needs a gradient gets one
    (grad_y,) = torch.autograd.grad(ssim(x.detach(), y), y)
    assert grad_y.abs().sum() > 0


def test_ssim_loss_is_one_minus_the_mean_of_both():
    x = torch.rand(1, 1, 32, 32)
    y = const(0.5, 32)
    expected = 1 - 0.5 * (1.0 + ssim(x, y).item())
    assert ssim_loss(x, x, y).item() == pytest.approx(expected, abs=1e-5)


def test_total_is_the_weighted_sum():
    f, a, b = torch.rand(3, 1, 1, 24, 24)
    w = LossWeights(intensity=2.0, gradient=3.0, ssim=5.0)
    total, terms = fusion_loss(f, a, b, w)
    expected = 2 * terms["intensity"] + 3 * terms["gradient"] + 5 * terms["ssim"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_balance_moves_the_intensity_target_from_the_maximum_to_b():
    a, b = const(0.6), const(0.2)
    # target (1 - beta) max(A, B) + beta B: 0.6 at beta 0, 0.4 at 0.5, 0.2 at 1
    assert intensity_loss(const(0.4), a, b, balance=0.0).item() == pytest.approx(0.2)
    assert intensity_loss(const(0.4), a, b, balance=0.5).item() == pytest.approx(0.0, abs=1e-7)
    assert intensity_loss(const(0.2), a, b, balance=1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_balance_moves_the_gradient_target_to_b_and_weights_ssim_towards_b():
    torch.manual_seed(0)
    f, a, b = torch.rand(3, 1, 1, 32, 32)
    assert gradient_loss(b, a, b, balance=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_loss(b, a, b, balance=0.0).item() > 0.01
    for beta in (0.0, 0.3, 1.0):
        expected = 1 - 0.5 * ((1 - beta) * ssim(f, a) + (1 + beta) * ssim(f, b))
        assert ssim_loss(f, a, b, balance=beta).item() == pytest.approx(expected.item(), abs=1e-6)
    assert ssim_loss(b, a, b, balance=1.0).item() == pytest.approx(0.0, abs=1e-5)


def test_copying_b_is_the_optimum_at_balance_one_and_zero_is_the_paper():
    torch.manual_seed(1)
    f, a, b = torch.rand(3, 1, 1, 32, 32)
    assert fusion_loss(b, a, b, balance=1.0)[0].item() == pytest.approx(0.0, abs=1e-3)
    assert torch.equal(fusion_loss(f, a, b)[0], fusion_loss(f, a, b, balance=0.0)[0])
    with pytest.raises(ValueError, match="balance"):
        fusion_loss(f, a, b, balance=1.5)


def test_ssim7_map_is_scikit_images_inside_the_borders():
    import numpy as np
    from skimage.metrics import structural_similarity

    from napari_lightfusion.losses import ssim7_map

    rng = np.random.default_rng(0)
    x = rng.random((30, 30))
    y = np.clip(x + 0.3 * rng.random((30, 30)), 0, 1)
    expected = structural_similarity(x, y, win_size=7, data_range=1.0, full=True)[1]
    got = ssim7_map(torch.tensor(x)[None, None], torch.tensor(y)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got[3:-3, 3:-3], expected[3:-3, 3:-3], atol=1e-10)


def test_hot_spot_term_weights_the_two_sources_inside_the_mask_only():
    from napari_lightfusion.losses import hot_spot_loss

    torch.manual_seed(2)
    a, b = torch.rand(2, 1, 1, 24, 24)
    hot = torch.zeros(1, 1, 24, 24)
    hot[..., 8:16, 8:16] = 1.0
    assert hot_spot_loss(a, a, b, hot, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert hot_spot_loss(b, a, b, hot, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert hot_spot_loss(a, a, b, hot, 1.0).item() > 0.5
    outside = a.clone()
    outside[..., :4, :] = 0.0  # far from the mask: the term does not see it
    assert hot_spot_loss(outside, a, b, hot, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert hot_spot_loss(b, a, b, torch.zeros_like(hot), 0.5).item() == 1.0


def test_paper_terms_with_an_all_ones_mask_are_the_plain_means():
    torch.manual_seed(4)
    f, a, b = torch.rand(3, 1, 1, 32, 32)
    ones = torch.ones_like(f)
    assert intensity_loss(f, a, b, where=ones).item() == pytest.approx(intensity_loss(f, a, b).item())
    assert gradient_loss(f, a, b, where=ones).item() == pytest.approx(gradient_loss(f, a, b).item())
    assert ssim_loss(f, a, b, where=ones).item() == pytest.approx(ssim_loss(f, a, b).item())


def test_split_mode_is_the_paper_outside_the_hot_spot_and_the_balance_inside():
    torch.manual_seed(5)
    a, b = torch.rand(2, 1, 1, 48, 48)
    hot = torch.zeros_like(a)
    hot[..., 16:32, 16:32] = 1.0
    target = torch.maximum(a, b)
    inside = hot.bool()
    # the paper's intensity optimum outside, the MRI inside: only the hot-spot term's b = 0 part is met
    anatomy_first = torch.where(inside, a, target)
    function_first = torch.where(inside, b, target)
    _, terms0 = fusion_loss(anatomy_first, a, b, balance=0.0, mode="split", hot=hot)
    _, terms1 = fusion_loss(function_first, a, b, balance=1.0, mode="split", hot=hot)
    assert terms0["intensity"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms1["intensity"].item() == pytest.approx(0.0, abs=1e-6)

    # a change inside the hot spot does not reach the intensity term, and b picks the source there
    def hot_term(fused, balance):
        return fusion_loss(fused, a, b, balance=balance, mode="split", hot=hot)[1]["hot_spot"].item()

    assert terms0["hot_spot"].item() < hot_term(function_first, 0.0)
    assert terms1["hot_spot"].item() < hot_term(anatomy_first, 1.0)
    total, terms = fusion_loss(anatomy_first, a, b, balance=0.3, mode="split", hot=hot, hot_weight=2.0)
    w = LossWeights()
    paper = w.intensity * terms["intensity"] + w.gradient * terms["gradient"] + w.ssim * terms["ssim"]
    want = paper + w.ssim * 2.0 * terms["hot_spot"]
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match="mask"):
        fusion_loss(a, a, b, balance=0.5, mode="split")


def test_every_balance_mode_is_the_paper_at_zero():
    torch.manual_seed(3)
    f, a, b = torch.rand(3, 1, 1, 32, 32)
    hot = (b > 0.7).float()
    paper = fusion_loss(f, a, b)[0]
    for mode in ("targets", "fade", "hotspot"):
        assert fusion_loss(f, a, b, balance=0.0, mode=mode, hot=hot)[0].item() == pytest.approx(paper.item())
    with pytest.raises(ValueError, match="mask"):
        fusion_loss(f, a, b, balance=0.5, mode="hotspot")
    with pytest.raises(ValueError, match="mode"):
        fusion_loss(f, a, b, mode="other")


def test_middle_term_asks_each_image_to_beat_the_pixel_average_on_both_sources():
    from napari_lightfusion.losses import middle_loss

    torch.manual_seed(6)
    a, b = torch.rand(2, 2, 1, 32, 32)
    hot = torch.zeros_like(a)
    hot[..., 8:24, 8:24] = 1.0
    average = 0.5 * (a + b)
    # the average itself leads by 0: it falls short by the margin; a copy of A leads on A by far, not on B
    assert middle_loss(average, a, b, hot, 0.02).item() == pytest.approx(0.02, abs=1e-5)
    assert middle_loss(average, a, b, hot, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    assert middle_loss(a, a, b, hot, 0.0).item() > 0.1  # A kept perfectly, B less than the average keeps it
    assert middle_loss(b, a, b, hot, 0.0).item() > 0.1  # and the other way round: one lead does not pay for the other
    # per image: an image without hot pixels does not count, so one that beats the average alone gives 0
    hot[1] = 0.0
    best = torch.cat([average[:1] + 0.0, a[1:]])
    assert middle_loss(best, a, b, hot, 0.0).item() == pytest.approx(0.0, abs=1e-6)
    fused = average.clone().requires_grad_(True)
    middle_loss(fused, a, b, hot, 0.02).backward()
    assert fused.grad[1].abs().sum() == 0 and fused.grad[0].abs().sum() > 0


def test_ceiling_term_is_the_mean_distance_to_the_target_inside_the_hot_spot():
    from napari_lightfusion.losses import ceiling_loss

    target = torch.full((1, 1, 8, 8), 0.5)
    hot = torch.zeros_like(target)
    hot[..., :4, :] = 1.0
    fused = target.clone()
    assert ceiling_loss(fused, target, hot).item() == 0.0
    fused[..., 4:, :] = 1.0  # outside the hot spot: not counted
    assert ceiling_loss(fused, target, hot).item() == 0.0
    fused[..., :2, :] = 0.3  # a quarter of the image, half the hot spot, 0.2 away
    assert ceiling_loss(fused, target, hot).item() == pytest.approx(0.1)
    assert ceiling_loss(fused, target, torch.zeros_like(hot)).item() == 0.0  # no hot pixels
