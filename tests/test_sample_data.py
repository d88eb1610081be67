"""The offline sample data, the icon and the napari manifest (no Qt, no network)."""

from __future__ import annotations

import socket
from importlib.resources import files

import numpy as np
import pytest
from skimage.io import imread

from napari_lightfusion import _sample_data as sd
from napari_lightfusion import plan_fusion


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the samples must be offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("sample data tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_pair_is_a_grey_phantom_and_a_colour_pet():
    (mri, mri_kw, mri_type), (pet, pet_kw, pet_type) = sd.make_sample_pair()
    assert mri_type == pet_type == "image"
    assert mri.shape == (256, 256) and mri.dtype == np.uint8
    assert mri.min() == 0 and mri.max() == 255 and len(np.unique(mri)) > 5
    assert pet.shape == (256, 256, 3) and pet.dtype == np.uint8 and pet_kw["rgb"] is True
    assert pet[..., 0].max() == 255 and pet[0, 0].tolist() == [0, 0, 0]
    # hot spots are smooth: neighbouring pixels differ little
    assert np.abs(np.diff(pet[..., 0].astype(int), axis=1)).max() < 64
    assert mri_kw["name"] != pet_kw["name"]


def test_stack_has_sixteen_slices_that_change():
    (mri, _, _), (pet, pet_kw, _) = sd.make_sample_stack()
    assert mri.shape == (16, 128, 128) and mri.dtype == np.uint8
    assert pet.shape == (16, 128, 128, 3) and pet.dtype == np.uint8 and pet_kw["rgb"]
    assert mri[0].sum() < mri[8].sum()  # the head is smaller at the ends of the stack
    assert not np.array_equal(pet[3], pet[8])


def test_hot_colormap_is_a_black_to_white_ramp():
    rgb = sd.hot_colormap(np.array([0.0, 0.5, 1.0, 2.0, -1.0]))
    assert rgb[0].tolist() == [0, 0, 0] and rgb[2].tolist() == [255, 255, 255]
    assert rgb[3].tolist() == [255, 255, 255] and rgb[4].tolist() == [0, 0, 0]
    assert rgb[1, 0] > rgb[1, 2]  # the middle is warm


def test_samples_are_valid_fusion_inputs():
    (mri, _, _), (pet, _, _) = sd.make_sample_pair()
    plan = plan_fusion(mri, pet, "PET-MRI")
    assert len(plan) == 1 and plan.pair.colour is not None


def test_manifest_names_the_widget_samples_and_icon():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-lightfusion")
    assert manifest.name == "napari-lightfusion" and manifest.display_name == "LightFusion"
    assert [w.display_name for w in manifest.contributions.widgets] == ["LightFusion"]
    assert {s.key for s in manifest.contributions.sample_data} == {"phantom_pair", "phantom_stack", "microscopy_pair"}
    package, resource = manifest.icon.split(":")
    icon = imread(str(files(package) / resource))
    assert icon.shape[:2] == (256, 256) and icon[..., :3].std() > 20


def test_microscopy_sample_is_phase_contrast_and_gfp_of_the_same_cells():
    (phase, phase_kw, _), (gfp, gfp_kw, _) = sd.make_sample_microscopy()
    assert "phase" in phase_kw["name"].lower() and "GFP" in gfp_kw["name"]
    assert phase.shape == gfp.shape == (384, 384) and phase.dtype == gfp.dtype == np.uint16
    cells, _ = sd._cells(64, np.random.default_rng(0), 3)
    assert cells.max() == 3  # three separate cells were drawn
    # GFP is bright where the cells are; in phase contrast they are darker than the background,
    # with a bright halo just outside them
    bright = gfp > np.percentile(gfp, 90)
    dark = gfp < np.percentile(gfp, 30)
    assert phase[bright].mean() < 0.8 * phase[dark].mean()
    assert np.percentile(phase, 99.5) > 1.2 * np.median(phase)
    # camera-like: shot noise in the GFP background, no saturated or empty frame
    assert gfp[dark].std() > 3 and phase.max() < 4095 and gfp.min() > 0
    assert np.array_equal(sd.microscopy_pair(64)[1], sd.microscopy_pair(64)[1])  # seeded


def test_microscopy_sample_fuses():
    phase, gfp = sd.microscopy_pair(96)
    plan = plan_fusion(phase, gfp, "PET-MRI")
    assert plan.pair.colour is None and plan.pair.anatomical.max() == 1.0


def test_the_sample_pet_is_shown_over_the_mri_not_hiding_it():
    for sample in (sd.make_sample_pair(), sd.make_sample_stack()):
        (_, mri, _), (_, pet, _) = sample
        assert pet["blending"] == "additive" and pet["opacity"] < 1.0 and "blending" not in mri
