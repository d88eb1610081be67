"""Fine-tuning trains the output head of the target pair's preset when it mixes the sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lightfusion.finetune_choice import fitted_head, with_output
from napari_lightfusion.model import LightFusionNet, ModelConfig
from napari_lightfusion.weights import model_for


def _intensity_network():
    """A conditioned network with the paper's intensity head (no bundled preset has one since 2026-12-05)."""
    torch.manual_seed(0)
    return LightFusionNet(ModelConfig(output="intensity", balance=0.0)).eval()


def _base(name):
    return _intensity_network() if name == "intensity" else model_for(name)


def _pair(seed=0, size=40):
    a, b = np.random.default_rng(seed).random((2, size, size), dtype=np.float32)
    return torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]


@pytest.mark.parametrize(
    ("base", "target", "head"),
    [
        ("intensity", "CT-MRI", "blend"),  # intensity -> blend
        ("PET-MRI", "CT-MRI", "blend"),  # mix -> blend: the gain would trade grey levels for edges
        ("SPECT-MRI", "CT-MRI", "blend"),
        ("intensity", "PET-MRI", "mix"),  # intensity -> mix
        ("intensity", "SPECT-MRI", "mix"),
        ("CT-MRI", "PET-MRI", None),  # a blend head is kept
        ("CT-MRI", "SPECT-MRI", None),
        ("CT-MRI", "CT-MRI", None),
    ],
)
def test_the_head_follows_the_target_preset_when_it_mixes(base, target, head):
    got, note = fitted_head(_base(base), target)
    assert got == head
    assert (note == "") == (head is None) and (head is None or f"as the {target} preset's, not the base's" in note)


@pytest.mark.parametrize(("base", "output"), [("intensity", "blend"), ("intensity", "mix"), ("PET-MRI", "blend")])
def test_a_new_mixing_head_starts_at_the_even_mixture(base, output):
    base = _base(base)
    own = base.config.output
    blend = with_output(base, output)
    assert blend.config.output == output and base.config.output == own
    a, b = _pair(2)
    with torch.inference_mode():
        torch.testing.assert_close(blend(a, b), (a + b) / 2, atol=1e-6, rtol=0)
    for name, tensor in base.state_dict().items():  # every other weight is the base's
        if not name.startswith("decoder.2."):
            torch.testing.assert_close(blend.state_dict()[name], tensor)


def test_only_a_mixing_head_can_be_asked_for():
    with pytest.raises(ValueError, match="not a mixing head"):
        with_output(model_for("CT-MRI"), "intensity")
