"""Export fused volume: a lazy fused layer written to OME-Zarr off the GUI thread, cancelled, resumed, reopened."""

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_lightfusion._qt.volume_export import export_fused
from napari_lightfusion.lazy import fuse_lazy
from napari_lightfusion.ome_zarr_output import OmeZarrOutput

WAIT_MS = 60_000


@pytest.fixture
def lazy_fused():
    rng = np.random.default_rng(0)
    grey = (rng.random((6, 48, 56)) * 4000).astype(np.uint16)
    colour = (rng.random((6, 48, 56, 3)) * 255).astype(np.uint8)
    return fuse_lazy(da.from_array(grey, chunks=(1, 48, 56)), colour, device="cpu", a_limits=(0, 4000)).fused


def test_a_lazy_layer_is_exported_with_its_scale_and_napari_reopens_it(make_napari_viewer, qtbot, tmp_path, lazy_fused):
    viewer = make_napari_viewer()
    layer = viewer.add_image(lazy_fused, rgb=True, name="fused", scale=(2.0, 0.5, 0.5))
    out = tmp_path / "fused.zarr"
    worker = export_fused(viewer, layer, out)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        pass
    written = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(np.moveaxis(written["0"][:], 0, -1), lazy_fused.compute())
    scale = written.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 2.0, 0.5, 0.5]
    assert isinstance(layer.data, da.Array)  # the input layer is untouched, still lazy
    [opened] = viewer.open(str(out), plugin="napari")
    assert np.asarray(opened.data[0] if opened.multiscale else opened.data).shape == (3, 6, 48, 56)


def test_cancel_keeps_whole_slices_and_a_second_export_finishes(make_napari_viewer, qtbot, tmp_path, lazy_fused, gate):
    viewer = make_napari_viewer()
    layer = viewer.add_image(lazy_fused, rgb=True, name="lazy")
    out = tmp_path / "lazy.zarr"
    held = gate(OmeZarrOutput, "write")  # slice 0 is written; slice 1 waits until the export is stopped
    worker = export_fused(viewer, layer, out)
    qtbot.waitUntil(lambda: held.held, timeout=WAIT_MS)
    with qtbot.waitSignal(worker.finished, timeout=WAIT_MS):
        worker.quit()
        held.open()
    missing = OmeZarrOutput(out).missing()
    assert 0 < len(missing) < 6
    again = export_fused(viewer, layer, out)
    with qtbot.waitSignal(again.finished, timeout=WAIT_MS):
        pass
    assert OmeZarrOutput(out).missing() == []
    np.testing.assert_array_equal(
        np.moveaxis(zarr.open_array(str(out / "0"), mode="r")[:], 0, -1), lazy_fused.compute()
    )


def test_what_cannot_be_exported_is_refused_at_once(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    four = viewer.add_image(np.zeros((2, 3, 8, 8), np.float32), name="4d")
    with pytest.raises(ValueError, match="3D stack"):
        export_fused(viewer, four, tmp_path / "a.zarr")
    grey = viewer.add_image(np.zeros((3, 8, 8), np.float32), name="grey")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="holds something else"):
        export_fused(viewer, grey, tmp_path / "taken")
    assert not (tmp_path / "a.zarr").exists()
