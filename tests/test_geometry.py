"""The one voxel-to-patient convention: DICOM and NIfTI placements, the canonical layout, slice stacking."""

import numpy as np
import pytest

from napari_lightfusion.geometry import Geometry, canonical, slice_offsets, uniform_spacing

AXIAL = (1, 0, 0, 0, 1, 0)
SAGITTAL = (0, 1, 0, 0, 0, -1)


def lps_of(orientation, position, pixel, spacing, k, r, c):
    """Where DICOM puts voxel (slice k, row r, column c), straight from the standard, as world (S, P, L)."""
    along_row, down_column = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(along_row, down_column)
    lps = np.array(position, float) + k * spacing * normal + r * pixel[0] * down_column + c * pixel[1] * along_row
    return lps[::-1]


def test_an_axial_series_is_a_scale_and_a_translate_in_mm():
    g = Geometry.from_dicom(AXIAL, (-100.0, -120.0, -50.0), (0.9, 0.8), 3.0)
    assert not g.oblique and g.spacing == pytest.approx((3.0, 0.9, 0.8))
    kwargs = g.layer_kwargs()
    assert kwargs["scale"] == pytest.approx((3.0, 0.9, 0.8)) and kwargs["translate"] == pytest.approx((-50, -120, -100))
    for k, r, c in [(0, 0, 0), (2, 5, 7)]:
        np.testing.assert_allclose(
            (g.affine @ [k, r, c, 1])[:3], lps_of(AXIAL, (-100, -120, -50), (0.9, 0.8), 3.0, k, r, c)
        )


def test_dicom_planes_round_trip():
    g = Geometry.from_dicom(AXIAL, (-100.0, -120.0, -50.0), (0.9, 0.8), 3.0)
    orientation, pixel, spacing = g.dicom_plane()
    assert orientation == pytest.approx(AXIAL) and pixel == pytest.approx([0.9, 0.8]) and spacing == pytest.approx(3.0)
    assert g.slice_position(2) == pytest.approx([-100.0, -120.0, -44.0])


def test_a_sagittal_series_is_laid_out_axially_without_resampling():
    g = Geometry.from_dicom(SAGITTAL, (10.0, -120.0, 80.0), (1.0, 1.0), 2.0)
    data = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    out, placed = canonical(data, g)
    assert out.shape == (5, 6, 4) and not placed.oblique
    for k, r, c in [(0, 0, 0), (1, 2, 3), (3, 4, 5)]:
        world = lps_of(SAGITTAL, (10, -120, 80), (1, 1), 2.0, k, r, c)
        index = np.rint(np.linalg.solve(placed.affine, [*world, 1])[:3]).astype(int)
        assert out[tuple(index)] == data[k, r, c]


def test_an_oblique_series_keeps_an_affine():
    t = np.radians(12)
    g = Geometry.from_dicom((np.cos(t), np.sin(t), 0, -np.sin(t), np.cos(t), 0), (0, 0, 0), (1, 1), 2.0)
    out, placed = canonical(np.zeros((3, 4, 5)), g)
    assert out.shape == (3, 4, 5) and placed.oblique and "affine" in placed.layer_kwargs()


def test_nifti_ras_round_trip_and_axes():
    ras = np.diag([-0.8, -0.9, 2.5, 1.0])  # an LPS-stored file: i toward R... as nibabel gives it
    ras[:3, 3] = (10, 20, 30)
    g = Geometry.from_ras(ras)
    np.testing.assert_allclose(g.to_ras(), ras)
    # RAS x = R is the world's -L; RAS y = A is -P; RAS z = S
    np.testing.assert_allclose(g.affine[:3, 3], (30, -20, -10))


def test_slices_are_stacked_by_position_along_the_normal():
    order, offsets = slice_offsets(AXIAL, [[0, 0, 5], [0, 0, -1], [0, 0, 2]])
    assert list(order) == [1, 2, 0] and offsets == pytest.approx([-1, 2, 5])
    assert uniform_spacing(offsets) == pytest.approx(3.0)


@pytest.mark.parametrize(
    "offsets, why", [([0, 3, 9, 12], "missing slice"), ([0, 3, 4, 7], "uneven"), ([0, 0, 0], "same position")]
)
def test_gaps_and_uneven_spacing_are_refused(offsets, why):
    with pytest.raises(ValueError, match=why):
        uniform_spacing(offsets)


def test_a_degenerate_matrix_is_refused():
    with pytest.raises(ValueError, match="invertible"):
        Geometry(np.zeros((4, 4)))
