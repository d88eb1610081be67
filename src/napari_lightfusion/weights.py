"""Weight files: the bundled presets, saving with a sidecar, checked loading.

A weight file ``NAME.pt`` (a torch state dict) always travels with
``NAME.json``, its sidecar: the model configuration, how it was trained and
the sha256 of the weight file. Loading refuses a file whose hash differs
(truncated, altered, or not the file the sidecar describes) and a file for
another architecture, each with one line that names the file.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import torch

from .model import LightFusionNet, ModelConfig

#: Presets bundled in ``resources/weights``; each was trained on that dataset.
PRESETS = ("CT-MRI", "PET-MRI", "SPECT-MRI")


class WeightError(ValueError):
    """A weight file that cannot be used; the message is one line naming it."""


def resources_dir() -> Path:
    """The ``resources/`` folder inside the package (the top-level ``resources`` links here)."""
    return Path(str(files("napari_lightfusion") / "resources"))


def preset_path(preset: str) -> Path:
    """Path of a bundled preset's weight file, or a clear error for an unknown name."""
    if preset not in PRESETS:
        raise WeightError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return resources_dir() / "weights" / f"{preset}.pt"


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
        raise WeightError(
            f"weight file {path} does not match the sha256 in its sidecar "
            "(truncated or altered)"
        )
    try:
        model = LightFusionNet(ModelConfig(**sidecar["model"]))
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightError(f"weight file {path} does not fit LightFusionNet: {first}") from None
    return model.eval()


@lru_cache(maxsize=8)
def _cached_model(path: str, mtime_ns: int) -> LightFusionNet:
    return load_model(Path(path))


def model_for(preset: str | None = None, weights: Path | None = None) -> LightFusionNet:
    """The network for a bundled preset or a weight file, loaded once and reused.

    Do not train the returned model: it is shared between callers.
    """
    path = Path(weights) if weights is not None else preset_path(preset or "PET-MRI")
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise WeightError(f"weight file {path} is missing") from None
    return _cached_model(str(path), mtime)
