"""The dock's Qt-free parts (``napari_lightfusion.session``): fusion jobs, metric tables and layer helpers."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from napari.components import ViewerModel
from napari.layers import Image

from napari_lightfusion import fuse, metric_registry, plan_fusion
from napari_lightfusion.baselines import fuse_baseline
from napari_lightfusion.generators import Steps
from napari_lightfusion.metrics import METRICS, evaluate, hot_spot_scores
from napari_lightfusion.session import jobs, layer_io, table_text


def request(a, b, index=None, preset="PET-MRI", **kwargs):
    inputs = dict(a=a, b=b, a_limits=(0.0, 255.0), b_limits=None, a_rgb=False, b_rgb=True)
    return jobs.Request(inputs, preset, "cpu", None, ("test",), index=index, **kwargs)


def drain(gen):
    """Run a job generator to the end: (yielded values, returned outcome)."""
    steps = Steps(gen)
    return list(steps), steps.value


# ---------------------------------------------------------------- metrics


def test_metric_rows_are_evaluate_on_the_normalised_streams(colour_pair):
    plan = plan_fusion(*colour_pair, "PET-MRI", a_limits=(10.0, 200.0))
    result = plan.run_slice(0)
    table = jobs.metric_rows(result, plan, 0, ("average", "max"))
    assert list(table) == [jobs.NETWORK, "average", "max"]
    anat, func = plan.pair.anatomical[0] * 255, plan.pair.functional[0] * 255
    hot = hot_spot_scores(result.fused * 255, anat, func)  # a colour pair: the hot-spot rows too
    want = {**evaluate(result.fused * 255, anat, func), **hot, metric_registry.TIME: result.seconds}
    assert table[jobs.NETWORK] == want
    for name in ("average", "max"):
        fused = fuse_baseline(name, *colour_pair, a_limits=(10.0, 200.0))
        want = evaluate(fused * 255, anat, func)
        assert {k: table[name][k] for k in METRICS} == pytest.approx(want, rel=1e-6, nan_ok=True)
        assert table[name][metric_registry.TIME] >= 0


def test_grey_pairs_have_no_hot_spot_rows(colour_pair):
    from napari_lightfusion.colour import luminance

    plan = plan_fusion(colour_pair[0], luminance(colour_pair[1]), "CT-MRI")
    table = jobs.metric_rows(plan.run_slice(0), plan, 0, ("average",))
    assert all(set(row) == {*METRICS, metric_registry.TIME} for row in table.values())


def test_baseline_fused_matches_fuse_baseline_for_stacks(stack_pair):
    plan = plan_fusion(*stack_pair, "PET-MRI", b_rgb=True)
    whole = jobs.baseline_fused(plan, "laplacian")
    np.testing.assert_allclose(whole, fuse_baseline("laplacian", *stack_pair, b_rgb=True), atol=1e-6)
    np.testing.assert_allclose(jobs.baseline_fused(plan, "alpha", 2), fuse_baseline("alpha", *stack_pair)[2], atol=1e-6)


def test_tsv_and_csv_round_trip():
    table = {
        jobs.NETWORK: {m: i + 0.123456789 for i, m in enumerate(METRICS)} | {metric_registry.TIME: 0.5},
        "average": {m: float("nan") for m in metric_registry.ROWS},
    }
    tsv = table_text.to_tsv(table).splitlines()
    assert tsv[0] == f"metric\t{jobs.NETWORK}\taverage"
    assert tsv[1] == "EN\t0.123456789\tnan" and len(tsv) == len(metric_registry.ROWS) + 1
    rows = list(csv.reader(io.StringIO(table_text.to_csv(table))))
    assert rows[0] == ["metric", jobs.NETWORK, "average"] and [r[0] for r in rows[1:]] == list(metric_registry.ROWS)
    assert float(rows[2][1]) == table[jobs.NETWORK]["SD"] and math.isnan(float(rows[2][2]))
    assert table_text.to_tsv({}) == "" and table_text.to_csv({}) == ""


def test_copy_and_csv_keep_every_digit():
    """As the README says: what is pasted or saved reads back as the very float computed."""
    values = dict.fromkeys(METRICS, math.nan) | {
        "EN": 1 / 3,
        "SD": np.float64(2 / 3),
        "SF": np.float32(0.1),
        "Qabf": 1e-17,
        metric_registry.TIME: 0.000123456789,
    }
    table = {jobs.NETWORK: values}
    for text, delimiter in ((table_text.to_tsv(table), "\t"), (table_text.to_csv(table), ",")):
        cells = {row[0]: row[1] for row in csv.reader(io.StringIO(text), delimiter=delimiter)}
        assert cells["EN"] == "0.3333333333333333" and cells["SD"] == "0.6666666666666666"  # not np.float64(...)
        assert all(float(cells[k]) == float(v) for k, v in values.items() if not math.isnan(v))
        assert cells["time (s)"] == "0.000123456789" and cells["VIF"] == "nan"


# ------------------------------------------------------------------- jobs


def test_whole_job_yields_per_slice_and_equals_fuse(stack_pair):
    seen, out = drain(
        jobs.run_request(request(*stack_pair, metric_index=3, baselines=("max",), maps=True), jobs.PlanCache())
    )
    # the slices, the outcome, then a pause (None) after each column of the metric table
    assert seen == [0, 1, 2, 3, 4, out, None, None] and out.error is None and out.index is None
    assert out.stacked and out.rgb and out.slices == 5 and out.weighted
    want = fuse(*stack_pair, "PET-MRI", "cpu", a_limits=(0.0, 255.0), b_rgb=True, maps=True)
    np.testing.assert_allclose(out.result.fused, want.fused, atol=1e-6)
    shown = np.isfinite(out.result.attention)  # the maps as the widget shows them: NaN off the object
    assert shown.any() and not shown.all()
    np.testing.assert_allclose(out.result.attention[shown], want.attention[shown], atol=1e-6)
    assert list(out.table) == [jobs.NETWORK, "max"] and out.compare == {}


def test_a_live_job_holds_its_metric_table_while_another_slice_may_come(stack_pair):
    holds = iter([True, True, False])
    seen, out = drain(jobs.run_request(request(*stack_pair, index=1), jobs.PlanCache(), hold=lambda: next(holds)))
    assert seen == [out, None, None, None, None]  # two pauses held, then one after each of the two columns
    assert list(out.table) == [jobs.NETWORK, "average"]


def test_live_job_fuses_one_slice_and_compare_adds_baselines(stack_pair):
    cache = jobs.PlanCache()
    seen, out = drain(jobs.run_request(request(*stack_pair, index=2, compare=True), cache))
    assert seen == [out, None, None] and out.index == 2 and out.result.fused.shape == (48, 48, 3)
    plan = cache.get(request(*stack_pair))
    np.testing.assert_allclose(out.result.fused, plan.run_slice(2).fused, atol=1e-6)
    assert out.compare["average"].shape == (5, 48, 48, 3)


def test_a_job_computes_maps_only_when_its_request_asks(colour_pair):
    cache = jobs.PlanCache()
    _, plain = drain(jobs.run_request(request(*colour_pair), cache))
    assert plain.result.attention is None and plain.result.weight is None and plain.channel_maps is None
    assert plain.weighted and plain.map_limits == {}  # the network has a mix weight, not computed
    _, mapped = drain(jobs.run_request(request(*colour_pair, maps=True), cache))
    assert mapped.result.attention.shape == (2, 64, 64) and mapped.result.weight is not None
    assert mapped.channel_maps is not None and set(mapped.map_limits) == {
        f"{k}:{s}" for k in ("surprise", "attention") for s in (0, 1)
    }
    np.testing.assert_array_equal(plain.result.fused, mapped.result.fused)


def test_plan_cache_reuses_until_the_key_changes(colour_pair):
    cache = jobs.PlanCache()
    first = cache.get(request(*colour_pair))
    assert cache.get(request(*colour_pair)) is first
    with_maps = cache.get(request(*colour_pair, maps=True))
    assert with_maps.maps and with_maps.pair is first.pair  # the same normalised pair, maps on
    changed = request(*colour_pair)
    changed.key = ("test", 2)
    assert cache.get(changed) is not first


@pytest.mark.parametrize(
    ("a_shape", "preset", "message"),
    [((32, 32), "PET-MRI", "differ in shape"), ((64, 64), "MRI-XYZ", "unknown preset")],
)
def test_job_errors_come_back_as_one_line(colour_pair, a_shape, preset, message):
    a = np.zeros(a_shape, np.uint8)
    seen, out = drain(jobs.run_request(request(a, colour_pair[1], preset=preset), jobs.PlanCache()))
    assert seen == [] and out.result is None
    assert message in out.error and "\n" not in out.error


# ----------------------------------------------------------------- layers


def test_candidates_and_pair_checks(colour_pair):
    mri = Image(colour_pair[0], name="mri")
    pet = Image(colour_pair[1], name="pet", rgb=True)
    assert layer_io.is_output(Image(colour_pair[0], name="x", metadata={layer_io.MARK: "fused"}))
    assert not layer_io.is_output(mri)
    assert layer_io.check_pair(mri, pet) is None
    half = Image(colour_pair[1][:32], rgb=True, name="half")
    assert layer_io.check_pair(mri, half) is None  # fused on the anatomical grid
    assert "Fuse resamples it onto the grid of 'mri'" in layer_io.grid_note(mri, half)
    assert layer_io.grid_note(mri, pet) is None
    assert layer_io.check_pair(mri, Image(np.zeros((3, 64, 64)), name="stack"))[0] == "dims"
    inputs = layer_io.fusion_inputs(Image(colour_pair[0], contrast_limits=(5, 50)), pet)
    assert inputs["a_limits"] == (5.0, 50.0) and inputs["b_limits"] is None and inputs["b_rgb"]


def test_data_index_follows_scale_and_translate():
    layer = Image(np.zeros((10, 8, 8)), scale=(2.0, 1.0, 1.0), translate=(4.0, 0, 0))
    assert layer_io.data_index(layer, (8.0, 0.0, 0.0)) == 2
    assert layer_io.data_index(layer, (1000.0, 0, 0)) == 9 and layer_io.data_index(layer, (-50.0, 0, 0)) == 0


def test_output_sets_update_in_place_and_never_overwrite_a_renamed_layer():
    from napari_lightfusion.session import outputs

    viewer = ViewerModel()
    like = viewer.add_image(np.zeros((8, 8)), scale=(2, 3), translate=(1, -1), name="mri")
    spec = lambda value: [("fused", np.full((8, 8), value, np.float32), dict(contrast_limits=(0, 1)))]  # noqa: E731
    first = outputs.write_set(viewer, "k", "a + b · PET-MRI", ("a", "b"), spec(1), like, 2)["fused"]
    np.testing.assert_allclose(first.scale, (2, 3))
    np.testing.assert_allclose(first.translate, (1, -1))
    like.scale, like.translate = (4, 4), (0, 0)
    again = outputs.write_set(viewer, "k", "a + b · PET-MRI", ("a", "b"), spec(0), like, 2)["fused"]
    assert again is first and len(viewer.layers) == 2 and not again.data.any()
    np.testing.assert_allclose(again.scale, (4, 4))
    other = outputs.write_set(viewer, "other", "a + b · CT-MRI", ("a", "b"), spec(1), like, 2)["fused"]
    assert other is not first and len(viewer.layers) == 3
    first.name = "mine"
    third = outputs.write_set(viewer, "k", "a + b · PET-MRI", ("a", "b"), spec(1), like, 2)["fused"]
    assert third is not first and not first.data.any() and third.data.all()
    third.data = np.zeros((8, 8), np.float32)  # someone else's edit
    assert "fused" not in outputs.set_layers(viewer, "k")
    stack = viewer.add_image(np.zeros((5, 8, 8)), name="stack")
    live = outputs.write_set(
        viewer, "live", "x", ("a", "b"), [("fused", np.ones((8, 8), np.float32), {})], stack, 2, index=2, slices=5
    )["fused"]
    assert live.data.shape == (5, 8, 8) and not live.rgb and live.data[2].all() and not live.data[3].any()


def test_time_cells_read_in_milliseconds_or_seconds():
    from napari_lightfusion._qt.table import row_label
    from napari_lightfusion.metric_registry import duration

    assert [duration(s) for s in (0.000213, 0.00121, 0.0123, 0.15, 1.5, math.nan)] == [
        "213 µs",
        "1.2 ms",
        "12 ms",
        "150 ms",
        "1.5 s",
        "nan",
    ]
    assert row_label(metric_registry.TIME) == "time ↓" and row_label("SSIM") == "SSIM ↑"
