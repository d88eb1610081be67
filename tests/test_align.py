"""Misaligned pairs: the shift estimate, rigid registration (Mattes MI) and microscopy's phase correlation.

The medical pair is a synthetic head of real size (about 90 x 120 x 105 mm):
ellipsoids of scalp, skull, grey and white matter, ventricles, eyes, a
cerebellum, a tumour and a lesion. The MR shows them on a 2 mm grid; the PET
shows the same object with other contrast (uptake in grey matter, tumour
and lesion, none in ventricles and skull, eyes dark where the MR has them
bright), blurred and on a 3 mm grid whose origin is off the MR's. A
misalignment is made by changing the PET's data-to-world matrix only: a
rotation about the head's centre and a translation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_lightfusion import align, mutual_information
from napari_lightfusion.resample import resample

#: (centre, semi-axes) in mm of a head of scale 1 (z, y, x), MR value, PET value; later parts cover earlier ones.
PARTS = [
    ((0, 0, 0), (22, 30, 26), 0.5, 0.15),  # scalp
    ((0, 0, 0), (20, 28, 24), 0.05, 0.0),  # skull: dark on MR, no uptake
    ((0, 0, 0), (18, 25, 21), 0.45, 1.0),  # grey matter: high uptake
    ((2, 0, 0), (12, 18, 14), 0.8, 0.35),  # white matter
    ((2, -2, 4), (5, 8, 2.5), 0.15, 0.0),  # ventricles
    ((2, -2, -4), (5, 8, 2.5), 0.15, 0.0),
    ((6, 10, 12), (6, 6, 6), 0.6, 2.5),  # a tumour, left posterior
    ((-6, 6, -10), (4, 6, 5), 0.3, 1.8),  # a lesion, right
    ((-12, 16, 0), (5, 7, 12), 0.55, 0.7),  # cerebellum
    ((-8, -26, 10), (4, 4, 4), 0.9, 0.1),  # eyes: bright on MR, dark on PET
    ((-8, -26, -10), (4, 4, 4), 0.9, 0.1),
]
SCALE = 2.0
#: The misalignment: a translation of 7 mm (z, y, x) and 3 degrees about a tilted axis, about the head's centre.
SHIFT = (2.0, -6.0, 3.0)
DEGREES = 3.0


def grid(shape, spacing, centre=0.0) -> np.ndarray:
    """A data-to-world matrix of ``spacing`` mm voxels centred on ``centre``."""
    n = len(shape)
    matrix = np.diag([*np.broadcast_to(spacing, (n,)), 1.0])
    matrix[:n, n] = -(np.array(shape) - 1) / 2 * matrix.diagonal()[:n] + centre
    return matrix


def draw(shape, matrix, column: int) -> np.ndarray:
    """The head's MR (``column`` 0) or PET (1) values at the voxel centres of a grid."""
    n = len(shape)
    index = np.indices(shape).reshape(n, -1)
    world = (matrix[:n, :n] @ index + matrix[:n, n:]) / SCALE
    out = np.zeros(index.shape[1])
    for centre, axes, *values in PARTS:
        inside = (((world - np.array(centre[3 - n :])[:, None]) / np.array(axes[3 - n :])[:, None]) ** 2).sum(0) <= 1
        out[inside] = values[column]
    return out.reshape(shape)


def make_head(mr_shape, mr_spacing, pet_shape, pet_spacing, mr_matrix=None):
    """``(mr, mr_matrix, pet, pet_matrix)``: the head on both grids, with noise; the PET blurred by 2 mm."""
    n = len(mr_shape)
    rng = np.random.default_rng(0)
    mr_matrix = grid(mr_shape, mr_spacing) if mr_matrix is None else mr_matrix
    mr = draw(mr_shape, mr_matrix, 0) + rng.normal(0, 0.02, mr_shape)
    fine_shape = tuple(int(s * pet_spacing) + 8 for s in pet_shape)
    fine_matrix = grid(fine_shape, 1.0)
    fine = ndimage.gaussian_filter(draw(fine_shape, fine_matrix, 1), 2.0)
    pet_matrix = grid(pet_shape, pet_spacing, np.array((0.7, -0.4, 1.1))[3 - n :])
    pet = resample(fine, fine_matrix, pet_shape, pet_matrix) + rng.normal(0, 0.02, pet_shape)
    return mr.astype(np.float32), mr_matrix, pet.astype(np.float32), pet_matrix


def motion(shift, degrees, axis=(0.3, 0.2, 1.0)) -> np.ndarray:
    """A rigid world transform: ``degrees`` about ``axis`` (3D) through the origin, then ``shift``."""
    n = len(shift)
    matrix = np.eye(n + 1)
    if n == 3:
        matrix[:3, :3] = Rotation.from_rotvec(np.radians(degrees) * np.array(axis) / np.linalg.norm(axis)).as_matrix()
    else:
        c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
        matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:n, n] = shift
    return matrix


def corner_error(matrix, n: int) -> float:
    """The largest distance ``matrix`` moves a corner of the head's bounding box, in mm (0 for identity)."""
    half = np.array([22, 30, 26])[3 - n :] * SCALE
    corners = np.array(np.meshgrid(*[(-h, h) for h in half], indexing="ij")).reshape(n, -1)
    return float(np.linalg.norm(matrix[:n, :n] @ corners + matrix[:n, n:] - corners, axis=0).max())


@pytest.fixture(scope="module")
def head3d():
    return make_head((48, 64, 64), 2.0, (36, 44, 40), 3.0)


@pytest.fixture(scope="module")
def head2d():
    return make_head((128, 112), 1.0, (64, 56), 2.0)


# --- the world <-> SimpleITK conversion ---------------------------------------------------------------------------


def test_to_sitk_image_places_every_voxel_where_its_matrix_says():
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("zyx", (10, -20, 35), degrees=True).as_matrix() @ np.array(
        [[1.5, 0.2, 0], [0, 0.8, 0.1], [0, 0, 2.5]]
    )  # rotated and sheared: an affine already set on a layer
    matrix[:3, 3] = (-40.0, 12.5, 7.0)
    image = mutual_information.to_sitk_image(np.zeros((5, 6, 7)), matrix)
    assert image.GetSize() == (7, 6, 5)
    for index in [(0, 0, 0), (4, 5, 6), (2, 1, 3)]:
        point = image.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
        np.testing.assert_allclose(point[::-1], matrix[:3, :3] @ index + matrix[:3, 3], atol=1e-9)
    plane = np.array([[0.0, -2.0, 3.0], [1.5, 0.0, -4.0], [0, 0, 1]])
    image = mutual_information.to_sitk_image(np.zeros((4, 9)), plane)
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((8, 3))[::-1], plane[:2, :2] @ (3, 8) + plane[:2, 2])


def test_world_matrix_maps_points_as_simpleitk_does():
    import SimpleITK as sitk

    euler = sitk.Euler3DTransform((1.0, -2.0, 3.0), 0.1, -0.2, 0.05, (4.0, 5.0, -6.0))
    plane = sitk.Euler2DTransform((1.0, 2.0), 0.3, (-3.0, 0.5))
    for transform, n in [(euler, 3), (plane, 2), (sitk.TranslationTransform(3, (1.0, 2.0, 3.0)), 3)]:
        matrix = mutual_information.world_matrix(transform, n)
        for world in np.random.default_rng(1).normal(0, 50, (4, n)):
            np.testing.assert_allclose(
                transform.TransformPoint(world[::-1].tolist())[::-1], matrix[:n, :n] @ world + matrix[:n, n], atol=1e-9
            )


# --- the shift estimate -------------------------------------------------------------------------------------------


def test_a_7_mm_shift_is_caught_and_said_in_patient_directions(head3d):
    mr, mr_matrix, pet, pet_matrix = head3d
    found = align.estimate_misalignment(mr, mr_matrix, pet, motion(SHIFT, DEGREES) @ pet_matrix)
    assert np.linalg.norm(np.subtract(found.shift_mm, SHIFT)) < 1.0, found
    assert abs(found.distance_mm - 7.0) < 1.0 and found.threshold_mm == 3.0 and found.exceeds
    assert found.method == "mutual information"
    text = found.message("MR", "PET")
    assert text.startswith("PET looks shifted by ~7 mm from MR (") and "\n" not in text
    assert "mm left" in text and "mm anterior" in text and "mm superior" in text
    assert text.index("left") < text.index("anterior") < text.index("superior")


def test_an_unmoved_pair_is_within_a_voxel_and_the_estimate_is_deterministic(head3d):
    mr, mr_matrix, pet, pet_matrix = head3d
    found = align.estimate_misalignment(mr, mr_matrix, pet, pet_matrix)
    assert found.distance_mm < 1.0 and not found.exceeds
    assert "look aligned" in found.message("MR", "PET")
    again = align.estimate_misalignment(mr, mr_matrix, pet, pet_matrix)  # seeded: equal but for threads' rounding
    np.testing.assert_allclose(again.shift_mm, found.shift_mm, atol=1e-6)


def test_the_estimate_reads_oblique_grids_and_rgb_pet():
    """An MR with a rotated affine and a PET in pseudo-colour (its luminance is compared)."""
    oblique = np.eye(4)
    oblique[:3, :3] = Rotation.from_euler("x", 12, degrees=True).as_matrix() * 2.0
    oblique[:3, 3] = -oblique[:3, :3] @ (np.array((48, 64, 64)) - 1) / 2
    mr, mr_matrix, pet, pet_matrix = make_head((48, 64, 64), 2.0, (36, 44, 40), 3.0, mr_matrix=oblique)
    rgb = np.stack([np.clip(pet, 0, 1), np.clip(pet - 1, 0, 1), np.clip(pet - 2, 0, 1)], axis=-1)
    shift = (0.0, 4.0, -3.0)
    found = align.estimate_misalignment(mr, mr_matrix, rgb, motion(shift, 0.0) @ pet_matrix, rgb_moving=True)
    assert np.linalg.norm(np.subtract(found.shift_mm, shift)) < 1.0, found
    assert "mm right" in found.message("MR", "PET") and "mm posterior" in found.message("MR", "PET")


def test_message_directions_and_units():
    medical = align.Misalignment((2.04, -6.0, 3.0), (1.0, -3.0, 1.5), 3.0, "mutual information")
    assert medical.message("T1", "FDG") == (
        "FDG looks shifted by ~7 mm from T1 (3.0 mm left, 6.0 mm anterior, 2.0 mm superior)"
    )
    assert align.Misalignment((-4.0, 0.0), (-4.0, 0.0), 2.0, "mutual information").message("a", "b") == (
        "b looks shifted by ~4 mm from a (4.0 mm anterior)"
    )
    cells = align.Misalignment((1.15, -0.8), (2.3, -1.6), 0.5, "phase correlation")
    assert cells.message("DAPI", "GFP") == (
        "GFP looks shifted by ~2.80 px from DAPI (1.60 px left, 2.30 px down); 1.4 in world units"
    )


# --- rigid registration -------------------------------------------------------------------------------------------


def test_register_rigid_recovers_a_rotation_and_a_translation(head3d):
    mr, mr_matrix, pet, pet_matrix = head3d
    moved = motion(SHIFT, DEGREES) @ pet_matrix
    fractions = []
    result = align.register_rigid(mr, mr_matrix, pet, moved, progress=fractions.append)
    assert corner_error(result.world_transform @ motion(SHIFT, DEGREES), 3) < 1.0
    assert abs(result.rotation_deg - DEGREES) < 0.6
    placed = resample(pet, result.world_transform @ moved, mr.shape, mr_matrix)
    truth = resample(pet, pet_matrix, mr.shape, mr_matrix)
    assert np.corrcoef(placed.ravel(), truth.ravel())[0, 1] > 0.99
    assert result.metric_after < result.metric_before < 0
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.1
    record = json.loads(json.dumps(result.record()))
    assert np.allclose(record["world_transform"], result.world_transform)
    assert record["library"].startswith("SimpleITK 2.") and "Mattes" in record["metric"]
    assert not result.world_transform.flags.writeable


def test_register_rigid_stops_when_asked(head3d):
    mr, mr_matrix, pet, pet_matrix = head3d
    polls = []

    def should_stop():
        polls.append(1)
        return len(polls) > 5

    with pytest.raises(align.Cancelled):
        align.register_rigid(mr, mr_matrix, pet, pet_matrix, should_stop=should_stop)
    assert len(polls) < 12
    with pytest.raises(align.Cancelled):
        align.register_rigid(mr, mr_matrix, pet, pet_matrix, should_stop=lambda: True)


def test_a_2d_pair_is_caught_and_registered(head2d):
    mr, mr_matrix, pet, pet_matrix = head2d
    move = motion(SHIFT[1:], DEGREES)
    found = align.estimate_misalignment(mr, mr_matrix, pet, move @ pet_matrix)
    assert found.exceeds and len(found.shift_mm) == 2 and abs(found.distance_mm - np.hypot(*SHIFT[1:])) < 1.0
    result = align.register_rigid(mr, mr_matrix, pet, move @ pet_matrix)
    assert result.world_transform.shape == (3, 3)
    assert corner_error(result.world_transform @ move, 2) < 1.5
    assert abs(result.rotation_deg - DEGREES) < 1.0
    # the other way round (the functional image is the finer one, so it is the one sampled): the inverse motion
    result = align.register_rigid(pet, pet_matrix, mr, np.linalg.inv(move) @ mr_matrix)
    assert corner_error(result.world_transform @ np.linalg.inv(move), 2) < 1.5


# --- microscopy ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cells():
    """A GFP-like image and the same cells in another channel shifted by (2.3, -1.6) px, with its own noise."""
    from napari_lightfusion._sample_data import microscopy_pair

    _, gfp = microscopy_pair(192, seed=1)
    spectrum = ndimage.fourier_shift(np.fft.fftn(gfp.astype(float)), (2.3, -1.6))
    channel = np.fft.ifftn(spectrum).real + np.random.default_rng(2).normal(0, 20, gfp.shape)
    return gfp, channel


def test_a_chromatic_shift_is_found_to_a_tenth_of_a_pixel(cells):
    gfp, channel = cells
    found = align.estimate_misalignment(gfp, np.eye(3), channel, np.eye(3), microscopy=True)
    assert np.allclose(found.shift_mm, (2.3, -1.6), atol=0.1) and found.exceeds
    assert found.method == "phase correlation" and "px" in found.message("phase", "GFP")
    result = align.register_translation(gfp, np.eye(3), channel, np.eye(3))
    assert np.allclose(result.world_transform[:2, 2], (-2.3, 1.6), atol=0.1) and result.rotation_deg == 0
    assert result.metric_after > result.metric_before
    assert json.loads(json.dumps(result.record()))["library"].startswith("scikit-image")


def test_phase_correlation_works_in_world_units_and_across_grids(cells):
    gfp, _ = cells
    pixel = np.diag([0.5, 0.5, 1.0])  # 0.5 um pixels
    moved = pixel.copy()
    moved[:2, 2] = (0.7, -0.45)  # the same pixels, placed 1.4 and -0.9 px away
    found = align.estimate_misalignment(gfp, pixel, gfp, moved, microscopy=True)
    np.testing.assert_allclose(found.shift_mm, (0.7, -0.45), atol=0.01)
    np.testing.assert_allclose(found.shift_px, (1.4, -0.9), atol=0.02)


# --- bad inputs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixed, fixed_matrix, moving, moving_matrix, words",
    [
        (np.zeros((0, 8, 8)), np.eye(4), np.ones((8, 8, 8)), np.eye(4), "empty"),
        (np.ones((8, 8, 8)), np.eye(4), np.arange(512.0).reshape(8, 8, 8), np.eye(4), "constant"),
        (np.random.rand(16, 16), np.eye(3), np.random.rand(8, 16, 16), np.eye(4), "2D"),
        (np.random.rand(8, 16, 16), np.eye(4), np.full((8, 16, 16), np.nan), np.eye(4), "no finite"),
        (np.random.rand(8, 16, 16), np.eye(4), np.random.rand(8, 16, 16), np.diag([1, 1, 0, 1.0]), "invertible"),
        (np.random.rand(8, 16, 16), np.eye(4), np.random.rand(8, 16, 16), grid((8, 16, 16), 1.0, 500.0), "overlap"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(fixed, fixed_matrix, moving, moving_matrix, words):
    for call in (align.estimate_misalignment, align.register_rigid, align.register_translation):
        with pytest.raises(ValueError, match=words) as error:
            call(fixed, fixed_matrix, moving, moving_matrix)
        assert "\n" not in str(error.value)


def test_a_few_nan_voxels_are_background(head2d):
    mr, mr_matrix, pet, pet_matrix = head2d
    holes = pet.copy()
    holes[:3] = np.nan
    found = align.estimate_misalignment(mr, mr_matrix, holes, pet_matrix)
    assert not found.exceeds


def test_the_module_loads_simpleitk_only_when_it_registers():
    code = (
        "import sys, napari_lightfusion.align\nprint('SimpleITK' in sys.modules, 'skimage.registration' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_simpleitk_errors_come_as_one_line():
    """Two images that touch at a corner only: ITK finds no sample inside both, and says so in a ValueError."""
    rng = np.random.default_rng(0)
    corner = np.eye(4)
    corner[:3, 3] = (15, 31, 31)
    for call in (align.estimate_misalignment, align.register_rigid):
        with pytest.raises(ValueError, match="registration failed: All samples map outside") as error:
            call(rng.random((16, 32, 32)), np.eye(4), rng.random((16, 32, 32)), corner)
        assert "\n" not in str(error.value)


def test_a_registered_pair_stays_silent_and_a_shifted_one_speaks():
    """The sample pair is registered by construction: no alarm; moved by 8 px, MI clearly gains: an alarm."""
    from napari_lightfusion._sample_data import phantom_mri, phantom_pet

    mri, pet = phantom_mri().astype(np.float64), phantom_pet().astype(np.float64)
    here = align.estimate_misalignment(mri, np.eye(3), pet, np.eye(3), rgb_moving=True)
    moved = np.eye(3)
    moved[1, 2] = 8.0
    there = align.estimate_misalignment(mri, np.eye(3), pet, moved, rgb_moving=True)
    assert not here.exceeds and "look aligned" in here.message("MRI", "PET")
    assert there.exceeds and there.gain >= align.MIN_GAIN > here.gain
    assert abs(there.shift_mm[1] - 8.0) < 2.0
