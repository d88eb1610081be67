"""``lightfusion-research bench-live``: latency from a slider move to updated layers, with Live on.

Opens a napari viewer (needs a display; run under ``xvfb-run`` on a headless
machine) with a synthetic grey + RGB stack of each size, docks the
LightFusion widget, turns Live on, and for each slice moves the dims slider
and waits, processing Qt events, until the widget has written that slice's
fused layer (its maps only while one is shown), and then until the metric
table is filled. The latency is what a user sees: the fusion in the worker
thread, the layer updates on the GUI thread and then the metric table,
timed from before the move (napari's handling of the move and the
widget's request run inside ``set_current_step``). Each
move comes after a pause, as an arrow-key step does, so Live fuses at once
(:class:`napari_lightfusion._qt.live.LiveTrigger`). Then the slider is
dragged (a step every :data:`DRAG_STEP_MS` over four slices, a few times):
its last slice waits for the debounce
(:data:`napari_lightfusion._qt.live.DEBOUNCE_MS`), and what counts is how
long after the debounce it reaches the layers.
"""

from __future__ import annotations

import statistics
import time

from .qt_wait import wait_until

#: Milliseconds between the steps of a drag (a hand moving the slider over a slice every frame or two).
DRAG_STEP_MS = 30


def measure(sizes=(256, 512), slices: int = 8, timeout: float = 60.0, make_viewer=None) -> list[dict]:
    """Slider-to-layers latency per image size (median and max ms), and to the metric table (median).

    ``make_viewer``: a callable returning a shown viewer (a test's
    ``make_napari_viewer``, which then also closes it); default: a new
    ``napari.Viewer``, closed here.
    """
    import napari
    import numpy as np

    from .._qt.live import DEBOUNCE_MS
    from .._qt.widget import LightFusionWidget

    rows = []
    for size in sizes:
        rng = np.random.default_rng(size)
        mri = rng.random((slices, size, size), dtype=np.float32)
        pet = (rng.random((slices, size, size, 3)) * 255).astype(np.uint8)
        viewer = napari.Viewer(show=True) if make_viewer is None else make_viewer()
        try:
            viewer.add_image(mri, name="mri")
            viewer.add_image(pet, name="pet", rgb=True)
            widget = LightFusionWidget(viewer)
            viewer.window.add_dock_widget(widget, name="LightFusion")
            layers, table = _slider_latencies(viewer, widget, slices, timeout)
            drags = _drag_latencies(viewer, widget, slices, timeout)
        finally:
            if make_viewer is None:
                viewer.close()
        rows.append(
            {
                "size": size,
                "moves": len(layers),
                "median_ms": statistics.median(layers),
                "max_ms": max(layers),
                "table_ms": statistics.median(table),
                "debounce_ms": DEBOUNCE_MS,
                "drags": len(drags),
                "past_debounce_ms": statistics.median(drags) - DEBOUNCE_MS,
            }
        )
    return rows


def _slider_latencies(viewer, widget, slices: int, timeout: float) -> tuple[list[float], list[float]]:
    """Turn Live on, move the slider over every slice; ms until the layers, and until the metric table, updated."""
    widget.live.setChecked(True)
    wait_until(lambda: not widget.busy, timeout, "the first result")  # the layers are created
    layers, table = [], []
    since = lambda start: 1e3 * (time.perf_counter() - start)  # noqa: E731
    for z in [*range(1, slices), 0]:
        start = time.perf_counter()  # before the move: napari's own handling of it counts
        viewer.dims.set_current_step(0, z)
        wait_until(lambda z=z: widget.live_slice == z, timeout, f"slice {z}")
        layers.append(since(start))
        wait_until(lambda: not widget.busy, timeout, "the metric table")
        table.append(since(start))
    return layers, table


def _drag_latencies(viewer, widget, slices: int, timeout: float) -> list[float]:
    """Drag the slider over up to four slices, three times; ms from each drag's last move to its slice in the layers."""
    from qtpy.QtWidgets import QApplication

    forward, latencies = list(range(min(4, slices))), []
    for drag in range(3):
        path = [z for z in (forward if drag % 2 == 0 else forward[::-1]) if z != widget.live_slice]
        for z in path:
            last = time.perf_counter()  # before the move, as in _slider_latencies
            viewer.dims.set_current_step(0, z)
            while time.perf_counter() - last < DRAG_STEP_MS / 1e3:
                QApplication.processEvents()
                time.sleep(0.001)
        wait_until(lambda end=path[-1]: widget.live_slice == end, timeout, f"slice {path[-1]}")
        latencies.append(1e3 * (time.perf_counter() - last))
        wait_until(lambda: not widget.busy, timeout, "the metric table")
    return latencies


def format_rows(rows: list[dict]) -> str:
    """The rows of :func:`measure` as a markdown table."""
    lines = [
        "| slice size | slider moves | layers updated, median ms | max ms | metric table, median ms "
        "| debounce ms (a step after a pause does not wait for it) | drags "
        "| a drag's last slice, ms past the debounce |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['moves']} | {r['median_ms']:.0f} | {r['max_ms']:.0f} | "
            f"{r['table_ms']:.0f} | {r['debounce_ms']} | {r['drags']} | {r['past_debounce_ms']:.0f} |"
        )
    return "\n".join(lines)
