"""The pair as the viewer shows it: the functional image on the anatomical grid, through its colour table."""

import dask.array as da
import numpy as np
import pytest

from napari_lightfusion.colour import PET, colour_table, colourise, luminance
from napari_lightfusion.displayed import as_displayed, needs_resampling, same_grid
from napari_lightfusion.resample import ResampledView, resample


def inputs(a, b, b_matrix, lut=None, b_rgb=False):
    return {
        "a": a,
        "b": b,
        "a_limits": (0.0, 1.0),
        "b_limits": (0.0, 10.0),
        "a_rgb": False,
        "b_rgb": b_rgb,
        "a_matrix": np.eye(a.ndim + 1),
        "b_matrix": b_matrix,
        "b_lut": lut,
    }


def test_the_pet_table_rises_in_luma_and_ends_in_a_colour():
    table = colour_table(PET)
    y = luminance(table)
    assert table.shape == (256, 3) and np.all(np.diff(y) >= -1e-6)
    assert np.ptp(table[-1]) > 0.9  # the hottest entry has chroma: yellow, not white


def test_colourise_maps_through_the_table_with_the_limits():
    table = colour_table(PET)
    out = colourise(np.array([[-5.0, 0.0, 5.0, 10.0, 20.0, np.nan]]), (0.0, 10.0), table)
    np.testing.assert_allclose(out[0, [0, 1, 5]], 0.0)
    np.testing.assert_allclose(out[0, 3], table[-1])
    np.testing.assert_allclose(out[0, 4], table[-1])
    np.testing.assert_allclose(out[0, 2], table[128], atol=1e-6)


def test_a_pet_on_a_coarser_grid_is_resampled_onto_the_anatomical_grid():
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 16, 16)), rng.random((3, 8, 8)) * 10
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    given = inputs(a, b, coarse)
    assert needs_resampling(given)
    out = as_displayed(given)
    np.testing.assert_allclose(out["b"], resample(b, coarse, a.shape, np.eye(4)))
    assert out["b_limits"] == (0.0, 10.0) and not out["b_rgb"]
    assert not needs_resampling(inputs(a, a, np.eye(4)))


def test_a_lazy_pair_stays_lazy_and_equals_the_eager_one():
    rng = np.random.default_rng(1)
    a, b = rng.random((6, 16, 16)), rng.random((3, 8, 8)) * 10
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])
    eager = as_displayed(inputs(a, b, coarse, colour_table()))
    lazy = as_displayed(
        inputs(da.from_array(a, chunks=(1, 16, 16)), da.from_array(b, chunks=(1, 8, 8)), coarse, colour_table())
    )
    assert isinstance(lazy["b"], da.Array) and lazy["b"].shape == (6, 16, 16, 3) and lazy["b_rgb"]
    np.testing.assert_allclose(lazy["b"].compute(), eager["b"], atol=1e-6)
    assert eager["b_limits"] is None and eager["b"].dtype == np.float32


def test_a_resampled_view_reads_only_what_a_slice_asks_for():
    b = np.random.default_rng(2).random((4, 10, 10))
    view = ResampledView(b, np.diag([3.0, 1.0, 1.0, 1.0]), (12, 10, 10), np.eye(4))
    full = resample(b, np.diag([3.0, 1.0, 1.0, 1.0]), (12, 10, 10), np.eye(4))
    np.testing.assert_allclose(view[5], full[5])
    np.testing.assert_allclose(view[2:9:3, 4], full[2:9:3, 4])
    np.testing.assert_allclose(view[-1], full[-1])


@pytest.mark.parametrize("shift, same", [(0.0, True), (1e-4, True), (0.2, False)])
def test_same_grid_tolerates_header_noise_only(shift, same):
    moved = np.eye(4)
    moved[2, 3] = shift
    assert same_grid((4, 8, 8), np.eye(4), (4, 8, 8), moved) is same
    assert not same_grid((4, 8, 8), np.eye(4), (4, 8, 9), np.eye(4))
