"""The plugin works as a built wheel, not only as an editable checkout.

The manifest and the weights live in the package (the top-level
``napari.yaml`` and ``resources`` only link to them); they must end up inside
the wheel (and load from it alone) and be found by npe2 from the editable
install. A clone without links is tested in ``test_clone.py``.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from napari_lightfusion.weights import PRESETS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (ROOT / "pyproject.toml").exists(), reason="needs the source tree (pyproject.toml)"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("wheel")
    # copy the tree so the build never writes into the checkout
    src = out / "src-tree"
    shutil.copytree(
        ROOT, src, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "runs", "docs", "*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(src)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("napari_lightfusion-*.whl")
    return path


def test_wheel_holds_manifest_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_lightfusion/napari.yaml" in names
    for preset in PRESETS:
        assert f"napari_lightfusion/resources/weights/{preset}.pt" in names
        assert f"napari_lightfusion/resources/weights/{preset}.json" in names
    entry = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    ).decode()
    assert "napari.manifest" in entry and "napari_lightfusion:napari.yaml" in entry


def test_plugin_and_weights_load_from_the_unpacked_wheel_alone(wheel, tmp_path):
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    script = f"""
import sys
sys.path.insert(0, {str(unpacked)!r})
import napari_lightfusion
from pathlib import Path
assert Path(napari_lightfusion.__file__).is_relative_to({str(unpacked)!r}), napari_lightfusion.__file__
from npe2 import PluginManifest
manifest = PluginManifest.from_file(Path(napari_lightfusion.__file__).parent / "napari.yaml")
assert manifest.name == "napari-lightfusion"
from napari_lightfusion.weights import load_model, preset_path
path = preset_path("PET-MRI")
assert path.is_relative_to({str(unpacked)!r}), path
load_model(path)
print("ok", len(manifest.contributions.widgets))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_npe2_validates_the_installed_plugin():
    done = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-lightfusion"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
