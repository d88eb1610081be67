"""``lightfusion-research bench``: its reference methods, its turns, its GPU rows and its peak estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lightfusion.research import bench, bench_references, bench_table
from napari_lightfusion.research.cli import main

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
cpu MHz\t\t: 2600.000
flags\t\t: fpu sse avx avx2 fma avx512f avx512bw
bogomips\t: 5200.00
"""


def test_cpu_text_names_the_processor_and_its_vector_unit():
    assert bench_table.cpu_text(CPUINFO).startswith("Intel(R) Xeon(R) Processor, AVX-512F, ")
    assert ", AVX2+FMA, " in bench_table.cpu_text(CPUINFO.replace(" avx512f avx512bw", ""))


def test_peak_is_cores_clock_lanes_and_two_fma_units():
    peak, how = bench_table.cpu_peak_gmacs(2, CPUINFO)
    assert peak == pytest.approx(2 * 2.6 * 16 * 2)
    assert "AVX-512F" in how and "2.60 GHz" in how
    avx2 = CPUINFO.replace(" avx512f avx512bw", "").replace("cpu MHz\t\t: 2600.000\n", "")
    peak, how = bench_table.cpu_peak_gmacs(1, avx2)
    assert peak == pytest.approx(1 * 2.6 * 8 * 2) and "AVX2" in how  # clock from bogomips / 2
    assert bench_table.cpu_peak_gmacs(1, "processor : 0\n")[0] is None


ROW = {
    "case": "64x64 pair",
    "kind": "pair",
    "backend": "onnx",
    "net_ms": 1.0,
    "fuse_ms": 1.1,
    "fuse_ratio": 1.1,
    "prepare_ms": 0.05,
    "colour_ms": None,
    "rest_ms": 0.05,
    "eager_ms": 2.0,
    "peak_rss_mib": 1.0,
    "base_rss_mib": 1.0,
    "load": 0.1,
    "threads": 1,
    "tile": 512,
    "repeats": 3,
    "block": 5,
    "clock": "cpu",
}


def test_the_table_says_thread_and_core_in_the_singular_and_leaves_out_empty_columns():
    assert "(1 core x 2.60 GHz" in "(" + bench_table.cpu_peak_gmacs(1, CPUINFO)[1]
    assert "2 cores x" in bench_table.cpu_peak_gmacs(2, CPUINFO)[1]
    text = bench_table.format_table([ROW])
    assert "\n1 thread, tile 512" in text and "1 threads" not in text
    header = text.splitlines()[0]
    assert "| fuse / network |" in header and "| inputs ms |" in header
    assert "colour ms" not in header and "OpenVINO" not in header  # no row has them
    assert "| 1.10 |" in text.splitlines()[2]
    assert "\n2 threads, tile 512" in bench_table.format_table([{**ROW, "threads": 2}])


def test_methods_take_turns_in_blocks_with_an_untimed_first_call():
    order = []
    times = bench.blocks_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, {"a": 3, "b": 1}, block=2)
    # a: untimed + 2 timed; b: untimed + 1 timed; then a's last block: untimed + 1 timed
    assert "".join(order) == "aaabbaa" and set(times) == {"a", "b"}


def test_a_pair_case_splits_fuses_overhead_and_times_the_references():
    row = bench.run_case({"kind": "pair", "size": 48, "colour": True, "repeats": 2, "block": 1, "threads": 1})
    for key in ("net_ms", "fuse_ms", "prepare_ms", "colour_ms", "maps_ms", "eager_ms", "plain_ms"):
        assert row[key] > 0, key
    assert row["rest_ms"] == pytest.approx(row["fuse_ms"] - row["net_ms"] - row["prepare_ms"] - row["colour_ms"])
    assert row["fuse_ratio"] == pytest.approx(row["fuse_ms"] / row["net_ms"])
    assert row["case"] == "48x48 colour pair" and row["gmacs"] > 0
    # the references compute the network's result (eager PyTorch and the plain export, to float32 rounding)
    assert set(row["reference_diff"]) >= {"eager_ms", "plain_ms"}
    assert max(row["reference_diff"].values()) <= 1e-4


def test_the_table_says_how_far_each_reference_is_from_the_network():
    rows = [{**ROW, "reference_diff": {"plain_ms": 2e-7, "openvino_ms": 1e-6}}]
    rows.append({**ROW, "reference_diff": {"plain_ms": 1e-7, "openvino_ms": 3e-3}})
    line = bench_table.format_table(rows).splitlines()
    assert "network's (first slice): plain ONNX 2.0e-07, OpenVINO 3.0e-03." in "\n".join(line)
    assert "difference" not in bench_table.format_table([ROW])


def test_plain_export_is_the_same_network():
    from napari_lightfusion.weights import model_for

    model = model_for("PET-MRI")
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 40, 52), dtype=np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]).numpy()
    assert np.abs(bench_references.plain_onnx_session(model, 1)(a, b) - want).max() <= 1e-4


def test_device_without_it_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--device", "cuda", "--sizes", "32", "--stack", "none", "--big", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not available" in err


def test_gpu_rows_follow_the_cpu_rows(monkeypatch):
    """What `lightfusion-research bench --device cuda` runs and prints, without a GPU (the cases are faked)."""
    from napari_lightfusion import engine

    monkeypatch.setattr(engine, "resolve_device", lambda device="auto": torch.device(device))
    cases = []

    def fake(case):
        cases.append(case)
        slices = case.get("slices", 1)
        return {
            "case": case["kind"],
            "kind": case["kind"],
            "device": case.get("device", "cpu"),
            "backend": "torch" if "device" in case else "onnx",
            "slices": slices,
            "fuse_ms": 10.0 * slices,
            "net_ms": 1.0,
            "eager_ms": 2.0,
            "peak_rss_mib": 1.0,
            "base_rss_mib": 1.0,
            "load": 0.1,
            "threads": 2,
            "tile": 512,
            "repeats": 1,
            "gmacs": 1.0,
        }

    monkeypatch.setattr(bench, "run_in_subprocess", fake)
    rows = bench.run_benchmark(1, 2, (64,), (4, 64), 128, device="cuda")
    assert [(c["kind"], c.get("device", "cpu")) for c in cases] == [
        ("pair", "cpu"),
        ("pair", "cpu"),
        ("stack", "cpu"),
        ("big", "cpu"),
        ("pair", "cuda"),
        ("pair", "cuda"),
        ("stack", "cuda"),
    ]
    assert [c.get("colour") for c in cases if c["kind"] == "pair"] == [False, True] * 2
    assert "stack throughput through fuse(), slices/s: cpu 100.0, cuda 100.0." in bench_table.format_table(rows)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stack_case_runs():
    row = bench.run_case({"kind": "stack", "size": 64, "slices": 4, "repeats": 1, "threads": 2, "device": "cuda"})
    assert row["device"] == "cuda" and row["backend"] == "torch" and row["net_ms"] > 0 and "plain_ms" not in row


def test_cpu_clock_counts_work_not_waiting():
    import time

    times = bench.blocks_ms({"sleep": lambda: time.sleep(0.05)}, {"sleep": 2}, clock="cpu")
    assert times["sleep"] < 20
    with pytest.raises(ValueError, match="unknown clock"):
        bench.run_benchmark(1, 1, (32,), None, None, clock="sundial")


def test_openvino_reference_runs_in_float32():
    pytest.importorskip("openvino", reason="OpenVINO is an optional reference of the bench, not a dependency")
    from napari_lightfusion.weights import model_for

    model = model_for("PET-MRI")
    a, b = np.random.default_rng(1).random((2, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]).numpy()
    assert np.abs(bench_references.openvino_session(model, 1)(a, b) - want).max() <= 1e-4


def test_tile_edges_time_the_engines_tiles_of_each_edge():
    from napari_lightfusion.research.bench_profile import format_tile_edges, time_tile_edges

    rows = time_tile_edges((64, 32), size=64, slices=2, threads=2, repeats=1)
    assert [(edge, tiles) for edge, tiles, _, _ in rows] == [(64, 1), (32, 4)]
    assert all(wall > 0 and cpu > 0 for _, _, wall, cpu in rows)
    table = format_tile_edges(rows, 64, 2).splitlines()
    assert table[0].startswith("| CPU tile edge (64x64, 2 threads)") and len(table) == 4


def test_a_tile_edge_below_the_smallest_tile_is_a_one_line_error():
    from napari_lightfusion.research.bench_profile import time_tile_edges

    with pytest.raises(ValueError, match="tile must be a whole number of at least 16"):
        time_tile_edges((128, 0), size=64, slices=1)
