"""Shared fixtures of the widget tests: small synthetic images and a docked widget."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from napari_lightfusion._sample_data import phantom_mri, phantom_pet, phantom_stack

#: Longest a test waits for the widget to go idle, milliseconds.
WAIT_MS = 60_000


@pytest.fixture
def grey_pair():
    """A grey MRI-like image and a grey functional-like image, 64 x 64."""
    mri = phantom_mri(64)
    func = (phantom_pet(64).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) * 4.0
    return mri, func.astype(np.float32)


@pytest.fixture
def colour_pair():
    """The sample MRI-like grey image and PET-like RGB uint8 image, 64 x 64."""
    return phantom_mri(64), phantom_pet(64)


@pytest.fixture
def stack_pair():
    """A grey stack (5, 48, 48) and an RGB stack (5, 48, 48, 3)."""
    return phantom_stack(slices=5, size=48)


def fingerprint(layer) -> tuple:
    """What must never change on an input layer: data hash, contrast limits, visibility."""
    data = np.ascontiguousarray(layer.data)
    return (hashlib.sha256(data.tobytes()).hexdigest(), data.shape, tuple(layer.contrast_limits),
            layer.visible, layer.opacity)


def outputs(viewer) -> list:
    """The layers the plugin wrote."""
    from napari_lightfusion._qt.layer_io import MARK

    return [ly for ly in viewer.layers if MARK in ly.metadata]


def wait_idle(qtbot, widget, timeout: int = WAIT_MS) -> None:
    """Wait (processing Qt events) until the widget runs, awaits and schedules nothing."""
    qtbot.waitUntil(lambda: not widget.busy(), timeout=timeout)


@pytest.fixture
def lightfusion(make_napari_viewer, qtbot):
    """A viewer with the LightFusion widget docked; waits for its jobs at the end."""
    from napari_lightfusion._qt.widget import LightFusionWidget

    viewer = make_napari_viewer()
    widget = LightFusionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="LightFusion")
    yield viewer, widget
    widget.cancel()
    wait_idle(qtbot, widget)
