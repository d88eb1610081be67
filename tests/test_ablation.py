"""Tests of the ablations (research.ablation_variants, ablation, report_ablations) on a tiny synthetic PET-MRI root."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave

from napari_lightfusion.metrics import METRICS
from napari_lightfusion.pair_data import is_validation
from napari_lightfusion.research import ablation
from napari_lightfusion.research import ablation_variants as av
from napari_lightfusion.research.tables import COLUMNS

TRAIN_NAMES = ["1.png", "2.png", "3.png", "4.png", "8.png"]  # 8.png falls in the validation split


def _image(rng, size, colour):
    y, x = np.mgrid[:size, :size] / size
    image = np.exp(-((y - rng.uniform(0.3, 0.7)) ** 2 + (x - 0.5) ** 2) / 0.08)
    image = 0.8 * image + 0.2 * rng.random((size, size))
    if colour:
        image = np.stack([image, image**2, 1.0 - image], axis=-1) * (image[..., None] > 0.3)
    return np.round(255 * image).astype(np.uint8)


def _write(root: Path, split: str, names: list[str], size: int):
    rng = np.random.default_rng(len(split))
    for name in names:
        for modality, colour in (("MRI", False), ("PET", True)):
            folder = root / split / "PET-MRI" / modality
            folder.mkdir(parents=True, exist_ok=True)
            imsave(folder / name, _image(rng, size, colour), check_contrast=False)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    assert any(is_validation(n) for n in TRAIN_NAMES) and not all(is_validation(n) for n in TRAIN_NAMES)
    root = tmp_path_factory.mktemp("harvard")
    _write(root, "train", TRAIN_NAMES, 64)  # the training crops are 64 x 64
    _write(root, "test", ["1.png", "2.png"], 32)
    return root


def test_the_variants_are_the_papers_with_one_shared_reference():
    names = [v.name for v in av.variants(lr=1e-3)]
    assert names[0] == "pca/dsc/16/4/eq5" and len(names) == len(set(names)) == 13
    for expected in (
        "conv/dsc/16/4/eq5",
        "channel/dsc/16/4/eq5",
        "spatial/dsc/16/4/eq5",
        "pca/standard/16/4/eq5",
        "pca/dsc/8/4/eq5",
        "pca/dsc/32/4/eq5",
        "pca/dsc/16/2/eq5",
        "pca/dsc/16/8/eq5",
        "pca/dsc/16/4/table5",
        "pca/dsc/16/4/eq5/blend",
        "pca/dsc/16/4/eq5/mix",
        "pca/dsc/16/4/eq5/lr0.0001",
    ):
        assert expected in names
    # a run at the paper's learning rate needs no separate lr rows
    assert len(av.variants(lr=1e-4)) == 12
    assert av.train_config(av.Variant(lr=1e-4), 3, lr=0.5).lr == 1e-4
    assert av.train_config(av.REFERENCE, 3, lr=0.5).lr == 0.5
    for _, rows in av.TABLES.values():
        assert av.REFERENCE in [v for _, v in rows]
    assert av.REFERENCE.slug == "pca-dsc-16-4-eq5"
    with pytest.raises(ValueError):
        av.Variant(weighting="eq6")


@pytest.fixture(scope="module")
def first_run(fake_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ablations")
    doc = out_dir.parent / "docs" / "ablations.md"
    calls = []
    real_train = ablation.train

    def counting_train(*args, **kwargs):
        calls.append(args[3].model)
        return real_train(*args, **kwargs)

    ablation.train = counting_train
    try:
        summary = ablation.run_ablations(
            fake_root, out_dir, epochs=1, doc=doc, progress=False, timing_repeats=1, size=32
        )
        mtimes = {p: p.stat().st_mtime_ns for p in out_dir.glob("*/PET-MRI.pt")}
        again = ablation.run_ablations(fake_root, out_dir, epochs=1, doc=doc, progress=False, timing_repeats=0, size=32)
    finally:
        ablation.train = real_train
    return {"out_dir": out_dir, "doc": doc, "summary": summary, "again": again, "calls": calls, "mtimes": mtimes}


def test_every_variant_is_trained_once_and_scored(first_run):
    summary, out_dir = first_run["summary"], first_run["out_dir"]
    assert len(first_run["calls"]) == len(av.variants())  # all in the first call, none in the second
    assert list(summary["results"]) == [v.name for v in av.variants()]
    for variant in av.variants():
        res = summary["results"][variant.name]
        assert res["trained"] and res["evaluated"] and res["pairs"] == 2
        assert (out_dir / variant.slug / "PET-MRI.pt").is_file()
        assert (out_dir / variant.slug / "eval.json").is_file()
        assert res["sidecar"]["model"] == variant.model_config().to_dict()
        assert res["sidecar"]["train"]["epochs"] == 1
        assert list(res["means"]) == list(COLUMNS)  # every column of the tables, hot-spot measures too
        assert all(np.isfinite(res["means"][m]) for m in METRICS)
        assert res["parameters"] > 0 and res["flops"] == 2 * res["macs"] and res["ms"] > 0
    widths = ("pca/dsc/8/4/eq5", "pca/dsc/16/4/eq5", "pca/dsc/32/4/eq5")
    params = {v: summary["results"][v]["parameters"] for v in widths}
    assert params["pca/dsc/8/4/eq5"] < params["pca/dsc/16/4/eq5"] < params["pca/dsc/32/4/eq5"]
    assert summary["results"]["pca/standard/16/4/eq5"]["macs"] > summary["results"]["pca/dsc/16/4/eq5"]["macs"]


def test_a_second_call_reuses_weights_and_scores(first_run):
    again = first_run["again"]
    assert all(not r["trained"] and not r["evaluated"] for r in again["results"].values())
    assert {p: p.stat().st_mtime_ns for p in first_run["mtimes"]} == first_run["mtimes"]
    for name, res in again["results"].items():
        assert res["means"] == pytest.approx(first_run["summary"]["results"][name]["means"])
        assert res["ms"] is None


def test_other_schedules_or_altered_weights_are_not_reused(first_run):
    path = ablation.weight_path(first_run["out_dir"], av.REFERENCE)
    config = av.train_config(av.REFERENCE, 1)
    assert ablation.reusable(path, config) is not None
    assert ablation.reusable(path, av.train_config(av.REFERENCE, 2)) is None
    assert ablation.reusable(path, av.train_config(av.REFERENCE, 1, lr=0.123)) is None
    other = av.Variant(weighting="table5")
    assert ablation.reusable(path, av.train_config(other, 1)) is None
    config.val_every = 7  # does not change the weights
    assert ablation.reusable(path, config) is not None
    assert ablation.reusable(path.with_name("missing.pt"), config) is None


def test_ablations_md_has_every_table_schedule_cost_and_metrics(first_run):
    text = first_run["doc"].read_text()
    assert text.startswith("# ") and "{" not in text  # every placeholder filled in
    assert "`lightfusion-research ablate --data " in text and "--epochs 1 --workers 1 --threads 1 --doc " in text
    assert "--lr" not in text.splitlines()[2] and "--limit" not in text.splitlines()[2]
    for key in ("## Table 3", "## Table 4A", "## Table 4B", "## Table 5", "## Table D", "## Cost"):
        assert key in text, key
    assert text.count("Schedule: 1 epoch, Adam lr ") == 5
    assert "Total CPU time" in text and f"reused {len(av.variants())}" in text
    assert "`pca/dsc/16/4/eq5/blend`" in text and "the paper as written" in text
    assert "| Method | variant | Params | MACs (G) | FLOPs (G) | CPU ms | EN ↑" in text
    assert "`pca/standard/16/4/eq5`" in text and "Qabf ↑" in text and "VIF ↑" in text


def test_parallel_workers_train_what_is_missing_and_reuse_the_rest(first_run, fake_root, tmp_path):
    out_dir = tmp_path / "ablations"
    shutil.copytree(first_run["out_dir"], out_dir)
    shutil.rmtree(out_dir / "pca-dsc-8-4-eq5")
    summary = ablation.run_ablations(fake_root, out_dir, epochs=1, workers=2, progress=False, timing_repeats=0, size=32)
    assert summary["workers"] == 2
    trained = [name for name, res in summary["results"].items() if res["trained"]]
    assert trained == ["pca/dsc/8/4/eq5"]
    assert (out_dir / "pca-dsc-8-4-eq5" / "PET-MRI.pt").is_file()
    for name, res in summary["results"].items():
        assert res["means"] == pytest.approx(first_run["summary"]["results"][name]["means"])


def test_made_by_line_has_lr_threads_and_limit_when_given(first_run, fake_root, tmp_path):
    """The command in the document reproduces the run: --lr, --threads and --limit included."""
    from napari_lightfusion.research.cli import main
    from napari_lightfusion.research.train import TrainConfig

    out_dir, doc = tmp_path / "ablations", tmp_path / "ablations.md"
    shutil.copytree(first_run["out_dir"], out_dir)
    lr = TrainConfig().lr  # the recipe's: the weights are reused, only the scores are redone
    argv = [
        "ablate",
        "--data",
        str(fake_root),
        "--out-dir",
        str(out_dir),
        "--epochs",
        "1",
        "--lr",
        str(lr),
        "--threads",
        "2",
        "--limit",
        "1",
        "--doc",
        str(doc),
    ]
    assert main(argv) == 0
    made_by = doc.read_text().splitlines()[2]
    assert f"`lightfusion-research {' '.join(argv)}`" in made_by.replace(" --workers 1", "")
    assert "Trial run" in doc.read_text()
