"""Role and preset guesses from names and data (issue 9, finding 4)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import dask.array as da
import numpy as np
import pytest
from skimage.io import imread, imsave
from synthetic_heads import as_png, ct_like, mr_like

from napari_lightfusion import modalities, roles
from napari_lightfusion.image_evidence import is_grey_rgb
from napari_lightfusion.modalities import LayerInfo, modality
from napari_lightfusion.roles import guess_preset, guess_roles, preset_warning

rng = np.random.default_rng(0)
GREY = rng.integers(0, 256, (32, 32), dtype=np.uint8)
GREY_RGB = np.repeat(GREY[..., None], 3, axis=-1)
COLOUR = np.stack([GREY, GREY // 2, 255 - GREY], axis=-1)


def info(name, data, path=None):
    return LayerInfo.from_array(name, data, path)


# ---------------------------------------------------------------- data


def test_equal_channels_are_grey_and_unequal_are_colour():
    assert is_grey_rgb(GREY_RGB)
    assert not is_grey_rgb(COLOUR)
    assert not is_grey_rgb(GREY)  # no colour axis: not an RGB image at all
    rgba = np.concatenate([GREY_RGB, np.full((32, 32, 1), 7, np.uint8)], axis=-1)
    assert is_grey_rgb(rgba)  # alpha ignored


def test_small_differences_from_compression_still_count_as_grey():
    noisy = GREY_RGB.astype(np.int16)
    noisy[..., 1] += 1
    assert is_grey_rgb(np.clip(noisy, 0, 255).astype(np.uint8))
    f = GREY_RGB.astype(np.float32) / 255
    f[..., 2] += 0.002
    assert is_grey_rgb(f)
    f[5, 5, 2] += 0.2  # one clearly coloured pixel in the sample
    assert not is_grey_rgb(f)


def test_colour_in_a_later_slice_of_a_stack_is_seen():
    stack = np.repeat(GREY_RGB[None], 5, axis=0)
    assert is_grey_rgb(stack)
    stack = stack.copy()
    stack[-1] = COLOUR
    assert not is_grey_rgb(stack)


def test_lazy_volume_is_sampled_not_loaded():
    read = []

    def block(x, block_info=None):
        read.append(block_info[None]["chunk-location"][0])
        return np.broadcast_to(GREY_RGB[:1, :1], x.shape).copy()

    vol = da.zeros((200, 64, 64, 3), dtype=np.uint8, chunks=(1, 64, 64, 3))
    lazy = vol.map_blocks(block, dtype=np.uint8, meta=np.empty((0, 0, 0, 0), np.uint8))
    assert is_grey_rgb(lazy)
    assert 1 <= len(set(read)) <= 3


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("MRI 23", "MRI"),
        ("mri", "MRI"),
        ("T2_FLAIR", "MRI"),
        ("MRI23", "MRI"),
        ("ct", "CT"),
        ("PET 23", "PET"),
        ("SPECT-7", "SPECT"),
        ("GFP", "fluorescence"),
        ("mCherry", "fluorescence"),
        ("DAPI nuclei", "fluorescence"),
        ("phase", "transmitted light"),
        ("bright field", "transmitted light"),
        ("DIC", "transmitted light"),
    ],
)
def test_layer_names_name_the_modality(name, label):
    assert modality(info(name, GREY)).label == label


@pytest.mark.parametrize("name", ["23", "23 [1]", "CT-MRI", "MRI + PET fused", "spectrum", "petal"])
def test_names_without_one_modality_say_nothing(name):
    assert modality(info(name, GREY)) is None


def test_folder_names_count_and_the_nearest_wins():
    m = modality(info("23", GREY_RGB, "/data/test/PET-MRI/MRI/23.png"))
    assert (m.label, m.source) == ("MRI", "folder name")
    assert modality(info("23", GREY_RGB, "/data/CT/scans/23.png")).label == "CT"  # folder above
    assert modality(info("23", GREY_RGB, "/data/CT-MRI/23.png")) is None  # names two modalities
    assert modality(info("PET", COLOUR, "/data/MRI/23.png")).label == "PET"  # the layer name first


# ---------------------------------------------------------------- roles


def test_names_assign_roles_whatever_the_order():
    ct, mri = info("CT", GREY), info("MRI", GREY)
    assert guess_roles([ct, mri]) == (mri, ct)
    pet = info("PET", COLOUR)
    assert guess_roles([pet, ct]) == (ct, pet)  # PET-CT: CT is the anatomy
    gfp, phase = info("GFP", GREY), info("phase", GREY)
    assert guess_roles([gfp, phase]) == (phase, gfp)
    t2, fl = info("T2", GREY), info("fluorescence", COLOUR)
    assert guess_roles([fl, t2]) == (t2, fl)


def test_without_names_grey_is_anatomical_and_equal_channel_rgb_counts_as_grey():
    grey_rgb, colour = info("23", GREY_RGB), info("23 [1]", COLOUR)
    assert guess_roles([colour, grey_rgb]) == (grey_rgb, colour)
    grey = info("a", GREY)
    assert guess_roles([grey, info("b", GREY)])[0] is grey  # a tie: the first


def test_functional_prefers_same_dimensions_shape_and_name():
    mri = info("MRI 23", GREY)
    stack = info("PET stack", np.zeros((4, 32, 32, 3), np.uint8))
    other_size = info("PET 23", np.zeros((16, 16, 3), np.uint8))
    pet24, pet23 = info("PET 24", COLOUR), info("PET 23", COLOUR)
    assert guess_roles([stack, mri, other_size])[1] is other_size  # 2D with 2D
    assert guess_roles([mri, other_size, pet24])[1] is pet24  # same shape
    assert guess_roles([mri, pet24, pet23])[1] is pet23  # same number


def test_too_few_candidates():
    assert guess_roles([]) == (None, None)
    only = info("MRI", GREY)
    assert guess_roles([only]) == (only, None)


def test_from_layer_reads_napari_style_layers_duck_typed():
    layer = SimpleNamespace(name="23", data=GREY_RGB, rgb=True, source=SimpleNamespace(path="/x/CT/23.png"))
    got = LayerInfo.from_layer(layer)
    assert (got.name, got.path, got.rgb, got.grey_rgb, got.layer) == ("23", "/x/CT/23.png", True, True, layer)
    pyramid = SimpleNamespace(name="big", data=[COLOUR, COLOUR[::2, ::2]], rgb=True, multiscale=True)
    got = LayerInfo.from_layer(pyramid)
    assert (got.path, got.shape, got.colour) == (None, (32, 32, 3), True)
    # guesses take layers too and hand the same objects back
    mri = SimpleNamespace(name="MRI", data=GREY, rgb=False)
    assert guess_roles([layer, mri]) == (mri, layer)
    assert guess_preset(mri, layer).preset == "CT-MRI"


# ---------------------------------------------------------------- presets


def test_preset_from_names():
    mri = info("MRI", GREY)
    assert guess_preset(mri, info("SPECT 3", COLOUR)).preset == "SPECT-MRI"
    assert guess_preset(mri, info("PET", COLOUR)).preset == "PET-MRI"
    g = guess_preset(mri, info("CT", GREY_RGB))
    assert (g.preset, g.warning) == ("CT-MRI", None)
    assert "CT" in g.reason


def test_preset_from_data_treats_equal_channel_rgb_as_grey():
    a, f = info("23", GREY_RGB), info("23 [1]", GREY_RGB)
    assert guess_preset(a, f).preset == "CT-MRI"
    assert guess_preset(a, info("23 [1]", COLOUR)).preset == "PET-MRI"
    assert guess_preset(info("23", COLOUR), f).preset == "PET-MRI"  # colour given first: still functional
    assert guess_preset(a, None).preset is None


def test_microscopy_pair_gets_no_preset_and_says_so():
    g = guess_preset(info("phase", GREY), info("GFP", GREY))
    assert g.preset is None
    assert "microscopy" in g.warning and "fine-tune" in g.warning
    assert "\n" not in g.warning


def test_names_that_contradict_the_data_warn():
    mri = info("MRI", GREY)
    g = guess_preset(mri, info("PET", GREY_RGB))
    assert g.preset == "PET-MRI" and "grey" in g.warning
    g = guess_preset(mri, info("CT", COLOUR))
    assert g.preset == "CT-MRI" and "colour" in g.warning


def test_preset_warning_for_a_chosen_preset():
    mri, grey, colour = info("MRI", GREY), info("23", GREY_RGB), info("23", COLOUR)
    assert "grey" in preset_warning("PET-MRI", mri, grey)
    assert "grey" in preset_warning("SPECT-MRI", mri, grey)
    assert preset_warning("CT-MRI", mri, grey) is None
    assert "colour" in preset_warning("CT-MRI", mri, colour)
    assert preset_warning("PET-MRI", mri, colour) is None
    assert preset_warning("my-tuned", mri, colour) is None  # custom presets are not questioned
    assert preset_warning("PET-MRI", mri, None) is None
    assert "microscopy" in preset_warning("CT-MRI", info("phase", GREY), info("GFP", GREY))


# ---------------------------------------------------------------- files


def _two_23_pngs(tmp_path) -> tuple[Path, Path]:
    """Two files both named 23.png, in MRI/ and CT/ folders, saved as equal-channel RGB."""
    paths = []
    for folder, img in (("CT", GREY_RGB), ("MRI", 255 - GREY_RGB)):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "23.png"
        imsave(path, img, check_contrast=False)
        paths.append(path)
    return paths[0], paths[1]


def test_two_files_named_23_png_in_mri_and_ct_folders(tmp_path):
    ct_path, mri_path = _two_23_pngs(tmp_path)
    ct = info("23", imread(ct_path), str(ct_path))
    mri = info("23 [1]", imread(mri_path), str(mri_path))
    assert ct.rgb and ct.grey_rgb
    assert guess_roles([ct, mri]) == (mri, ct)  # CT added first is still functional
    g = guess_preset(mri, ct)
    assert (g.preset, g.warning) == ("CT-MRI", None)


def test_files_opened_in_napari(tmp_path, make_napari_viewer):
    ct_path, mri_path = _two_23_pngs(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(ct_path))
    viewer.open(str(mri_path))
    ct, mri = viewer.layers
    assert ct.rgb and ct.name == "23"  # what napari does with such files
    assert guess_roles(viewer.layers) == (mri, ct)
    assert guess_preset(mri, ct).preset == "CT-MRI"


def _harvard_pairs(root: Path, dataset: str, n: int = 5):
    other = dataset.split("-")[0]
    for mri in sorted((root / "test" / dataset / "MRI").glob("*.png"))[:n]:
        yield mri, mri.parent.parent / other / mri.name


@pytest.mark.parametrize("with_paths", [True, False])
def test_harvard_ct_mri_pairs_loaded_as_rgb_guess_ct_mri(harvard_root, with_paths):
    pairs = list(_harvard_pairs(harvard_root, "CT-MRI"))
    assert len(pairs) == 5
    for mri_path, ct_path in pairs:
        ct_data, mri_data = imread(ct_path), imread(mri_path)
        assert ct_data.shape[-1] == 3  # the test PNGs are RGB ...
        ct = info(ct_path.stem, ct_data, str(ct_path) if with_paths else None)
        mri = info(f"{mri_path.stem} [1]", mri_data, str(mri_path) if with_paths else None)
        assert ct.grey_rgb and mri.grey_rgb  # ... with equal channels
        a, f = guess_roles([ct, mri])
        assert (a, f) == (mri, ct)  # without paths the CT's values say CT: air, a saturated skull
        assert guess_preset(a, f).preset == "CT-MRI"


@pytest.mark.parametrize(("dataset", "preset"), [("PET-MRI", "PET-MRI"), ("SPECT-MRI", "SPECT-MRI")])
def test_harvard_colour_pairs_guess_their_preset(harvard_root, dataset, preset):
    for mri_path, func_path in _harvard_pairs(harvard_root, dataset, 3):
        func = info(func_path.stem, imread(func_path), str(func_path))
        mri = info(f"{mri_path.stem} [1]", imread(mri_path), str(mri_path))
        assert func.colour
        assert guess_roles([func, mri]) == (mri, func)
        g = guess_preset(mri, func)
        assert (g.preset, g.warning) == (preset, None)


def test_runtime_module_needs_neither_napari_nor_qt():
    import subprocess
    import sys

    code = (
        "import sys, napari_lightfusion.roles; "
        "assert not {m.split('.')[0] for m in sys.modules} & {'napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6'}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("sample", "preset"),
    [("make_sample_pair", "PET-MRI"), ("make_sample_stack", "PET-MRI"), ("make_sample_microscopy", None)],
)
def test_the_plugin_samples_get_their_roles_and_preset(sample, preset):
    from napari_lightfusion import _sample_data

    layers = [
        LayerInfo.from_array(kw["name"], data, rgb=kw.get("rgb", False))
        for data, kw, _ in getattr(_sample_data, sample)()
    ]
    a, f = guess_roles(reversed(layers))  # whatever order they were added in
    assert (a, f) == (layers[0], layers[1])
    g = guess_preset(a, f)
    assert g.preset == preset
    assert (g.warning is None) == (preset is not None)


def test_the_dicom_modality_outranks_names_and_a_tinted_grey_image_counts_as_colour():
    from types import SimpleNamespace

    from napari.utils.colormaps import ensure_colormap

    def layer(name, modality="", colormap="gray"):
        return SimpleNamespace(
            name=name,
            data=np.zeros((4, 8, 8), np.float32),
            rgb=False,
            source=None,
            metadata={"clinical": {"modality": modality}} if modality else {},
            colormap=ensure_colormap(colormap),
        )

    pet = layer("series 3 (SUV)", "PT", "inferno")
    mr = layer("T2 haste of the PET study", "MR")  # the name says "PET", the tag says MR
    assert modalities.modality(mr).label == "MRI" and modalities.modality(mr).source == "DICOM Modality"
    info = modalities.LayerInfo.from_layer(pet)
    assert info.tinted and info.colour and info.dicom_modality == "PT"
    assert not modalities.LayerInfo.from_layer(mr).colour
    assert roles.guess_preset(mr, pet).preset == "PET-MRI"
    assert roles.short_name(pet) == "PET" and roles.short_name(layer("x")) == "x"
    assert roles.is_microscopy(layer("GFP"), layer("phase")) and not roles.is_microscopy(mr, pet)


# ---------------------------------------------------------------- values (names that say nothing)


VALUE_PAIRS = {
    "HU and float MR": (ct_like(), mr_like()),
    "PNG 0..255": (as_png(ct_like(), -100, 300), as_png(mr_like(), 0, 700)),
    "equal-channel RGB PNGs": (
        np.repeat(as_png(ct_like(), -100, 300)[..., None], 3, -1),
        np.repeat(as_png(mr_like(), 0, 700)[..., None], 3, -1),
    ),
    "stacks": (np.stack([ct_like(seed=s) for s in range(4)]), np.stack([mr_like(seed=s) for s in range(4)])),
    "CT stored unsigned (HU + 1024)": ((ct_like() + 1024).astype(np.uint16), mr_like()),
}


@pytest.mark.parametrize("kind", list(VALUE_PAIRS))
def test_values_tell_ct_from_mr_when_the_names_say_nothing(kind):
    ct_data, mr_data = VALUE_PAIRS[kind]
    ct, mr = info("b", ct_data), info("a", mr_data)
    assert modality(ct).label == "CT" and modality(ct).source == "image"
    assert modality(mr) is None  # nothing in an MR's values says MR: it is simply not CT
    for order in ([mr, ct], [ct, mr]):  # opened MR first or CT first: the MR is the anatomy
        assert guess_roles(order) == (mr, ct)
    g = guess_preset(mr, ct)
    assert (g.preset, g.reason, g.warning) == ("CT-MRI", "'b' looks like CT", None)
    note = roles.role_note(mr, ct)
    assert note.startswith("Roles guessed from the images: 'b' looks like CT (")
    if kind != "PNG 0..255" and "RGB" not in kind:
        assert "air at -1000 HU" in note and "bone peak" in note
    assert ("stored as HU + 1024" in note) == kind.startswith("CT stored unsigned")


def test_an_mr_whose_values_straddle_1024_is_not_taken_for_a_ct_stored_unsigned():
    mr = (mr_like() * 2.5).astype(np.uint16)  # tissue about 600..1600 over a background near 0
    assert modality(info("a", mr)) is None


def test_a_ct_in_the_anatomical_picker_and_an_mr_pair_are_said():
    ct, mr = info("b", ct_like()), info("a", mr_like())
    g = guess_preset(ct, mr)  # chosen the wrong way round
    assert g.preset == "CT-MRI" and "'b' looks like CT" in g.warning and "swap" in g.warning
    t1, t2 = info("T1", GREY), info("T2", GREY)
    g = guess_preset(t1, t2)
    assert g.preset == "CT-MRI" and "both MRI" in g.reason
    assert "'T1' and 'T2' are both MRI" in g.warning and "no preset was trained" in g.warning
    assert preset_warning("CT-MRI", t1, t2) == g.warning
    assert roles.role_note(t1, t2) is None  # the names told: nothing was guessed


def test_unnamed_grey_pair_without_evidence_says_the_opening_order_decided():
    a, b = info("a", mr_like()), info("b", mr_like(seed=1))
    assert roles.role_note(a, b).startswith("Roles from the opening order:")
    assert roles.role_note(info("MRI", GREY), info("PET", COLOUR)) is None
    assert roles.role_note(a, None) is None


def test_the_microscopy_warning_names_the_layers_and_what_said_microscopy():
    pci = info("PCI", GREY)
    gfp = info("cells 1", GREY, "/data/GFP/cells 1.tif")
    warning = guess_preset(pci, gfp).warning
    assert warning.startswith("'PCI' + 'cells 1': a microscopy pair")
    assert "the folder name of 'cells 1' says GFP" in warning and "'GFP'" not in warning


def test_values_are_read_from_a_sample_of_a_lazy_volume_once():
    da = pytest.importorskip("dask.array")
    read = []

    def block(x, block_info=None):
        read.append(block_info[None]["chunk-location"][0])
        return np.broadcast_to(ct_like(64)[None], x.shape).copy()

    lazy = da.zeros((200, 64, 64), dtype=np.int16, chunks=(1, 64, 64)).map_blocks(block, dtype=np.int16)
    assert modality(info("series 4", lazy)).label == "CT"
    assert 1 <= len(set(read)) <= 3
    count = len(read)
    assert modality(info("series 4", lazy)).label == "CT" and len(read) == count  # remembered
