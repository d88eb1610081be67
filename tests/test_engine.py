"""The engine: device resolution, backend choice, tiling exactness, map channel choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lightfusion import engine, tiling
from napari_lightfusion.engine import resolve_device, run_slice, select_backend
from napari_lightfusion.model import LightFusionNet
from napari_lightfusion.tiling import tile_spans
from napari_lightfusion.weights import model_for

BACKENDS = ["torch", "onnx"]
CPU = torch.device("cpu")


@pytest.fixture
def no_accelerator(monkeypatch):
    """Pretend this machine has neither CUDA nor MPS, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)


@pytest.fixture(scope="module")
def model():
    return model_for("PET-MRI")


@pytest.fixture(scope="module")
def image_pair():
    rng = np.random.default_rng(11)
    shape = (130, 171)  # not a multiple of the tile in either direction
    a = rng.random(shape, dtype=np.float32)
    b = np.clip(a[::-1] * 0.7 + 0.3 * rng.random(shape, dtype=np.float32), 0, 1).astype(np.float32)
    return a, b


# --- device resolution -------------------------------------------------------------------


def test_auto_is_cpu_without_accelerators(no_accelerator):
    assert resolve_device("auto") == CPU
    assert engine.available_devices() == ["cpu"]


def test_auto_prefers_what_is_available():
    assert resolve_device("auto").type == engine.available_devices()[0]


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", "cpu:0"])
def test_cpu_spellings(name):
    assert resolve_device(name).type == "cpu"


def test_torch_device_objects_pass_through():
    assert resolve_device(CPU) == CPU


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_absent_accelerator_is_a_clear_error(no_accelerator, name):
    with pytest.raises(ValueError, match=r"not available here; available: cpu"):
        resolve_device(name)


def test_cuda_index_beyond_the_devices_is_refused():
    with pytest.raises(ValueError, match="not available"):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")


@pytest.mark.parametrize("name", ["gpu", "", "cpu:x", "banana", None, 3, 1.5])
def test_nonsense_device_is_a_clear_error(name):
    with pytest.raises(ValueError, match=r"unknown device .*use auto, cpu, cuda or mps"):
        resolve_device(name)


# --- backend choice ----------------------------------------------------------------------


def test_cpu_uses_onnx_runtime(monkeypatch):
    monkeypatch.delenv("LIGHTFUSION_BACKEND", raising=False)
    assert select_backend(CPU) == "onnx"
    assert select_backend(CPU, "torch") == "torch"
    monkeypatch.setenv("LIGHTFUSION_BACKEND", "torch")
    assert select_backend(CPU) == "torch"


def test_a_broken_onnx_runtime_install_fails_loudly(monkeypatch, model, image_pair):
    """onnxruntime is a dependency: a missing or broken one is an error, not a quiet fall back to PyTorch."""
    from napari_lightfusion import fastpath

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")

    monkeypatch.setattr(fastpath, "session_for", missing)
    a, b = (x[:40, :50] for x in image_pair)
    with pytest.raises(ModuleNotFoundError, match="onnxruntime"):
        run_slice(model, a, b, CPU)


def test_accelerators_always_use_torch():
    assert select_backend(torch.device("cuda")) == "torch"
    assert select_backend(torch.device("mps")) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        select_backend(torch.device("cuda"), "onnx")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        select_backend(CPU, "tensorrt")


def test_a_failing_export_falls_back_to_torch_with_a_warning(monkeypatch, model, image_pair):
    from napari_lightfusion import fastpath

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(fastpath, "session_for", broken)
    monkeypatch.setattr(engine, "_fast_failed", set())
    a, b = (x[:40, :50] for x in image_pair)
    with pytest.warns(RuntimeWarning, match="exporter exploded"):
        out = run_slice(model, a, b, CPU)
    ref = run_slice(model, a, b, CPU, backend="torch")
    assert np.array_equal(out.fused, ref.fused)
    with pytest.raises(ValueError, match="onnx backend failed"):
        run_slice(model, a, b, CPU, backend="onnx")


# --- outputs, backends agree ---------------------------------------------------------------


@pytest.mark.parametrize("channel", [None, 4])
def test_backends_agree(model, image_pair, channel):
    a, b = image_pair
    fast = run_slice(model, a, b, CPU, channel=channel, backend="onnx")
    slow = run_slice(model, a, b, CPU, channel=channel, backend="torch")
    for name in ("fused", "surprise", "attention"):
        got, want = getattr(fast, name), getattr(slow, name)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-4, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_slice_output_shapes_and_ranges(model, image_pair, backend):
    a, b = image_pair
    out = run_slice(model, a, b, CPU, backend=backend)
    assert out.fused.shape == a.shape and out.fused.dtype == np.float32
    assert out.surprise.shape == out.attention.shape == (2, *a.shape)
    assert 0.0 <= out.fused.min() <= out.fused.max() <= 1.0
    assert 0.0 <= out.attention.min() <= out.attention.max() <= 1.0
    assert out.surprise.min() >= 0.0 and np.isfinite(out.surprise).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_not_modified(model, image_pair, backend):
    a, b = (x.copy() for x in image_pair)
    run_slice(model, a, b, CPU, tile=64, backend=backend)
    assert np.array_equal(a, image_pair[0]) and np.array_equal(b, image_pair[1])


# --- tiling ------------------------------------------------------------------------------


@pytest.mark.parametrize("length, tile, halo", [(1, 64, 9), (64, 64, 9), (65, 64, 9), (203, 64, 9), (10, 3, 4)])
def test_tile_spans_cover_every_pixel_once_with_halo(length, tile, halo):
    spans = tile_spans(length, tile, halo)
    cores = np.zeros(length, int)
    for read0, read1, core0, core1 in spans:
        cores[core0:core1] += 1
        assert 0 <= read0 <= core0 < core1 <= read1 <= length
        assert core0 - read0 == min(halo, core0) and read1 - core1 == min(halo, length - core1)
        assert core1 - core0 <= tile
    assert (cores == 1).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", [64, 50])
def test_tiled_equals_untiled(model, image_pair, backend, tile):
    a, b = image_pair
    whole = run_slice(model, a, b, CPU, tile=4096, backend=backend)
    tiled = run_slice(model, a, b, CPU, tile=tile, backend=backend)
    for name in ("fused", "surprise", "attention"):
        assert np.abs(getattr(tiled, name) - getattr(whole, name)).max() <= 1e-4, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_smallest_tiles_are_still_exact(model, image_pair, backend):
    a, b = (x[:37, :45] for x in image_pair)
    whole = run_slice(model, a, b, CPU, tile=4096, backend=backend)
    tiled = run_slice(model, a, b, CPU, tile=tiling.MIN_TILE, backend=backend)  # 3 x 3 tiles, halo 9
    assert np.abs(tiled.fused - whole.fused).max() <= 1e-4


def test_receptive_radius_is_tight_enough_for_exact_tiles(model):
    """A halo one pixel short of the receptive radius must change the result."""
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 60, 60), dtype=np.float32)
    whole = run_slice(model, a, b, CPU, tile=4096, backend="torch").fused
    short = model.receptive_radius - 1
    fused = np.empty_like(whole)
    for y0, y1, cy0, cy1 in tile_spans(60, 20, short):
        for x0, x1, cx0, cx1 in tile_spans(60, 20, short):
            f = run_slice(model, a[y0:y1, x0:x1], b[y0:y1, x0:x1], CPU, tile=4096, backend="torch").fused
            fused[cy0:cy1, cx0:cx1] = f[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    assert np.abs(fused - whole).max() > 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_local_attention_is_never_tiled(backend):
    torch.manual_seed(0)
    channel_attention = LightFusionNet(attention="channel").eval()
    assert not channel_attention.is_local
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 40, 70), dtype=np.float32)
    whole = run_slice(channel_attention, a, b, CPU, tile=4096, backend=backend)
    small = run_slice(channel_attention, a, b, CPU, tile=16, backend=backend)
    assert small.surprise is None
    assert np.abs(small.fused - whole.fused).max() <= 1e-4


@pytest.mark.parametrize("tile", [0, -5, 15, 3.5, "512", True, None])
def test_one_tile_rule_for_engine_and_fuse(model, image_pair, tile):
    from napari_lightfusion import fuse

    with pytest.raises(ValueError, match=r"^tile must be a whole number of at least 16 pixels"):
        run_slice(model, *image_pair, CPU, tile=tile)
    with pytest.raises(ValueError, match=r"^tile must be a whole number of at least 16 pixels"):
        fuse(*image_pair, device="cpu", tile=tile)


def test_smallest_tile_is_accepted_everywhere(model, image_pair):
    from napari_lightfusion import fuse

    assert tiling.check_tile(np.int64(tiling.MIN_TILE)) == tiling.MIN_TILE == 16
    a, b = (x[:20, :20] for x in image_pair)
    assert fuse(a, b, device="cpu", tile=tiling.MIN_TILE).fused.shape == (20, 20)


def test_default_tile_bounds_memory():
    assert 256 <= tiling.DEFAULT_TILE <= 1024


# --- channel selection ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("channel", [None, 0, 7, 15])
def test_maps_are_the_mean_or_the_chosen_channel(model, image_pair, backend, channel):
    a, b = (x[:48, :56] for x in image_pair)
    out = run_slice(model, a, b, CPU, channel=channel, backend=backend)
    with torch.inference_mode():
        _, maps = model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], return_maps=True)
    pick = (lambda t: t[0].mean(0)) if channel is None else (lambda t: t[0, channel])
    for name, got in (("surprise", out.surprise), ("attention", out.attention)):
        want = np.stack([pick(t).numpy() for t in maps[name]])
        assert np.abs(got - want).max() <= 1e-4, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_different_channels_give_different_maps(model, image_pair, backend):
    a, b = (x[:48, :56] for x in image_pair)
    one = run_slice(model, a, b, CPU, channel=1, backend=backend).attention
    two = run_slice(model, a, b, CPU, channel=2, backend=backend).attention
    assert not np.allclose(one, two)


# --- maps on request, balance -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile", [4096, 64])
def test_without_maps_the_fused_image_is_the_same(model, image_pair, backend, tile):
    a, b = image_pair
    with_maps = run_slice(model, a, b, CPU, tile=tile, backend=backend)
    without = run_slice(model, a, b, CPU, tile=tile, backend=backend, maps=False)
    assert without.surprise is None and without.attention is None
    assert np.abs(without.fused - with_maps.fused).max() <= 1e-5


def test_without_maps_the_session_has_no_map_outputs(model):
    from napari_lightfusion import fastpath

    fast = fastpath.session_for(model, maps=False)
    assert [o.name for o in fast.session.get_outputs()] == ["fused"]


def conditioned_net(seed=0):
    """A balance-conditioned network whose conditioning is far from the identity."""
    torch.manual_seed(seed)
    net = LightFusionNet(balance=0.25).eval()
    with torch.no_grad():
        for p in net.film.parameters():
            p.add_(torch.randn_like(p))
    return net


@pytest.mark.parametrize("backend", BACKENDS)
def test_balance_reaches_the_network(image_pair, backend):
    net = conditioned_net()
    a, b = (x[:40, :50] for x in image_pair)
    low = run_slice(net, a, b, CPU, backend=backend, balance=0.0)
    high = run_slice(net, a, b, CPU, backend=backend, balance=1.0)
    default = run_slice(net, a, b, CPU, backend=backend)
    assert np.abs(low.fused - high.fused).max() > 1e-3
    with torch.inference_mode():
        want = net(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], balance=0.25)
    assert np.abs(default.fused - want[0, 0].numpy()).max() <= 1e-4


@pytest.mark.parametrize("maps", [True, False])
def test_balance_backends_agree_without_a_new_export(image_pair, maps, monkeypatch):
    from napari_lightfusion import fastpath

    net = conditioned_net(1)
    a, b = (x[:40, :50] for x in image_pair)
    run_slice(net, a, b, CPU, backend="onnx", maps=maps)
    made = []
    real = fastpath.make_session
    monkeypatch.setattr(fastpath, "make_session", lambda *x, **k: made.append(x) or real(*x, **k))
    for balance in (0.0, 0.6, 1.0):
        fast = run_slice(net, a, b, CPU, backend="onnx", balance=balance, maps=maps)
        slow = run_slice(net, a, b, CPU, backend="torch", balance=balance, maps=maps)
        for name in ("fused", "surprise", "attention"):
            got, want = getattr(fast, name), getattr(slow, name)
            assert (got is None) == (want is None) == (name != "fused" and not maps)
            if got is not None:
                assert np.abs(got - want).max() <= 1e-4, (balance, name)
    assert made == []  # one session for every b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("balance", [-0.1, 1.5, float("nan"), "half"])
def test_balance_out_of_range_is_refused(model, image_pair, backend, balance):
    with pytest.raises(ValueError, match="^balance must be"):
        run_slice(model, *image_pair, CPU, backend=backend, balance=balance)


# --- one model copy per device ------------------------------------------------------------------


def test_other_devices_get_a_cached_copy_and_the_shared_model_stays(model):
    assert engine.model_on(model, CPU) is model
    meta = engine.model_on(model, torch.device("meta"))
    assert meta is not model and next(meta.parameters()).device.type == "meta"
    assert engine.model_on(model, torch.device("meta")) is meta
    assert next(model.parameters()).device == CPU


def test_changed_weights_get_a_new_copy():
    net = conditioned_net(2)
    first = engine.model_on(net, torch.device("meta"))
    with torch.no_grad():
        net.decoder[-1].bias.add_(1.0)
    assert engine.model_on(net, torch.device("meta")) is not first


def test_fusing_on_one_device_while_another_thread_uses_a_second_device(model, image_pair):
    """The old engine moved the shared model (``model.to(device)``): the CPU thread then broke."""
    import threading

    a, b = (x[:32, :32] for x in image_pair)
    want = run_slice(model, a, b, CPU, backend="torch").fused
    stop, errors, results = threading.Event(), [], []

    def other_device():
        while not stop.is_set():
            try:
                engine.model_on(model, torch.device("meta"))
                engine.model_on(model, CPU)
            except Exception as exc:  # noqa: BLE001 # pragma: no cover - any failure of the other thread is reported below
                errors.append(exc)

    thread = threading.Thread(target=other_device)
    thread.start()
    try:
        for _ in range(20):
            results.append(run_slice(model, a, b, CPU, backend="torch").fused)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert all(np.array_equal(r, want) for r in results)
    assert next(model.parameters()).device == CPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_from_two_threads(model, image_pair):
    import threading

    a, b = image_pair
    cuda = torch.device("cuda")
    want_cpu = run_slice(model, a, b, CPU, backend="torch")
    want_cuda = run_slice(model, a, b, cuda)
    assert np.abs(want_cpu.fused - want_cuda.fused).max() <= 1e-3
    errors = []

    def loop(device, want):
        try:
            for _ in range(10):
                got = run_slice(model, a, b, device, backend="torch")
                assert np.abs(got.fused - want.fused).max() <= 1e-5
        except Exception as exc:  # noqa: BLE001 - a thread's failure (assertion or error) is reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(d, w)) for d, w in ((CPU, want_cpu), (cuda, want_cuda))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert next(model.parameters()).device == CPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("maps", [True, False])
def test_cuda_matches_the_cpu(model, image_pair, maps):
    a, b = image_pair
    gpu = run_slice(model, a, b, torch.device("cuda"), tile=64, maps=maps)
    cpu = run_slice(model, a, b, CPU, backend="torch", maps=maps)
    for name in ("fused", "surprise", "attention"):
        got, want = getattr(gpu, name), getattr(cpu, name)
        assert (got is None) == (want is None)
        if got is not None:
            assert np.abs(got - want).max() <= 1e-3, name


@pytest.mark.parametrize(
    "shape, tile, tiles, want",
    [
        ((512, 512), 192, 1, (171, 171)),
        ((256, 256), 192, 1, (128, 128)),
        ((100, 100), 192, 1, (100, 100)),
        ((513, 300), 256, 1, (171, 150)),
        ((17, 17), 16, 1, (9, 9)),
        ((160, 100), 192, 2, (80, 100)),
        ((200, 200), 192, 4, (100, 100)),
        ((100, 90), 192, 2, (100, 90)),
    ],
)
def test_tiles_are_even_within_the_limit_and_feed_the_threads(shape, tile, tiles, want):
    core = tiling.tile_grid(*shape, tile, tiles)
    assert core == want and max(core) <= tile
    for length, edge in zip(shape, core):
        cores = [c1 - c0 for _, _, c0, c1 in tile_spans(length, edge, 9)]
        assert max(cores) - min(cores) < len(cores)  # no thin last tile


def test_stack_on_several_threads_equals_slice_by_slice(model):
    rng = np.random.default_rng(8)
    a, b = rng.random((2, 3, 200, 230), dtype=np.float32)
    stack = engine.run_stack(model, a, b, CPU, threads=2)
    assert stack.fused.shape == (3, 200, 230) and stack.attention.shape == stack.surprise.shape == (2, 3, 200, 230)
    for i in range(3):
        one = run_slice(model, a[i], b[i], CPU, threads=1, backend="torch")
        assert np.abs(stack.fused[i] - one.fused).max() <= 1e-4
        assert np.abs(stack.attention[:, i] - one.attention).max() <= 1e-4
        assert np.abs(stack.surprise[:, i] - one.surprise).max() <= 1e-4


def test_full_precision_turns_tf32_off_for_cuda_only_and_restores_it(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    with engine.full_precision(CPU):
        assert torch.backends.cudnn.allow_tf32
    with engine.full_precision(torch.device("cuda")):
        assert not torch.backends.cudnn.allow_tf32
    assert torch.backends.cudnn.allow_tf32


# --- the mix weight of blend and mix heads ---------------------------------------------------


def weighted_net(output: str, seed: int = 5) -> LightFusionNet:
    """A balance-conditioned network with a ``blend`` or ``mix`` head, its weights scaled up so that w spans [0, 1]."""
    torch.manual_seed(seed)
    net = LightFusionNet(output=output, balance=0.3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    return net


def decoder_weight(net, a, b, balance=None):
    """The head's w computed here, independently of the engine: ``clamp(logit + 1/2, 0, 1)`` of the decoder."""
    heads = []
    hook = net.decoder.register_forward_hook(lambda module, inputs, out: heads.append(out))
    try:
        with torch.inference_mode():
            net(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], balance=balance)
    finally:
        hook.remove()
    return (heads[0][0, 0] + 0.5).clamp(0, 1).numpy()


@pytest.mark.parametrize("output", ["blend", "mix"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_weight_map_is_the_heads_weight_tiled_or_not(image_pair, output, backend):
    net = weighted_net(output)
    a, b = image_pair
    whole = run_slice(net, a, b, CPU, tile=4096, backend=backend, balance=0.7)
    tiled = run_slice(net, a, b, CPU, tile=50, backend=backend, balance=0.7)
    want = decoder_weight(net, a, b, balance=0.7)
    for out in (whole, tiled):
        assert out.weight.shape == a.shape and out.weight.dtype == np.float32
        assert np.abs(out.weight - want).max() <= 1e-4
    assert np.abs(tiled.weight - whole.weight).max() <= 1e-4
    assert (want == 0).any() and (want == 1).any() and ((want > 0) & (want < 1)).any()
    if output == "blend":  # fused = w a + (1 - w) b: the map says where each value came from
        assert np.abs(whole.fused - (whole.weight * a + (1 - whole.weight) * b)).max() <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_stacks_carry_the_weight_per_slice(image_pair, backend):
    net = weighted_net("mix", seed=8)
    a, b = image_pair
    stack_a, stack_b = np.stack([a, b, a[::-1]]), np.stack([b, a, b[::-1]])
    out = engine.run_stack(net, stack_a, stack_b, CPU, tile=64, backend=backend)
    assert out.weight.shape == stack_a.shape
    for k in range(3):
        assert np.abs(out.weight[k] - decoder_weight(net, stack_a[k], stack_b[k])).max() <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_weight_without_maps_or_without_the_head(image_pair, backend):
    a, b = (x[:40, :50] for x in image_pair)
    assert run_slice(weighted_net("mix"), a, b, CPU, backend=backend, maps=False).weight is None
    intensity = LightFusionNet().eval()
    assert not intensity.has_weight and weighted_net("blend").has_weight
    out = run_slice(intensity, a, b, CPU, backend=backend)
    assert out.weight is None and out.attention is not None


def test_threads_sharing_a_mix_network_get_their_own_weight(image_pair):
    """Two threads on one model must not swap their weights."""
    from concurrent.futures import ThreadPoolExecutor

    net = weighted_net("mix", seed=3)
    a, b = (x[:64, :64] for x in image_pair)
    pairs = [(a, b), (b, a[::-1].copy()), (a.T.copy(), b.T.copy()), (b[::-1].copy(), a)] * 3
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: run_slice(net, *p, CPU, backend="torch").weight, pairs))
    for (x, y), weight in zip(pairs, got, strict=True):
        assert np.abs(weight - decoder_weight(net, x, y)).max() <= 1e-4


def test_a_gpu_forward_takes_several_whole_slices_the_cpu_one_tile_of_pixels():
    assert tiling.slices_per_forward(CPU, 512, 512, 512) == 1
    assert tiling.slices_per_forward(CPU, 512, 128, 128) == 16
    assert tiling.slices_per_forward(torch.device("cuda"), 512, 512, 512) == tiling.GPU_BATCH_PIXELS // 512**2 > 1
    assert tiling.slices_per_forward(torch.device("cuda"), 2048, 1024, 1024) == 4  # a larger tile is the budget
    assert tiling.slices_per_forward(torch.device("mps"), 512, 4000, 4000) == 1
