"""Fine-tuning trains the output head of the target pair's preset when it mixes the sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lightfusion.finetune_choice import fitted_head, with_output
from napari_lightfusion.weights import model_for


def _pair(seed=0, size=40):
    a, b = np.random.default_rng(seed).random((2, size, size), dtype=np.float32)
    return torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]


@pytest.mark.parametrize(
    ("base", "target", "head"),
    [
        ("SPECT-MRI", "CT-MRI", "blend"),  # intensity -> blend
        ("PET-MRI", "CT-MRI", None),  # a mix head holds a blend: kept
        ("SPECT-MRI", "PET-MRI", "mix"),  # intensity -> mix
        ("CT-MRI", "PET-MRI", "mix"),  # blend -> mix
        ("CT-MRI", "SPECT-MRI", None),  # an intensity target keeps the base's head
        ("CT-MRI", "CT-MRI", None),
    ],
)
def test_the_head_follows_the_target_preset_when_it_mixes(base, target, head):
    got, note = fitted_head(model_for(base), target)
    assert got == head
    assert (note == "") == (head is None) and (head is None or f"as the {target} preset's, not the base's" in note)


def test_a_blend_head_becomes_a_mix_head_that_fuses_the_same_image():
    blend = model_for("CT-MRI")
    mix = with_output(blend, "mix")
    assert mix.config.output == "mix" and blend.config.output == "blend"  # the shared model is not changed
    a, b = _pair()
    with torch.inference_mode():
        torch.testing.assert_close(mix(a, b), blend(a, b), atol=1e-6, rtol=0)


def test_a_mix_head_keeps_its_blend_weight_as_a_blend_head():
    mix = model_for("PET-MRI")
    blend = with_output(mix, "blend")
    a, b = _pair(1)
    with torch.inference_mode():
        _, mixed = mix(a, b, return_maps=True)
        _, blended = blend(a, b, return_maps=True)
    torch.testing.assert_close(blended["weight"], mixed["weight"], atol=1e-6, rtol=0)


def test_an_intensity_base_starts_a_mixing_head_at_the_even_mixture():
    blend = with_output(model_for("SPECT-MRI"), "blend")
    a, b = _pair(2)
    with torch.inference_mode():
        torch.testing.assert_close(blend(a, b), (a + b) / 2, atol=1e-6, rtol=0)
    for name, tensor in model_for("SPECT-MRI").state_dict().items():  # every other weight is the base's
        if not name.startswith("decoder.2."):
            torch.testing.assert_close(blend.state_dict()[name], tensor)
