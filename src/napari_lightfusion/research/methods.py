"""Fusion methods as the evaluation sees them: ``method(mri, other) -> fused``.

Each test pair is read with :func:`napari_lightfusion.pair_data.load_pairs`:
the anatomical MRI as a grey ``(H, W)`` float image in [0, 1] and the other
image (CT grey, PET/SPECT RGB) as given. A *method* is any callable
``method(mri, other) -> fused`` returning a float image in [0, 1], grey or
RGB; the network is ``fuse(mri, other, preset=...).fused`` and a baseline
``fuse_baseline(name, mri, other)``, so both see exactly the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from ..baselines import BASELINES, fuse_baseline
from .tables import LIGHTFUSIONNET

#: A fusion method: ``method(mri, other) -> fused`` float image in [0, 1].
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def network_method(
    preset: str | None = None, weights: Path | None = None, device: str = "cpu", balance: float | None = None
) -> Method:
    """The network as a method: ``fuse(mri, other, preset=..., weights=..., balance=...).fused``."""
    from ..fusion import fuse

    def method(mri: np.ndarray, other: np.ndarray) -> np.ndarray:
        return fuse(mri, other, preset=preset, device=device, weights=weights, balance=balance, maps=False).fused

    method.__name__ = f"lightfusionnet_{preset or Path(weights).stem}"
    return method


def baseline_method(name: str) -> Method:
    """A classical method as a method: ``fuse_baseline(name, mri, other)``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")

    def method(mri: np.ndarray, other: np.ndarray) -> np.ndarray:
        return fuse_baseline(name, mri, other)

    method.__name__ = f"baseline_{name}"
    return method


def default_methods(dataset: str, device: str = "cpu") -> dict[str, Method]:
    """The four baselines and the bundled preset for ``dataset``, in Table 1 order."""
    methods: dict[str, Method] = {name: baseline_method(name) for name in BASELINES}
    methods[LIGHTFUSIONNET] = network_method(preset=dataset, device=device)
    return methods


def resolve_methods(methods: Mapping[str, Method] | Iterable[str] | None, dataset: str) -> dict[str, Method]:
    """Table name -> method from a mapping, from names among :func:`default_methods`, or ``None`` (all of them)."""
    if methods is None:
        return default_methods(dataset)
    if isinstance(methods, Mapping):
        return dict(methods)
    defaults = default_methods(dataset)
    resolved = {}
    for name in methods:
        if name not in defaults:
            raise ValueError(f"unknown method {name!r}; give a callable or one of {', '.join(defaults)}")
        resolved[name] = defaults[name]
    return resolved
