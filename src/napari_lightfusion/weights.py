"""Weight files: the bundled and the user's presets, saving with a sidecar, checked loading.

A weight file ``NAME.pt`` (a torch state dict) always travels with
``NAME.json``, its sidecar: the model configuration, how it was trained and
the sha256 of the weight file. Loading refuses a file whose hash differs
(truncated, altered, or not the file the sidecar describes) and a file for
another architecture, each with one line that names the file.

Presets are named weight files. The bundled ones live in
``resources/weights``; *custom* presets (made by ``lightfusion finetune
--save-as`` or the widget's fine-tuning section) live in the user's data
folder (:func:`presets_dir`), with the same sidecar and the same check.
Wherever a preset is asked for, a bundled name, a custom name or the path of
a weight file will do (:func:`preset_path`).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import torch

from .messages import first_line
from .model import LightFusionNet, ModelConfig

#: Presets bundled in ``resources/weights``; each was trained on that dataset.
PRESETS = ("CT-MRI", "PET-MRI", "SPECT-MRI")

#: Environment variable that moves the custom presets folder (tests, shared installs).
PRESETS_DIR_ENV = "LIGHTFUSION_PRESETS_DIR"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$")


class WeightError(ValueError):
    """A weight file that cannot be used; the message is one line naming it."""


@lru_cache(maxsize=1)
def resources_dir() -> Path:
    """The ``resources/`` folder inside the package (the top-level ``resources`` links here).

    Found once: ``importlib.resources`` takes a tenth of a millisecond, and
    every fusion asks (through :func:`preset_path`).
    """
    return Path(str(files("napari_lightfusion") / "resources"))


def presets_dir() -> Path:
    """Folder of the custom presets: ``$LIGHTFUSION_PRESETS_DIR``, else the user's data folder.

    The user's data folder is ``platformdirs.user_data_dir("napari-lightfusion")/presets``
    (``~/.local/share/...`` on Linux, ``~/Library/Application Support/...`` on
    macOS, ``%LOCALAPPDATA%\\...`` on Windows). It is not created here.
    """
    override = os.environ.get(PRESETS_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-lightfusion")) / "presets"


def custom_presets() -> dict[str, Path]:
    """The user's presets, name -> weight file, sorted by name (those with a sidecar)."""
    folder = presets_dir()
    if not folder.is_dir():
        return {}
    found = {p.stem: p for p in folder.glob("*.pt") if p.with_suffix(".json").is_file() and p.stem not in PRESETS}
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def all_presets() -> list[str]:
    """Every preset name: the bundled ones first, then the custom ones."""
    return [*PRESETS, *custom_presets()]


def preset_path(preset: str | os.PathLike) -> Path:
    """The weight file of a bundled preset, a custom preset, or a weight file's path.

    Raises :class:`WeightError` (one line listing the presets) for a name that
    is none of these.
    """
    if preset is None:
        raise WeightError(f"no preset given; choose one of {', '.join(all_presets())} or a weight file")
    if isinstance(preset, str) and preset in PRESETS:
        return resources_dir() / "weights" / f"{preset}.pt"
    custom = custom_presets()
    if isinstance(preset, str) and preset in custom:
        return custom[preset]
    path = Path(preset).expanduser()
    if path.suffix == ".pt" and path.is_file():
        return path
    if path.suffix == ".pt" or os.sep in str(preset) or "/" in str(preset):
        raise WeightError(f"weight file {path} is missing")
    raise WeightError(
        f"unknown preset {str(preset)!r}; choose one of {', '.join(all_presets())} or a weight file (.pt)"
    )


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_weights(model: LightFusionNet, path: Path, sidecar: dict) -> dict:
    """Write ``path`` (state dict) and ``path.with_suffix('.json')``; return the sidecar."""
    path = Path(path)
    torch.save(model.state_dict(), path)
    sidecar = {**sidecar, "model": model.config.to_dict(), "sha256": sha256(path)}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def save_weights_atomic(model: LightFusionNet, path: Path, sidecar: dict) -> dict:
    """:func:`save_weights`, but through temporary files renamed at the end.

    A failure (disk full, interrupted) leaves no partial ``path`` behind and
    an earlier file of that name untouched.
    """
    path = Path(path)
    temp = path.with_name(f".{path.stem}.partial-{os.getpid()}.pt")
    try:
        sidecar = save_weights(model, temp, sidecar)
        os.replace(temp, path)
        os.replace(temp.with_suffix(".json"), path.with_suffix(".json"))
    finally:
        for leftover in (temp, temp.with_suffix(".json")):
            leftover.unlink(missing_ok=True)
    return sidecar


def read_sidecar(path: Path) -> dict:
    """The sidecar of weight file ``path``, with a one-line error if unusable."""
    side = Path(path).with_suffix(".json")
    try:
        return json.loads(side.read_text())
    except FileNotFoundError:
        raise WeightError(f"weight sidecar {side} is missing") from None
    except (OSError, ValueError) as exc:
        raise WeightError(f"weight sidecar {side} cannot be read: {exc}") from None


def load_model(path: Path) -> LightFusionNet:
    """Build the network a weight file describes and load it, checking its sha256."""
    path = Path(path)
    if not path.is_file():
        raise WeightError(f"weight file {path} is missing")
    sidecar = read_sidecar(path)
    if sha256(path) != sidecar.get("sha256"):
        raise WeightError(f"weight file {path} does not match the sha256 in its sidecar (truncated or altered)")
    try:
        model = LightFusionNet(ModelConfig(**sidecar["model"]))
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (pickle.UnpicklingError, EOFError):
        raise WeightError(f"{path} is not a LightFusion weight file (torch cannot read it)") from None
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise WeightError(f"weight file {path} does not fit LightFusionNet: {first_line(exc)}") from None
    return model.eval()


def check_preset_name(name: str) -> str:
    """``name`` stripped, or a one-line WeightError if it cannot name a custom preset."""
    name = str(name).strip()
    if name in PRESETS:
        raise WeightError(f"{name!r} is a bundled preset; choose another name")
    if not _NAME.match(name):
        raise WeightError(
            f"preset name {name!r} must start with a letter or digit and hold at most 64 letters, "
            "digits, spaces or . _ + -"
        )
    return name


def save_custom_preset(
    name: str,
    weights: Path | None = None,
    *,
    model: LightFusionNet | None = None,
    sidecar: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Store weights as the custom preset ``name``; return its weight file.

    Give either ``weights``, a weight file with its sidecar (checked as on
    load, then copied), or ``model`` and the ``sidecar`` to write with it.
    The sidecar gains ``"preset": name``. An existing custom preset of that
    name is replaced only with ``overwrite=True``; a bundled name is refused.
    """
    name = check_preset_name(name)
    if (weights is None) == (model is None):
        raise ValueError("give either a weight file or a model to save as a preset")
    folder = presets_dir()
    target = folder / f"{name}.pt"
    if target.exists() and not overwrite:
        raise WeightError(f"a custom preset named {name!r} exists already; remove it or choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        model = load_model(Path(weights))  # refuses altered or foreign files before anything is copied
        sidecar = {**read_sidecar(Path(weights)), "copied_from": str(Path(weights).resolve())}
    sidecar = {key: value for key, value in (sidecar or {}).items() if key not in ("model", "sha256")}
    save_weights_atomic(model, target, {**sidecar, "preset": name})
    return target


def remove_custom_preset(name: str) -> None:
    """Delete the custom preset ``name`` (weight file and sidecar); bundled presets stay."""
    if name in PRESETS:
        raise WeightError(f"{name!r} is a bundled preset and cannot be removed")
    path = custom_presets().get(name)
    if path is None:
        raise WeightError(f"no custom preset named {name!r} (custom presets: {', '.join(custom_presets()) or 'none'})")
    path.unlink(missing_ok=True)
    path.with_suffix(".json").unlink(missing_ok=True)


def provenance(path: Path) -> str:
    """One line saying how a weight file was made, from its sidecar (and whether it still matches it)."""
    try:
        side = read_sidecar(path)
    except WeightError as exc:
        return str(exc)
    tune = side.get("finetune")
    if tune:
        pairs = side.get("pairs")
        where = f" on {len(pairs)} pair{'s' * (len(pairs) != 1)}" if pairs else ""
        text = f"fine-tuned from {tune.get('base')}, {tune.get('steps_taken')} steps{where}"
        before, after = (side.get("validation") or {}).get("before"), (side.get("validation") or {}).get("after")
        if before and after and before.get("Qabf") is not None and after.get("Qabf") is not None:
            text += f", validation Qabf {before['Qabf']:.3f} -> {after['Qabf']:.3f}"
    else:
        train = side.get("train") or {}
        text = f"trained on {side.get('dataset') or 'unknown data'}"
        text += f", {train['epochs']} epochs" if train.get("epochs") else ""
        if train.get("init"):  # the file's name alone may be the preset's own (a preset trained further)
            start = side.get("init_sha256")
            text += f", started from {Path(str(train['init'])).name}" + (f" (sha256 {start[:12]})" if start else "")
    balance = (side.get("model") or {}).get("balance")
    if balance is not None:
        text += f"; balance-conditioned (default b {balance})"
    if not Path(path).is_file() or sha256(path) != side.get("sha256"):
        text += " (DOES NOT MATCH its sidecar: will be refused)"
    return text


def describe_presets() -> str:
    """A plain-text table of every preset: name, bundled or custom, provenance, file."""
    rows = [(name, "bundled", preset_path(name)) for name in PRESETS]
    rows += [(name, "custom", path) for name, path in custom_presets().items()]
    width = max(len(name) for name, _, _ in rows)
    return "\n".join(f"{name:<{width}}  {kind:<7}  {provenance(path)}  [{path}]" for name, kind, path in rows)


@lru_cache(maxsize=8)
def _cached_model(path: str, mtimes_ns: tuple[int, int]) -> LightFusionNet:
    """The network of ``path``, loaded again when the weight file or its sidecar changes."""
    return load_model(Path(path))


def model_for(preset: str | None = None, weights: Path | None = None) -> LightFusionNet:
    """The network for a preset (bundled or custom name, or weight-file path) or ``weights``.

    Loaded once and reused: do not train the returned model (it is shared
    between callers; copy it first). Neither a preset nor weights is a
    :class:`WeightError`, not a silent default.
    """
    path = Path(weights) if weights is not None else preset_path(preset)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise WeightError(f"weight file {path} is missing") from None
    try:
        side = path.with_suffix(".json").stat().st_mtime_ns
    except OSError:
        side = 0  # load_model says what is wrong
    return _cached_model(str(path), (mtime, side))
