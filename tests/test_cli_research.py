"""Tests of the ``lightfusion-research`` command (the research tools) and of its split from ``lightfusion``.

Each research subcommand runs and its user errors are one line; ``lightfusion
NAME`` of a research tool names the command to run instead; both commands
build their help without Qt or napari, and ``lightfusion`` without
:mod:`napari_lightfusion.research` at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.io import imsave

from napari_lightfusion import cli
from napari_lightfusion._sample_data import phantom_mri, phantom_pet
from napari_lightfusion.research.cli import build_parser, main

#: What neither command needs for its help.
QT_AND_NAPARI = ["napari_lightfusion._qt", "qtpy", "PyQt6", "PyQt5", "PySide6", "PySide2", "napari"]


def _commands(parser) -> list[str]:
    return list(parser._subparsers._group_actions[0].choices)


def test_the_research_commands_are_the_ones_lightfusion_sends_there():
    assert _commands(build_parser()) == list(cli.RESEARCH_COMMANDS)
    assert not set(_commands(cli.build_parser())) & set(cli.RESEARCH_COMMANDS)
    assert _commands(cli.build_parser()) == ["fuse", "fuse-volume", "batch", "finetune", "presets", "view"]


@pytest.mark.parametrize("argv", [["bench", "--sizes", "64", "--big", "none"], ["train", "--help"], ["score"]])
def test_lightfusion_of_a_research_command_names_the_command_to_run_in_one_line(argv, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err == (
        f"lightfusion {argv[0]}: error: {argv[0]} is a research tool, run it as lightfusion-research {' '.join(argv)}"
    )
    assert captured.out == ""


def test_both_commands_say_where_the_other_ones_are(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "lightfusion-research --help" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "lightfusion --help" in text and "misalignment_check" in text and "volume_bench" in text


def test_the_research_console_script_and_module_build_their_help_without_qt(run_blocked):
    for argv in (["lightfusion-research", "--help"], ["python", "-m", "napari_lightfusion.research", "--help"]):
        proc = run_blocked(argv, QT_AND_NAPARI)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("usage: lightfusion-research") and "default-balance" in proc.stdout


def test_lightfusion_answers_a_research_command_without_importing_research(run_blocked):
    proc = run_blocked(["lightfusion", "bench"], [*QT_AND_NAPARI, "napari_lightfusion.research"])
    assert proc.returncode == 2 and proc.stderr.strip().endswith("run it as lightfusion-research bench"), proc.stderr


def test_a_bad_research_option_is_one_line_named_after_its_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["score", "w.pt", "--dataset", "PET-MRI"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err
    assert err.startswith("lightfusion-research score: error: the following arguments are required: --data")


def test_train_refuses_an_unknown_weighting(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path),
                "--dataset",
                "PET-MRI",
                "--out",
                str(tmp_path / "o"),
                "--weighting",
                "paper",
            ]
        )
        == 2
    )
    assert "unknown weighting" in capsys.readouterr().err


def test_weighting_takes_the_papers_names_or_three_weights():
    from napari_lightfusion.losses import WEIGHTINGS, LossWeights
    from napari_lightfusion.research.cli import loss_weights

    assert loss_weights("table5") == WEIGHTINGS["table5"]
    assert loss_weights("20/150/50") == LossWeights(20.0, 150.0, 50.0)
    for bad in ("20/150", "a/b/c", "20/-1/50"):
        with pytest.raises(ValueError, match="unknown weighting"):
            loss_weights(bad)


def test_evaluate_on_a_wrong_root_is_one_line(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lightfusion-research evaluate: error:") and "\n" not in err
    assert not (tmp_path / "r.md").exists()


@pytest.fixture
def small_root(tmp_path):
    """A data root with two noisy phantom PET-MRI test pairs, 48 x 48."""
    root = tmp_path / "harvard"
    rng = np.random.default_rng(0)
    for name in ("1.png", "2.png"):
        for modality in ("MRI", "PET"):
            folder = root / "test" / "PET-MRI" / modality
            folder.mkdir(parents=True, exist_ok=True)
            image = phantom_pet(48) if modality == "PET" else np.round(255 * phantom_mri(48)).astype(np.uint8)
            image = np.clip(image.astype(int) + rng.integers(0, 8, image.shape), 0, 255).astype(np.uint8)
            imsave(folder / name, image, check_contrast=False)
    return root


def test_evaluate_writes_results_for_a_small_test_set(small_root, tmp_path):
    root = small_root
    out = tmp_path / "docs" / "results.md"
    assert main(["evaluate", "--data", str(root), "--out", str(out), "--datasets", "PET-MRI", "--limit", "2"]) == 0
    text = out.read_text()
    assert f"--out {out} --datasets PET-MRI --limit 2`" in text  # the command that made it, as run
    assert "LightFusionNet" in text and "Qabf" in text and "laplacian" in text.lower()
    assert (out.parent / "contact_PET-MRI.png").is_file()


def test_bench_prints_a_table_of_the_fast_path_against_eager_pytorch(capsys):
    assert main(["bench", "--sizes", "64", "--stack", "none", "--big", "none", "--repeats", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(line for line in lines if line.startswith("| case |"))
    columns = [cell.strip() for cell in head.split("|")[1:-1]]
    row = next(line for line in lines if line.startswith("| 64x64"))
    cells = dict(zip(columns, (cell.strip() for cell in row.split("|")[1:-1])))
    assert float(cells["network ms"]) > 0 and float(cells["eager ms"]) > 0


def test_score_refuses_a_missing_weight_file(tmp_path, capsys):
    assert main(["score", str(tmp_path / "none.pt"), "--data", str(tmp_path), "--dataset", "PET-MRI"]) == 2
    assert "none.pt" in capsys.readouterr().err


def _score(root, *options) -> int:
    """``lightfusion-research score`` of the bundled PET-MRI weights on the PET-MRI pairs of ``root``."""
    from napari_lightfusion.weights import preset_path

    return main(["score", str(preset_path("PET-MRI")), "--data", str(root), "--dataset", "PET-MRI", *options])


def test_score_prints_one_row_per_weight_file_and_baseline(small_root, capsys):
    assert _score(small_root, "--baselines") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["average", "max", "laplacian", "alpha", "weights/PET-MRI"]


def test_score_gives_a_conditioned_network_one_row_per_balance(small_root, capsys):
    assert _score(small_root, "--balance", "0,1") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split("|")[1].strip() for r in rows] == ["weights/PET-MRI b=0", "weights/PET-MRI b=1"]
    assert rows[0].split("|")[2:] != rows[1].split("|")[2:]  # b changes the scores


def test_score_on_the_validation_pairs_reads_only_those_of_train(small_root, capsys):
    """``--split validation`` scores the pairs carved out of train/ (never test/): runs are chosen on them."""
    import shutil

    from napari_lightfusion.pair_data import is_validation

    names = [f"{k}.png" for k in range(100)]
    held_out = next(n for n in names if is_validation(n))
    trained_on = next(n for n in names if not is_validation(n))
    for modality in ("MRI", "PET"):
        folder = small_root / "train" / "PET-MRI" / modality
        folder.mkdir(parents=True)
        for name in (held_out, trained_on):
            shutil.copy(small_root / "test" / "PET-MRI" / modality / "1.png", folder / name)
    shutil.rmtree(small_root / "test")
    assert _score(small_root, "--split", "validation") == 0
    assert "1 PET-MRI validation pairs." in capsys.readouterr().out


def test_bench_train_times_the_step_in_both_layouts_and_the_ssim_term_both_ways(harvard_root, capsys):
    assert main(["bench-train", "--data", str(harvard_root), "--steps", "2", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in lines[4:])}
    assert set(rows) == {
        "step, channels-last (as trained)",
        "step, contiguous",
        "SSIM term, separable (as trained)",
        "SSIM term, 2D window",
    }
    assert all(float(ms) > 0 and float(ratio) > 0 for ms, ratio in rows.values())
    assert "CT-MRI" in lines[0] and "CPUs" in lines[0]
