"""The ONNX Runtime fast path gives the PyTorch model's answer, maps included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lightfusion import fastpath, onnx_export
from napari_lightfusion.model import LightFusionNet, blend_weight
from napari_lightfusion.weights import model_for

TOL = 1e-4


def reference(model, a, b, channel=None, balance=None):
    """The PyTorch model's fused image, channel-reduced maps and mix weight (or None) for (N, H, W) pairs."""
    reduce = (lambda t: t.mean(1)) if channel is None else (lambda t: t[:, channel])
    heads = []
    hook = model.decoder.register_forward_hook(lambda module, inputs, out: heads.append(out))
    try:
        with torch.inference_mode():
            fused, maps = model(
                torch.from_numpy(a)[:, None], torch.from_numpy(b)[:, None], return_maps=True, balance=balance
            )
    finally:
        hook.remove()
    sa, sb = maps["surprise"]
    surprise = None if sa is None else torch.stack([reduce(sa), reduce(sb)], 1).numpy()
    attention = torch.stack([reduce(m) for m in maps["attention"]], 1).numpy()
    weight = None if model.config.output == "intensity" else blend_weight(heads[0][:, 0]).numpy()
    return fused[:, 0].numpy(), surprise, attention, weight


def pair(shape, seed=0, n=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.random((n, *shape), dtype=np.float32)


def assert_matches(model, a, b, channel=None, maps=True, balance=None):
    with torch.no_grad():
        scale, shift = (t.numpy() for t in model.condition(balance))
    fast = fastpath.session_for(model, channel, maps=maps).run(a, b, scale, shift)
    ref = reference(model, a, b, channel, balance)
    assert len(fast) == len(ref) == 4
    if not maps:
        assert fast[1] is None and fast[2] is None and fast[3] is None
        fast, ref = fast[:1], ref[:1]
    for name, got, want in zip(("fused", "surprise", "attention", "weight"), fast, ref):
        if want is None:
            assert got is None, name
            continue
        assert got.shape == want.shape and got.dtype == np.float32, name
        assert np.abs(got - want).max() <= TOL, (name, float(np.abs(got - want).max()))


@pytest.fixture(scope="module")
def preset():
    return model_for("PET-MRI")


def stressed(seed, **config):
    """A network with random, larger-than-initial weights (saturating sigmoids, big surprises)."""
    torch.manual_seed(seed)
    model = LightFusionNet(**config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 3), (64, 64), (37, 129)])
@pytest.mark.parametrize("channel", [None, 0, 5, 15])
def test_preset_matches_pytorch(preset, shape, channel):
    assert_matches(preset, *pair(shape, seed=shape[0] * 7 + shape[1]), channel=channel)


@pytest.mark.parametrize("maps", [True, False])
def test_batch_of_slices_matches_pytorch(preset, maps):
    assert_matches(preset, *pair((33, 40), seed=3, n=3), maps=maps)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (64, 64), (37, 129)])
def test_without_maps_matches_pytorch(preset, shape):
    assert_matches(preset, *pair(shape, seed=shape[0] + shape[1]), maps=False)


def conditioned(seed, **config):
    """A stressed network conditioned on a balance, its conditioning far from the identity."""
    model = stressed(seed, balance=0.3, **config)
    with torch.no_grad():
        for p in model.film.parameters():
            p.add_(torch.randn_like(p))
    return model


@pytest.mark.parametrize(
    "config", [{}, {"output": "blend"}, {"output": "mix"}, {"attention": "spatial"}, {"attention": "channel"}]
)
@pytest.mark.parametrize("maps", [True, False])
def test_conditioned_networks_match_for_every_balance(config, maps):
    model = conditioned(9, **config)
    a, b = pair((29, 35), seed=6, n=2)
    for balance in (0.0, 0.45, 1.0, None):
        assert_matches(model, a, b, maps=maps, balance=balance)


def test_generic_export_runs_the_mix_head():
    """An attention variant with the mix head (GenericNet), at initial weights: the gain stays near 1."""
    torch.manual_seed(12)
    model = LightFusionNet(attention="spatial", output="mix", balance=0.3).eval()
    assert isinstance(onnx_export.export_net(model), onnx_export.GenericNet)
    for balance in (0.0, 0.7):
        assert_matches(model, *pair((31, 26), seed=8), balance=balance)


@pytest.mark.parametrize("output", ["blend", "mix"])
@pytest.mark.parametrize("attention", ["pca", "spatial"])
def test_mix_weight_is_one_more_map_channel(output, attention):
    """Blend and mix heads export their weight after the maps; it spans [0, 1] on a stressed network."""
    model = stressed(21, output=output, attention=attention, balance=0.3)
    a, b = pair((45, 38), seed=11, n=2)
    assert_matches(model, a, b, balance=0.6)
    fast = fastpath.session_for(model)
    with torch.no_grad():
        _, _, _, weight = fast.run(a, b, *(t.numpy() for t in model.condition(0.6)))
    assert weight.shape == (2, 45, 38) and weight.min() >= 0.0 and weight.max() <= 1.0
    assert (weight == 0.0).any() and (weight == 1.0).any() and ((weight > 0) & (weight < 1)).any()
    maps = fast.session.get_outputs()[1]
    assert maps.shape[1] == (5 if attention == "pca" else 3)


def test_conditioned_session_needs_scale_and_shift():
    fast = fastpath.session_for(conditioned(3))
    assert fast.conditioned and [i.name for i in fast.session.get_inputs()] == ["a", "b"]
    with pytest.raises(ValueError, match="scale and shift"):
        fast.run(*pair((8, 8)))


def test_each_balance_gets_a_session_from_one_export(monkeypatch):
    model = conditioned(4)
    fast = fastpath.make_session(model, maps=False)
    monkeypatch.setattr(fastpath, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    a, b = pair((24, 30), seed=2)
    with torch.no_grad():
        conditions = [tuple(t.numpy() for t in model.condition(x)) for x in (0.0, 0.5, 1.0, 0.25)]
    sessions = [fast.for_balance(*c) for c in conditions]
    assert len({id(s) for s in sessions}) == 4 and fast.for_balance(*conditions[-1]) is sessions[-1]
    assert len(fast._balances) == fastpath.FastSession.BALANCES
    fused = [fast.run(a, b, *c)[0] for c in conditions]
    assert np.abs(fused[0] - fused[2]).max() > 1e-3


def test_conditioned_graph_stays_in_the_blocked_layout(tmp_path):
    """Constants, not inputs: the FiLM folds into a convolution, so only the output changes layout."""
    import onnx
    import onnxruntime as ort

    data, _, held = onnx_export.export_onnx(conditioned(5), maps=False)
    assert held
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    assert ops.count("ReorderInput") == 0 and ops.count("ReorderOutput") == 1, ops


@pytest.mark.parametrize(
    "config, channel",
    [
        ({}, 1),
        ({"conv": "standard"}, None),
        ({"width": 24, "reduction": 3}, None),
        ({"width": 8, "reduction": 1}, 7),
        ({"output": "mix"}, None),
        ({"output": "mix", "conv": "standard"}, 2),
    ],
)
def test_rewritten_network_matches_for_other_shapes(config, channel):
    model = stressed(1, **config)
    assert isinstance(onnx_export.export_net(model), onnx_export.ExportNet)
    assert_matches(model, *pair((45, 38), seed=4), channel=channel)


@pytest.mark.parametrize(
    "config, paired",
    [
        ({}, True),
        ({"conv": "standard"}, True),
        ({"width": 8, "reduction": 1}, True),
        ({"width": 24, "reduction": 3}, False),
    ],
)
def test_last_leaky_relu_is_a_relu_pair_where_the_block_has_room(config, paired):
    """C/2 channels and their negatives fit in a 16-channel block up to C = 16; the result matches either way."""
    model = stressed(3, **config)
    net = onnx_export.ExportNet(model, maps=False)
    assert (net.decoder[-2].activation is torch.nn.functional.relu) == paired
    assert_matches(model, *pair((33, 40), seed=6), maps=False)


@pytest.mark.parametrize("attention", ["conv", "channel", "spatial"])
def test_other_attentions_use_the_generic_export(attention):
    model = stressed(2, attention=attention)
    assert isinstance(onnx_export.export_net(model), onnx_export.GenericNet)
    assert_matches(model, *pair((30, 41), seed=5), channel=2 if attention == "spatial" else None)


def test_extreme_but_valid_inputs_match(preset):
    a = np.zeros((1, 50, 50), np.float32)
    b = np.ones((1, 50, 50), np.float32)
    a[0, ::7] = 1.0
    assert_matches(preset, a, b)


def test_session_is_exported_once_per_weights_and_channel(monkeypatch):
    model = stressed(7)
    made = []
    real = fastpath.make_session
    monkeypatch.setattr(fastpath, "make_session", lambda *a, **k: made.append(a) or real(*a, **k))
    first = fastpath.session_for(model)
    assert fastpath.session_for(model) is first
    assert fastpath.session_for(model, 3) is not first
    assert len(made) == 2
    with torch.no_grad():
        model.decoder[-1].bias.add_(1.0)  # changed weights: a new export, the new answer
    changed = fastpath.session_for(model)
    assert changed is not first and len(made) == 3
    assert_matches(model, *pair((20, 20), seed=8))


def test_session_uses_the_requested_threads(preset):
    fast = fastpath.session_for(preset, threads=1)
    assert fast.session.get_session_options().intra_op_num_threads == 1


def test_export_does_not_touch_the_model(preset):
    before = {k: v.clone() for k, v in preset.state_dict().items()}
    training = preset.training
    onnx_export.export_onnx(preset, channel=2)
    assert preset.training == training
    for k, v in preset.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_fingerprint_follows_every_weight_change():
    import copy

    model = stressed(11)
    first = fastpath.fingerprint(model)
    assert fastpath.fingerprint(model) == first == fastpath.fingerprint(copy.deepcopy(model))
    state = {k: v + 1.0 for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    changed = fastpath.fingerprint(model)
    assert changed != first
    with torch.no_grad():
        model.encoder_a[0][0].weight[0, 0, 0, 0] += 0.5
    third = fastpath.fingerprint(model)
    assert third not in (first, changed)
    conv = model.encoder_a[0][0]
    conv.weight = torch.nn.Parameter(conv.weight.detach().clone() * 2.0)  # a new tensor object
    assert fastpath.fingerprint(model) not in (first, changed, third)
