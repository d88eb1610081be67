"""The network's size, shapes, ranges and ablation variants."""

import pytest
import torch

from napari_lightfusion.model import ATTENTIONS, LightFusionNet, ModelConfig, count_macs, count_parameters


def test_default_size_is_within_the_paper_budget():
    model = LightFusionNet()
    assert 2_000 <= count_parameters(model) <= 5_000
    macs = count_macs(model, 256, 256)
    # the paper's 0.29 G "FLOPS" is a MAC count; ours must not exceed it
    assert 0.1e9 <= macs <= 0.30e9


def test_macs_scale_with_pixels():
    model = LightFusionNet()
    assert count_macs(model, 512, 512) == 4 * count_macs(model, 256, 256)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("conv", ["dsc", "standard"])
def test_every_variant_fuses_to_unit_range(attention, conv):
    model = LightFusionNet(attention=attention, conv=conv).eval()
    a, b = torch.rand(2, 1, 37, 45), torch.rand(2, 1, 37, 45)
    fused, maps = model(a, b, return_maps=True)
    assert fused.shape == (2, 1, 37, 45)
    assert 0.0 <= fused.min() <= fused.max() <= 1.0
    for att in maps["attention"]:
        assert att.shape == (2, 16, 37, 45)
        assert 0.0 <= att.min() <= att.max() <= 1.0
    has_surprise = maps["surprise"][0] is not None
    assert has_surprise == (attention == "pca")


def test_width_and_reduction_change_the_size():
    base = count_parameters(LightFusionNet())
    assert count_parameters(LightFusionNet(width=8)) < base < count_parameters(LightFusionNet(width=32))
    assert count_parameters(LightFusionNet(reduction=8)) < base < count_parameters(LightFusionNet(reduction=2))
    assert count_parameters(LightFusionNet(conv="standard")) > 3 * base


def test_maps_do_not_change_the_fused_image():
    model = LightFusionNet().eval()
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(a, b), model(a, b, return_maps=True)[0])


def test_context_prediction_cannot_see_the_centre():
    """The surprise must come from the neighbours: the centre tap is masked."""
    model = LightFusionNet().eval()
    pca = model.attention_a
    x = torch.zeros(1, 16, 9, 9)
    x[..., 4, 4] = 1.0
    with torch.no_grad():
        pca.context.weight.fill_(1.0)
        pca.context.bias.zero_()
        _, surprise, _ = pca(x)
    # predicted at the centre is the sum of 8 zero neighbours -> surprise = |0 - 1|
    assert torch.allclose(surprise[..., 4, 4], torch.ones(1, 16))


def test_receptive_radius_bounds_the_influence_of_a_pixel():
    torch.manual_seed(0)
    model = LightFusionNet().eval()
    r = model.receptive_radius
    a = torch.rand(1, 1, 64, 64)
    b = torch.rand(1, 1, 64, 64)
    changed = a.clone()
    changed[..., 32, 32] += 0.5
    with torch.no_grad():
        diff = (model(changed, b) - model(a, b)).abs()[0, 0]
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    assert len(ys) > 0
    assert (ys - 32).abs().max() <= r and (xs - 32).abs().max() <= r
    # and the radius is not loose by much: something changes near its edge
    assert (ys - 32).abs().max() >= r - 2


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="attention"):
        ModelConfig(attention="transformer")
    with pytest.raises(ValueError, match="conv"):
        ModelConfig(conv="fft")


def test_blend_output_mixes_the_two_sources_pixel_by_pixel():
    model = LightFusionNet(output="blend").eval()
    a, b = torch.rand(1, 1, 24, 24), torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        fused = model(a, b)
    low, high = torch.minimum(a, b), torch.maximum(a, b)
    assert (fused >= low - 1e-6).all() and (fused <= high + 1e-6).all()
    same = model(a, a)
    assert torch.allclose(same, a, atol=1e-6)  # nothing to mix: the source comes back


def test_intensity_output_is_the_papers_head():
    model = LightFusionNet(output="intensity").eval()
    a = torch.zeros(1, 1, 16, 16)
    with torch.no_grad():
        fused = model(a, a)
    # a sigmoid cannot reach 0, so a black pair does not come back black
    assert (fused > 0).all()


def test_blend_weight_is_a_hard_sigmoid_whose_gradient_only_leads_back_inside():
    from napari_lightfusion.model import blend_weight

    z = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0, -2.0, 2.0], requires_grad=True)
    w = blend_weight(z)
    assert torch.equal(w.detach(), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0]))
    # loss gradients: +1 on every element except the last two, which ask to move back inside
    upstream = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0])
    (w * upstream).sum().backward()
    # z=-2 with grad +1 would step further below 0: dropped; z=2 with grad +1 steps down, inside: kept;
    # z=-2 with grad -1 steps up, inside: kept; the unsaturated ones pass as is.
    assert torch.equal(z.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0]))
    with torch.no_grad():
        assert torch.equal(blend_weight(z), w.detach())  # the same forward without autograd


def test_balance_conditioning_stays_within_the_paper_budget():
    model = LightFusionNet(balance=0.0)
    extra = count_parameters(model) - count_parameters(LightFusionNet())
    assert 0 < extra <= 400  # a few hundred parameters: 1 -> 8 -> 2C
    assert count_parameters(model) <= 5_000
    assert count_macs(model, 256, 256) <= 0.30e9


def test_unconditioned_network_is_unchanged_by_balance():
    """The paper's network: no extra parameters, identity conditioning, same output for any b."""
    torch.manual_seed(0)
    model = LightFusionNet().eval()
    assert not model.conditioned
    assert not any("film" in k for k in model.state_dict())
    scale, shift = model.condition(0.7)
    assert torch.equal(scale, torch.ones(16)) and torch.equal(shift, torch.zeros(16))
    a, b = torch.rand(1, 1, 24, 24), torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        fa = model.attention_a(model.encoder_a(a))[0]
        fb = model.attention_b(model.encoder_b(b))[0]
        by_hand = torch.sigmoid(model.decoder((fa + fb) * 0.5))
        assert torch.equal(model(a, b), by_hand)
        assert torch.equal(model(a, b, balance=1.0), by_hand)


def test_condition_shapes_default_and_effect():
    torch.manual_seed(0)
    model = LightFusionNet(balance=0.25).eval()
    scale, shift = model.condition(None)
    assert scale.shape == shift.shape == (16,)
    # an untrained conditioning is the identity for every b
    assert torch.equal(scale, torch.ones(16)) and torch.equal(shift, torch.zeros(16))
    with torch.no_grad():
        torch.nn.init.normal_(model.film.out.weight)
        a, b = torch.rand(1, 1, 24, 24), torch.rand(1, 1, 24, 24)
        default = model(a, b)
        assert torch.equal(default, model(a, b, balance=0.25))  # None = the config's b
        assert not torch.allclose(model(a, b, balance=0.0), model(a, b, balance=1.0))
        s, t = model.condition(0.9)
        fa = model.attention_a(model.encoder_a(a))[0]
        fb = model.attention_b(model.encoder_b(b))[0]
        f = (fa + fb) * 0.5 * s[None, :, None, None] + t[None, :, None, None]
        assert torch.allclose(model(a, b, balance=0.9), torch.sigmoid(model.decoder(f)))


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), "high"])
def test_balance_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="balance"):
        ModelConfig(balance=bad)
    for model in (LightFusionNet(), LightFusionNet(balance=0.0)):
        with pytest.raises(ValueError, match="balance"):
            model.condition(bad)
        with pytest.raises(ValueError, match="balance"):
            model(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), balance=bad)


def test_balance_travels_in_the_config_and_old_configs_load():
    assert ModelConfig().balance is None
    old = {"width": 16, "reduction": 4, "attention": "pca", "conv": "dsc", "output": "intensity"}
    assert ModelConfig(**old).balance is None
    assert ModelConfig(**{**old, "balance": 0.5}).to_dict()["balance"] == 0.5


def test_conditioned_network_round_trips_through_its_sidecar(tmp_path):
    from napari_lightfusion.weights import load_model, save_weights

    torch.manual_seed(0)
    model = LightFusionNet(balance=0.3)
    with torch.no_grad():
        torch.nn.init.normal_(model.film.out.weight)
    save_weights(model, tmp_path / "w.pt", {"dataset": "test"})
    loaded = load_model(tmp_path / "w.pt")
    assert loaded.config.balance == 0.3
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(a, b, balance=0.8), model.eval()(a, b, balance=0.8))


def test_mix_head_is_a_blend_stretched_by_a_gain_and_an_offset():
    from napari_lightfusion.model import head_output

    def mix(a, b, head):
        return head_output("mix", a, b, head)[0]

    a, b = torch.full((1, 1, 2, 2), 0.6), torch.full((1, 1, 2, 2), 0.2)
    head = torch.zeros(1, 3, 2, 2)
    assert torch.allclose(mix(a, b, head), (a + b) / 2)  # w = 1/2, gain 1, offset 0: the average
    head[:, 0] = 0.5  # w = 1: the first source
    head[:, 1], head[:, 2] = 0.5, -0.1  # gain 1.5, offset -0.1
    assert torch.allclose(mix(a, b, head), torch.full_like(a, 1.5 * 0.6 - 0.1))
    head[:, 2] = 5.0
    assert torch.equal(mix(a, b, head), torch.ones_like(a))  # clamped to [0, 1]


def test_mix_network_has_a_three_channel_head_within_the_budget():
    model = LightFusionNet(output="mix", balance=0.0)
    assert model.decoder[-1].out_channels == 3
    assert count_parameters(model) == count_parameters(LightFusionNet(balance=0.0)) + 2 * 9
    assert count_parameters(model) <= 5000 and count_macs(model) <= 0.30e9
    x = torch.rand(2, 1, 24, 24)
    out = model(x, x.flip(-1), balance=0.4)
    assert out.shape == (2, 1, 24, 24) and 0 <= out.min() <= out.max() <= 1
