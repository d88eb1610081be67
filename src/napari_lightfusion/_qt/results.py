"""Showing a job's result: its set of layers, the map on show, the status line with the timing."""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer

from . import compare as C
from . import layer_io as L
from . import outputs as O


class ResultView:
    """Mixin of :class:`~napari_lightfusion._qt.widget.LightFusionWidget`: writes and shows results.

    Keeps ``_result = (set key, {role: layer}, kind of job)`` of the last
    result written, and emits the widget's ``results_written`` signal.
    """

    _result = None
    _live_index = None

    @property
    def table_data(self) -> dict:
        """The metric table shown: ``{column: {row: value}}`` (empty before a fusion)."""
        return self.table.data

    def last_result(self) -> dict:
        """``{role: layer}`` of the last result written (empty before the first)."""
        return dict(self._result[1]) if self._result is not None else {}

    @property
    def live_slice(self) -> int | None:
        """The stack slice the output layers last received in Live mode (None after a whole fusion)."""
        return self._live_index

    def map_choice(self) -> O.MapChoice | None:
        """The map "Show map" picks (None: the fused image)."""
        return self.show_map.currentData()

    def _on_map_choice(self, *_):
        """Show the chosen map of the last result at once (no new fusion)."""
        choice = self.map_choice()
        self.show_map.setToolTip(O.MAP_MEANING[choice.kind] if choice else "the fused image, no map")
        if self._result is not None:
            O.show_map(self._result[1], choice)

    def _on_channel(self, *_):
        """The maps are per channel: the last result is made again (same set, in place)."""
        if self._result is not None:
            self._submit(self._result[2])
        self.request_live()

    def _write_layers(self, outcome):
        """Write a result as its set of layers (in place when the same pair and settings made it)."""
        ctx = outcome.request.context
        specs = O.output_specs(outcome.result, ctx["like"], self.map_choice(), outcome.map_limits)
        grey_ndim = 2 if outcome.index is not None else len(L.spatial_shape(ctx["like"]))
        written = O.write_set(self.viewer, ctx["set"], ctx["label"], ctx["names"], specs, ctx["like"],
                              grey_ndim, outcome.index, outcome.slices)
        self._live_index = outcome.index
        self._result = (ctx["set"], written, "compare" if outcome.request.compare else "full")
        self.figure_btn.setEnabled(True)
        self.volume_btn.setVisible(outcome.lazy)
        self._last_note = None
        res = outcome.result
        where = (f"slice {outcome.index}" if outcome.index is not None
                 else f"{outcome.slices} slices" if outcome.stacked else "the image")
        wall = time.perf_counter() - ctx["clicked"]
        self.status.setText(f"Fused {where} with {res.preset or 'custom weights'} on {res.device}: "
                            f"{wall:.3f} s from click to layer (network {res.seconds:.3f} s); metrics follow.")
        self.results_written.emit(dict(written))

    def _write_baselines(self, outcome):
        """Add the baselines of a comparison to its set and show the set as a labelled grid."""
        ctx = outcome.request.context
        grey_ndim = len(L.spatial_shape(ctx["like"]))
        added = O.write_set(self.viewer, ctx["set"], ctx["label"], ctx["names"], O.baseline_specs(outcome.compare),
                            ctx["like"], grey_ndim)
        written = {**self._result[1], **added}
        self._result = (ctx["set"], written, "compare")
        self.show_map.setCurrentIndex(0)
        C.show_grid(self.viewer, C.grid_layers(ctx["inputs"], written))
        # fit every tile once the canvas has made the grid's viewboxes (they are empty until it draws)
        QTimer.singleShot(50, self._guard(self.viewer.reset_view))
        self.results_written.emit(dict(written))
