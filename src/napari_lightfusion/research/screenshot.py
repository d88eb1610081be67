"""A screenshot of the plugin at work, for the README.

``make_screenshot(path)`` opens napari with the synthetic sample pair,
docks the LightFusion widget through the plugin manifest, runs one fusion
and saves the whole window (canvas and dock). Needs a display; on a
headless machine run it under ``xvfb-run``.
"""

from __future__ import annotations

from pathlib import Path

from .qt_wait import wait_until

#: Size of the window in the screenshot, pixels.
WINDOW = (1500, 950)


def make_screenshot(out_png: str | Path, show: bool = False) -> Path:
    """Fuse the sample pair in napari and save a PNG of the whole window at ``out_png``."""
    import napari

    from .._sample_data import make_sample_pair

    out_png = Path(out_png)
    viewer = napari.Viewer(show=show, title="napari-lightfusion")
    try:
        viewer.window.resize(*WINDOW)
        for data, kwargs, _ in make_sample_pair():
            viewer.add_image(data, **kwargs)
        _, widget = viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
        widget.baseline.setCurrentText("laplacian")
        widget.compare()  # fuses, adds the baseline and shows everything side by side
        wait_until(lambda: not widget.busy, 120.0, "the fusion")
        viewer.layers.selection.active = viewer.layers["LightFusion fused"]
        viewer.reset_view()
        out_png.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(path=str(out_png), canvas_only=False, flash=False)
    finally:
        viewer.close()
    return out_png
