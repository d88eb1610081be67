"""The plugin works as a built wheel, not only as an editable checkout.

The manifest and the weights live in the package (the top-level
``napari.yaml`` and ``resources`` only link to them); they must end up inside
the wheel (and load from it alone) and be found by npe2 from the editable
install. A clone without links is tested in ``test_clone.py``.
"""

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from napari_lightfusion.weights import PRESETS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree (pyproject.toml)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("wheel")
    # copy the tree so the build never writes into the checkout
    src = out / "src-tree"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "runs", "docs", "*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (path,) = out.glob("napari_lightfusion-*.whl")
    return path


def test_wheel_holds_manifest_and_weights(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_lightfusion/napari.yaml" in names
    for preset in PRESETS:
        assert f"napari_lightfusion/resources/weights/{preset}.pt" in names
        assert f"napari_lightfusion/resources/weights/{preset}.json" in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "napari.manifest" in entry and "napari_lightfusion:napari.yaml" in entry
    scripts = entry.split("[console_scripts]")[1].split("[")[0]
    assert "lightfusion = napari_lightfusion.cli:main" in scripts  # the user commands
    assert "lightfusion-research = napari_lightfusion.research.cli:main" in scripts  # the research tools


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
        [sys.executable, "-m", "npe2", "validate", "napari-lightfusion"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _wheel_metadata(wheel) -> str:
    archive = zipfile.ZipFile(wheel)
    return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()


def test_wheel_metadata_has_one_version_the_licence_and_the_urls(wheel):
    import napari_lightfusion

    metadata = _wheel_metadata(wheel)
    assert f"Version: {napari_lightfusion.__version__}\n" in metadata  # the one place the version is written
    assert "License-Expression: BSD-3-Clause" in metadata
    for label in ("Homepage", "Source", "Issues"):
        assert f"Project-URL: {label}, https://github.com/napari-lightfusion/napari-lightfusion" in metadata
    names = zipfile.ZipFile(wheel).namelist()
    licence = next(n for n in names if n.endswith("licenses/LICENSE"))
    assert "BSD 3-Clause License" in zipfile.ZipFile(wheel).read(licence).decode()
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def _declared() -> set[str]:
    """Distribution names in pyproject's dependencies and optional extras (but testing), normalised."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [deps for name, deps in project.get("optional-dependencies", {}).items() if name != "testing"]
    requirements = [*project["dependencies"], *(r for deps in extras for r in deps)]
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``try: ... except ImportError`` (optional imports)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = [h.type for h in node.handlers if h.type is not None]
            names = {n.id for t in caught for n in ast.walk(t) if isinstance(n, ast.Name)}
            if names & {"ImportError", "ModuleNotFoundError"}:
                guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return guarded


def test_every_imported_package_is_declared():
    """Each third-party module ``src`` imports comes from a declared distribution (or is an optional import)."""
    from importlib.metadata import packages_distributions

    providers = packages_distributions()
    declared = _declared()
    missing = {}
    for path in (ROOT / "src" / "napari_lightfusion").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        optional = _guarded(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top == "napari_lightfusion":
                    continue
                dists = {_normalise(d) for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.setdefault(top, set()).add(path.name)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
