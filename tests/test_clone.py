"""A clone without symbolic links installs editable, passes ``npe2 validate`` and fuses.

``git -c core.symlinks=false clone`` (what Windows without developer mode
does) turns the top-level ``napari.yaml`` and ``resources`` links into small
text files. The runtime must not need them: the real files live in the
package. The clone is installed editable into a fresh virtual environment
that sees this environment's libraries through a ``.pth`` line (so nothing
is downloaded), and everything runs from the clone's ``src``. Clones the
last commit (uncommitted edits are not in it). About 20-40 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread, imsave

from napari_lightfusion._sample_data import phantom_mri, phantom_pet

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs a git checkout of the project"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def clone_install(tmp_path_factory):
    """(clone folder, python of a venv where the clone is installed editable, its bin folder)."""
    base = tmp_path_factory.mktemp("clone")
    clone = base / "napari-lightfusion"
    _run(["git", "-c", "core.symlinks=false", "clone", "-q", "--no-hardlinks", ROOT, clone])
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # this environment's libraries (torch, napari, pip, hatchling...), as plain paths: the .pth files
    # there (among them the editable hook of this checkout) are not processed
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_project_libraries.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", clone])
    return clone, python, bin_dir


def test_the_clone_has_no_links(clone_install):
    clone, _, _ = clone_install
    for name in ("napari.yaml", "resources"):
        entry = clone / name
        assert not entry.is_symlink() and entry.is_file(), name  # the link became a text file naming its target
        assert entry.read_text().strip().startswith("src/napari_lightfusion/")
    assert (clone / "src" / "napari_lightfusion" / "napari.yaml").is_file()


def test_the_clone_is_what_imports(clone_install):
    clone, python, _ = clone_install
    code = (
        "import napari_lightfusion, importlib.metadata as md; from napari_lightfusion.weights import preset_path; "
        "print(napari_lightfusion.__file__); print(preset_path('PET-MRI')); print(md.version('napari-lightfusion'))"
    )
    lines = _run([python, "-c", code], cwd=clone.parent).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(clone / "src"), lines[0]
    assert Path(lines[1]).is_relative_to(clone / "src"), lines[1]


def test_npe2_validates_the_clone(clone_install):
    clone, python, _ = clone_install
    done = _run([python, "-m", "npe2", "validate", "napari-lightfusion", "--imports"], cwd=clone.parent)
    assert "valid" in (done.stdout + done.stderr).lower()


def test_the_clone_fuses(clone_install, tmp_path):
    clone, _, bin_dir = clone_install
    mri, pet, out = tmp_path / "mri.png", tmp_path / "pet.png", tmp_path / "fused.png"
    imsave(mri, np.round(phantom_mri(48) * 255).astype(np.uint8), check_contrast=False)
    imsave(pet, phantom_pet(48), check_contrast=False)
    script = bin_dir / ("lightfusion.exe" if os.name == "nt" else "lightfusion")
    _run([script, "fuse", mri, pet, "--out", out, "--device", "cpu", "--preset", "SPECT-MRI"], cwd=tmp_path)
    fused = imread(out)
    assert fused.shape == (48, 48, 3) and fused.max() > 0
    assert sys.executable != str(bin_dir / "python")
