"""Screenshots of the plugin at work, for the README and docs/.

``make_screenshots(out_png, data)`` opens napari with a Harvard PET-MRI test
pair (``data`` is the Harvard root, holding ``test/PET-MRI/MRI/23.png``;
without it, the synthetic sample pair), docks the LightFusion widget
through the plugin manifest and saves, next to ``out_png``:

- ``out_png`` (the README screenshot): the whole window after Compare with
  the Laplacian baseline;
- ``widget_fused.png``: the whole window right after Fuse;
- ``widget_map.png``: one attention map with its colour bar over the grey MRI;
- ``widget_auto.png``: after Fuse with the balance's Auto box ticked (the b
  chosen for the pair on the slider, its leads in the status line);
- ``widget_compare.png``: the labelled Compare grid with every baseline and
  the metric table;
- ``comparison_figure.png``: the figure the widget's "Export figure" writes.

Needs a display; on a headless machine run it under ``xvfb-run``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .qt_wait import wait_until

#: Size of the window in the screenshots, pixels.
WINDOW = (1500, 950)
#: Largest PNG written, bytes (bigger ones are saved with a 256-colour palette).
MAX_BYTES = 400_000
#: The Harvard test pair shown when a data root is given.
HARVARD_PAIR = ("test/PET-MRI/MRI/23.png", "test/PET-MRI/PET/23.png")


def save_png(image: np.ndarray, path: Path) -> Path:
    """Save an RGB(A) screenshot as PNG, with a 256-colour palette when it would exceed :data:`MAX_BYTES`."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image)[..., :3])
    picture.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def _open_pair(viewer, data: Path | None) -> None:
    if data is None:
        from .._sample_data import make_sample_pair

        for image, kwargs, _ in make_sample_pair():
            viewer.add_image(image, **kwargs)
        return
    for rel in HARVARD_PAIR:
        path = Path(data) / rel
        if not path.is_file():
            raise ValueError(f"{path} is missing: --data must be the Harvard root (holding {rel})")
        viewer.open(str(path), plugin="napari")


def make_screenshots(out_png: str | Path, data: str | Path | None = None, show: bool = True) -> list[Path]:
    """Write the README screenshot at ``out_png`` and the four docs screenshots next to it."""
    import napari
    from skimage.io import imread

    out_png = Path(out_png)
    folder = out_png.parent
    folder.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=show, title="napari-lightfusion")
    written = []

    def shot(name: str | Path) -> None:
        end = time.monotonic() + 0.3  # let the canvas draw
        wait_until(lambda: time.monotonic() > end, 5.0)
        written.append(save_png(viewer.screenshot(canvas_only=False, flash=False), folder / name))

    try:
        viewer.window.resize(*WINDOW)
        _open_pair(viewer, None if data is None else Path(data))
        _, widget = viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
        wait_until(lambda: not widget.busy, 120.0, "the network's warm-up")
        widget.fuse()
        wait_until(lambda: not widget.busy, 120.0, "the fusion")
        viewer.reset_view()
        shot("widget_fused.png")
        widget.show_map.setCurrentText("attention: functional")
        wait_until(lambda: not widget.busy, 120.0, "the maps")  # computed when a map is first shown
        viewer.layers.selection.active = widget.last_result()["attention:1"]  # its controls: colour map, limits
        shot("widget_map.png")
        widget.show_map.setCurrentIndex(0)
        widget.balance_auto.setChecked(True)
        widget.fuse()
        wait_until(lambda: not widget.busy, 120.0, "the fusion with the b chosen for the pair")
        shot("widget_auto.png")
        widget.balance_auto.setChecked(False)  # back to the preset's default b for the comparison
        widget.balance.setValue(round(100 * widget.session.default_balance))
        widget.fuse()
        wait_until(lambda: not widget.busy, 120.0, "the fusion at the default b")
        widget.baseline.setCurrentText("laplacian")
        widget.compare()
        wait_until(lambda: not widget.busy, 120.0, "the comparison")
        shot(out_png.name)
        widget.baseline.setCurrentText("all baselines")
        widget.compare()
        wait_until(lambda: not widget.busy, 120.0, "the comparison")
        shot("widget_compare.png")
        figure = widget.export_figure(folder / "comparison_figure.png")
        written.append(save_png(imread(figure), figure))  # smaller for the docs when needed
    finally:
        viewer.close()
    return written


def make_dicom_screenshots(folder: str | Path, show: bool = True) -> list[Path]:
    """``dicom_study.png`` and ``dicom_aligned.png`` in ``folder``: a synthetic DICOM study opened and fused.

    The study (:mod:`.synthetic_study`: an MR at 1.5 x 1 x 1 mm, a PET in SUV
    at 3 x 2 x 2 mm lying 6 mm left and 3 mm back of it) is written to a
    temporary folder and opened with the plugin's reader, as File > Open
    does; Fuse, then the first screenshot with the Align notification and
    the value under the cursor (over a lesion); Align, Fuse again, the second.
    """
    import tempfile

    import napari

    from .synthetic_study import write_study

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        study = write_study(tmp)
        viewer = napari.Viewer(show=show, title="napari-lightfusion")

        def shot(name: str) -> None:
            end = time.monotonic() + 0.5  # let the canvas (and the notification) draw
            wait_until(lambda: time.monotonic() > end, 5.0)
            written.append(save_png(viewer.screenshot(canvas_only=False, flash=False), folder / name))

        try:
            viewer.window.resize(*WINDOW)
            mr = viewer.open(str(study["MR"]), plugin="napari-lightfusion")[0]
            pet = viewer.open(str(study["PET"]), plugin="napari-lightfusion")[0]
            _, widget = viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
            widget.set_pair(mr, pet)
            wait_until(lambda: not widget.busy, 120.0, "the network's warm-up")
            widget.fuse()
            wait_until(lambda: not widget.busy, 120.0, "the fusion")
            hottest = np.unravel_index(int(np.argmax(pet.data)), pet.data.shape)
            lesion = np.asarray(pet.data_to_world(hottest))  # the cursor on the hottest PET voxel
            viewer.dims.set_point(0, float(lesion[0]))
            viewer.reset_view()
            viewer.cursor.position = tuple(lesion)
            shot("dicom_study.png")
            widget.align_panel.align()
            wait_until(lambda: not widget.align_panel.busy, 120.0, "the alignment")
            widget.fuse()
            wait_until(lambda: not widget.busy, 120.0, "the fusion")
            viewer.cursor.position = tuple(lesion)
            shot("dicom_aligned.png")
        finally:
            viewer.close()
    return written
