"""Tests of the evaluation (research.evaluation and its parts) and its documents: scoring, quality bar, results.md.

Fast: tiny synthetic test sets written into ``tmp_path`` with the Harvard
folder layout. The one test on the real atlas skips when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread, imsave

from napari_lightfusion import metric_registry
from napari_lightfusion.baselines import BASELINES
from napari_lightfusion.metrics import METRICS
from napari_lightfusion.research import contact_sheets, report, report_results, tables
from napari_lightfusion.research import evaluation as ev
from napari_lightfusion.research.methods import baseline_method, network_method
from napari_lightfusion.research.quality_bar import quality_bar
from napari_lightfusion.research.scoring import evaluate_dataset, score
from napari_lightfusion.research.tables import LIGHTFUSIONNET, ranks
from napari_lightfusion.research.timing import efficiency, synthetic_pair, time_method


def phantom(rng: np.random.Generator, size: int, colour: bool) -> np.ndarray:
    """A smooth blob image with a little noise, uint8 grey or pseudo-colour RGB."""
    y, x = np.mgrid[:size, :size] / size
    cy, cx, r = rng.uniform(0.3, 0.7, 3)
    image = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.05 + 0.1 * r))
    image += 0.3 * np.sin(12 * x + 6 * y * r) ** 2 + 0.05 * rng.random((size, size))
    image = image / image.max()
    if colour:
        image = np.stack([image, image**2, 1.0 - image], axis=-1) * (image[..., None] > 0.2)
    return np.round(255 * image).astype(np.uint8)


def make_split(root: Path, split: str, dataset: str, other: str, names: list[str], size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for name in names:
        for modality, colour in (("MRI", False), (other, other in ("PET", "SPECT"))):
            folder = root / split / dataset / modality
            folder.mkdir(parents=True, exist_ok=True)
            imsave(folder / name, phantom(rng, size, colour), check_contrast=False)


@pytest.fixture
def fake_root(tmp_path) -> Path:
    root = tmp_path / "harvard"
    make_split(root, "test", "PET-MRI", "PET", ["1.png", "2.png", "3.png"], 32)
    return root


# --- scoring -----------------------------------------------------------------


def test_evaluate_dataset_gives_finite_metrics_for_every_method(fake_root):
    table = evaluate_dataset(fake_root, "PET-MRI")
    assert table.methods == [*BASELINES, LIGHTFUSIONNET]
    assert table.pairs == ["1.png", "2.png", "3.png"]
    for method in table.methods:
        assert len(table.scores[method]) == 3
        means = table.means[method]
        assert list(means) == list(tables.COLUMNS)
        assert all(np.isfinite(means[m]) for m in METRICS), (method, means)
        assert table.seconds[method] >= 0


def test_methods_are_callables_and_see_mri_and_other_as_given(fake_root):
    seen = []

    def spy(mri, other):
        seen.append((mri.shape, other.shape))
        return mri

    table = evaluate_dataset(fake_root, "PET-MRI", {"spy": spy}, limit=2)
    assert seen == [((32, 32), (32, 32, 3))] * 2
    # fused == MRI: its MI with the MRI is the MRI's entropy (in nats), SSIM to the MRI is 1
    assert table.means["spy"]["SSIM"] > 1.0


def test_score_uses_luminance_of_colour_images():
    rng = np.random.default_rng(0)
    mri = rng.random((24, 24))
    other = rng.random((24, 24, 3))
    y = other @ np.array([0.299, 0.587, 0.114])
    assert score(other, mri, other) == pytest.approx(score(y, mri, y))


def test_every_column_is_scored_printed_and_explained():
    assert tuple(m.name for m in tables.METRIC_MEASURES) == METRICS
    assert tables.COLUMNS[: len(METRICS)] == METRICS
    assert all(m.compute is not None for m in tables.EXTRA_MEASURES)
    rng = np.random.default_rng(1)
    assert list(score(rng.random((24, 24)), rng.random((24, 24)), rng.random((24, 24, 3)))) == list(tables.COLUMNS)
    help_text = report_results.how_to_read(6)
    for measure in tables.MEASURES:
        assert measure.name in tables.DECIMALS and f"**{measure.name}**: {measure.help}" in help_text


def test_ranks_follow_the_direction_of_a_column(monkeypatch):
    means = {"a": {"X": 1.0}, "b": {"X": 2.0}}
    assert ranks(means, "X", "ab") == {"a": 2, "b": 1}
    lower = metric_registry.Metric("X", "a test column", higher_is_better=False)
    monkeypatch.setitem(metric_registry.REGISTRY, "X", lower)
    assert ranks(means, "X", "ab") == {"a": 1, "b": 2}
    text = report.metric_table(means, ["a", "b"], metrics=["X"])
    assert text.startswith("| Method | X ↓ |")
    assert text.splitlines()[2:] == ["| a | **1.000** |", "| b | *2.000* |"]


def test_methods_by_name_and_unknown_names(fake_root):
    table = evaluate_dataset(fake_root, "PET-MRI", ["max"], limit=1)
    assert table.methods == ["max"]
    with pytest.raises(ValueError, match="unknown method"):
        evaluate_dataset(fake_root, "PET-MRI", ["median"])
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_method("median")


def test_weights_method_equals_preset_method(fake_root):
    from napari_lightfusion.weights import preset_path

    methods = {"preset": network_method(preset="PET-MRI"), "file": network_method(weights=preset_path("PET-MRI"))}
    table = evaluate_dataset(fake_root, "PET-MRI", methods, limit=1)
    assert table.means["preset"] == table.means["file"]


# --- ranking and the quality bar ------------------------------------------------


def _table(values: dict[str, float], **overrides: dict[str, float]) -> dict[str, dict[str, float]]:
    """Every metric of each method set to one value, with per-metric overrides."""
    means = {m: dict.fromkeys(tables.COLUMNS, v) for m, v in values.items()}
    for metric, per_method in overrides.items():
        for method, v in per_method.items():
            means[method][metric] = v
    return means


def test_ranks_share_ties_and_skip_nan():
    means = {"a": {"MI": 2.0}, "b": {"MI": 2.0}, "c": {"MI": 1.0}, "d": {"MI": float("nan")}}
    assert ranks(means, "MI", "abcd") == {"a": 1, "b": 1, "c": 3, "d": None}


def test_quality_bar_passes_when_ahead_and_often_in_the_top_two():
    # network second everywhere (max first), ahead of average everywhere
    means = _table({"average": 1.0, "max": 3.0, "laplacian": 1.5, "alpha": 0.5, "LightFusionNet": 2.0})
    bar = quality_bar(means, "PET-MRI")
    assert bar.ahead == {"MI": True, "Qabf": True, "SSIM": True, "VIF": True}
    assert bar.top2 == list(METRICS) and bar.best == []
    assert bar.passed


def test_quality_bar_fails_when_behind_average_on_one_metric():
    means = _table(
        {"average": 1.0, "max": 3.0, "laplacian": 1.5, "alpha": 0.5, "LightFusionNet": 2.0}, VIF={"LightFusionNet": 0.9}
    )
    bar = quality_bar(means)
    assert bar.ahead["VIF"] is False and not bar.ahead_of_average
    assert len(bar.top2) == 9 and bar.enough_top2
    assert not bar.passed


def test_quality_bar_fails_when_rarely_in_the_top_two():
    # ahead of average on the four, but third (behind max and laplacian) on all ten
    means = _table({"average": 1.0, "max": 3.0, "laplacian": 2.5, "alpha": 0.5, "LightFusionNet": 2.0})
    bar = quality_bar(means)
    assert bar.ahead_of_average and bar.top2 == [] and not bar.passed
    # a tie with the average is not "ahead"
    means["LightFusionNet"]["MI"] = means["average"]["MI"]
    assert quality_bar(means).ahead["MI"] is False


def test_quality_bar_counts_best_and_threshold():
    means = _table(
        {"average": 1.0, "max": 3.0, "laplacian": 2.5, "alpha": 0.5, "LightFusionNet": 2.0},
        EN={"LightFusionNet": 4.0},
        SD={"LightFusionNet": 2.7},
        MI={"LightFusionNet": float("nan")},
    )
    bar = quality_bar(means, min_top2=2)
    assert bar.best == ["EN"] and bar.top2 == ["EN", "SD"] and bar.enough_top2
    assert bar.ahead["MI"] is False  # NaN never counts
    with pytest.raises(ValueError, match="no row for"):
        quality_bar({"average": means["average"]})


def test_markdown_marks_best_bold_and_second_italic():
    means = _table({"x": 1.0, "y": 3.0, "z": 2.0})
    text = report.metric_table(means, ["x", "y", "z"])
    lines = text.splitlines()
    assert lines[0].startswith("| Method | EN ↑")
    assert "| y | **3.000** |" in lines[3] and "| z | *2.000* |" in lines[4]
    assert "*" not in lines[2]
    # marks follow the printed values: 1.0001 and 1.0004 both read 1.000 and tie for best
    means = _table({"x": 1.0001, "y": 1.0004, "z": 0.5})
    lines = report.metric_table(means, ["x", "y", "z"], metrics=["EN"]).splitlines()
    assert lines[2:] == ["| x | **1.000** |", "| y | **1.000** |", "| z | 0.500 |"]


def test_published_comparison_takes_the_published_figure_as_written_and_says_what_is_not_quoted():
    from types import SimpleNamespace

    def table(qabf, vif):
        return SimpleNamespace(means={tables.LIGHTFUSIONNET: {"Qabf": qabf, "VIF": vif}})

    text = report_results.published_markdown({"CT-MRI": table(0.676, 0.6), "SPECT-MRI": table(0.78, 0.964)})
    assert "| CT-MRI | Qabf | 0.676 | 0.68 | **below** |" in text  # not rounded up to the published 0.68
    assert "| CT-MRI | VIF | 0.600 | not quoted | |" in text
    assert "| SPECT-MRI | Qabf | 0.780 | 0.78 | at or above |" in text
    assert "| SPECT-MRI | VIF | 0.964 | 0.97 | **below** |" in text


# --- efficiency, colour maps, the document ------------------------------------------


def test_efficiency_reports_parameters_macs_and_ms():
    pair = synthetic_pair(32)
    eff = efficiency("PET-MRI", pair, repeats=1, warmup=0, threads=1)
    row = eff[LIGHTFUSIONNET]
    assert row["parameters"] > 1000 and row["flops"] == 2 * row["macs"] and row["macs"] > 1e8
    assert row["ms"] > 0 and eff["average"]["ms"] > 0 and eff["average"]["macs"] is None
    assert eff["_meta"]["threads"] == 1 and eff["_meta"]["backend"] in ("onnx", "torch")
    assert f", on {eff['_meta']['cpu']}." in report_results.efficiency_markdown(eff, "a pair")  # which CPU


def test_time_method_restores_thread_count():
    import torch

    before = torch.get_num_threads()
    calls = []
    ms = time_method(lambda: calls.append(torch.get_num_threads()), repeats=3, warmup=1, threads=1)
    assert ms >= 0 and calls == [1, 1, 1, 1] and torch.get_num_threads() == before


def test_colormap_and_stretch():
    values = np.array([[0.0, 0.5, 1.0, np.nan]])
    rgb = contact_sheets.colormap(values)
    assert rgb.shape == (1, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 2, 0] > rgb[0, 0, 0] and rgb[0, 2, 1] > 0.8  # yellow at the top
    assert contact_sheets.stretch(np.full((3, 3), 7.0)).max() == 0.0
    s = contact_sheets.stretch(np.arange(100.0))
    assert s.min() == 0.0 and s.max() == 1.0


def test_write_results_writes_tables_quality_bar_and_contact_sheet(fake_root, tmp_path):
    out = tmp_path / "docs" / "results.md"
    command = f"lightfusion-research evaluate --data {fake_root} --out {out}"
    computed = ev.write_results(fake_root, out, datasets=["PET-MRI"], progress=False, timing_repeats=1, command=command)
    text = out.read_text()
    assert text.startswith("# ")
    assert f"`{command}`" in text.splitlines()[2]
    for heading in (
        "## How to read this",
        "## Quality bar",
        "### PET-MRI: ",
        "## Table 1",
        "## Table 2",
        "### PET-MRI test, SPECT-MRI weights",
        "## Efficiency",
        "## Contact sheets",
    ):
        assert heading in text, heading
    assert "| LightFusionNet (SPECT-MRI weights) |" in text
    assert "four times lower" in text and "luminance" in text
    assert "**" in text.split("## Table 1")[1]  # best values marked
    verdict = "PASS" if computed["bars"]["PET-MRI"].passed else "FAIL"
    assert f"### PET-MRI: {verdict}" in text
    sheet = imread(out.parent / "contact_PET-MRI.png")
    columns = len(contact_sheets.contact_columns("PET-MRI"))
    assert sheet.shape == (24 + 3 * (32 + 4), columns * 32 + (columns - 1) * 4, 3)
    assert "contact_PET-MRI.png" in text


def test_write_results_with_limit_says_it_is_a_trial(fake_root, tmp_path):
    out = tmp_path / "results.md"
    ev.write_results(fake_root, out, datasets=["PET-MRI"], limit=1, progress=False, timing_repeats=0, contact=False)
    text = out.read_text()
    assert "Trial run" in text and "PET-MRI 1" in text
    assert (
        f"Made by `lightfusion-research evaluate --data {fake_root} --out {out} --datasets PET-MRI --limit 1`" in text
    )


def test_write_results_rejects_a_wrong_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        ev.write_results(tmp_path, tmp_path / "r.md", progress=False)


# --- the real atlas -----------------------------------------------------------


def test_two_real_pet_mri_pairs_score_finite_and_max_beats_average_on_qabf(harvard_root):
    table = evaluate_dataset(harvard_root, "PET-MRI", ["average", "max", "LightFusionNet"], limit=2)
    for method, means in table.means.items():
        assert all(np.isfinite(v) for v in means.values()), method
    assert table.means["max"]["Qabf"] > table.means["average"]["Qabf"]


def test_short_training_is_flagged_only_for_weights_trained_from_scratch():
    notes = "\n".join(
        report_results.training_notes(
            {
                "A": {"epochs": 20, "started_from": None},
                "B": {"epochs": 30, "started_from": "bcb73c8155c7"},
                "C": {"epochs": 100, "started_from": None},
            }
        )
    )
    assert "The weights of A were trained for fewer than 50 epochs" in notes
    assert "B's 30 epochs continue the training of an earlier weight file (sha256 `bcb73c8155c7`" in notes
    assert "C" not in notes.replace("LightFusionNet", "")
