"""Showing a job's result: its set of layers, the map on show, the status line with the timing."""

from __future__ import annotations

import time

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFont, QFontMetricsF
from qtpy.QtWidgets import QGroupBox, QMainWindow

from . import compare, layer_io, outputs
from .map_view import make_room, map_limits


def metrics_title(viewer, ndim: int, index: int | None) -> tuple[str, str]:
    """The metric group's title and tooltip: which slice the numbers are for, and whether it is the one on view.

    ``ndim`` is the anatomical layer's number of spatial axes, ``index`` the
    slice of its stack (its first axis) the table describes, None for a
    single image. The network fuses a stack slice by slice along that axis
    (axial slices for the project's volumes); a view of another plane (dims
    order rolled, or 3D) does not show what the numbers describe, and the
    title says so.
    """
    if index is None:
        return "Metrics (the image)", "Metrics of the fused image and of the baselines"
    axis = viewer.dims.ndim - ndim  # the world axis of the stack's slices
    axial = viewer.dims.ndisplay == 2 and axis not in viewer.dims.displayed
    tip = (f"Metrics of axial slice {index}: the network fuses the stack slice by slice along its first "
           "(axial) axis, and the numbers are for that slice")
    if axial:
        return f"Metrics (axial slice {index})", tip
    return (f"Metrics (axial slice {index}, not the plane on view)",
            f"{tip}, not for the plane on view: set the view back to axial slices to see it")


class ResultView:
    """Mixin of :class:`~napari_lightfusion._qt.widget.LightFusionWidget`: writes and shows results.

    Keeps ``_result = (set key, {role: layer}, kind of job)`` of the last
    result written, and emits the widget's ``results_written`` signal.
    """

    _result = None
    _live_index = None
    _kept_maps = None  # (ChannelMaps, request context, slices) of the last result, for the Map channel
    _metric_slice = None  # (spatial axes of the anatomical layer, slice) the metric table describes

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

    def map_choice(self) -> outputs.MapChoice | None:
        """The map "Show map" picks (None: the fused image)."""
        return self.show_map.currentData()

    def _on_map_choice(self, *_):
        """Show the chosen map of the last result at once (no new fusion)."""
        box = self.show_map
        box.setToolTip(box.itemData(box.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")
        if self._result is not None:
            self._show_choice(self._result[1])

    def _show_choice(self, layers: dict) -> None:
        """Show the chosen map of the set ``layers`` (or its fused image), its colour bar clear of the image."""
        choice = self.map_choice()
        outputs.show_map(layers, choice)
        if choice is not None and choice.role in layers:
            make_room(self.viewer, layers[choice.role])

    def _offer_weight(self, names: tuple[str, str] | None) -> None:
        """Offer "mix weight" in "Show map" for a result that has one (``names``: its inputs), else not.

        Called before a result's layers are written: when the weight was on
        show and the new result has none, the fused image is shown instead.
        """
        box = self.show_map
        at = next((i for i in range(box.count()) if box.itemData(i) == outputs.WEIGHT_CHOICE), -1)
        if names is None:
            if at >= 0:
                if box.currentIndex() == at:
                    box.setCurrentIndex(0)
                box.removeItem(at)
            return
        if at < 0:
            box.addItem("mix weight", outputs.WEIGHT_CHOICE)
            at = box.count() - 1
        box.setItemData(at, outputs.weight_meaning(names), Qt.ItemDataRole.ToolTipRole)
        if box.currentIndex() == at:
            box.setToolTip(outputs.weight_meaning(names))

    def _on_channel(self, *_):
        """Show the chosen channel's maps from the kept maps at once; else make the last result again."""
        if self._show_kept_channel():
            return
        if self._result is not None:
            self._submit(self._result[2])
        self.request_live()

    def _show_kept_channel(self) -> bool:
        """Write the Map channel's maps of the last result from its kept every-channel maps (no fusion).

        Returns False when nothing fits: no kept maps (a lazy or a large
        result), the set is gone, or a stack shows another slice than the
        one whose maps were kept.
        """
        if self._result is None or self._kept_maps is None:
            return False
        kept, ctx, slices = self._kept_maps
        layers = outputs.set_layers(self.viewer, ctx["set"])
        if self._result[0] != ctx["set"] or not layers:
            return False
        if kept.index is not None and layer_io.data_index(ctx["like"], self.viewer.dims.point) != kept.index:
            return False
        channel = self.channel.currentData()
        specs = [(role, data, dict(contrast_limits=map_limits(data)))
                 for role, data in kept.pick(channel).items() if role in layers]
        outputs.write_set(self.viewer, ctx["set"], ctx["label"], ctx["names"], specs, ctx["like"], 2,
                          kept.index, slices)
        what = "the mean of all channels" if channel is None else f"channel {channel}"
        where = "" if kept.index is None else (
            f" on slice {kept.index} (the other slices keep their maps until the next Fuse)")
        self.status.setText(f"Maps of {what}{where}, from the last result: no new fusion.")
        return True

    def _write_layers(self, outcome):
        """Write a result as its set of layers (in place when the same pair and settings made it)."""
        ctx = outcome.request.context
        self._offer_weight(ctx["names"] if outcome.result.weight is not None else None)
        specs = outputs.output_specs(outcome.result, ctx["like"], self.map_choice(), outcome.map_limits)
        grey_ndim = 2 if outcome.index is not None else len(layer_io.spatial_shape(ctx["like"]))
        written = outputs.write_set(self.viewer, ctx["set"], ctx["label"], ctx["names"], specs, ctx["like"],
                              grey_ndim, outcome.index, outcome.slices)
        if ctx.get("alignment") is not None and "fused" in written:
            written["fused"].metadata[outputs.MARK]["alignment"] = ctx["alignment"]
        self._show_choice(written)  # a new set shows the chosen map, with its colour bar
        self._live_index = outcome.index
        self._result = (ctx["set"], written, "compare" if outcome.request.compare else "full")
        index = outcome.index
        if index is None and outcome.stacked:
            index = min(max(outcome.request.metric_index, 0), outcome.slices - 1)
        self._describe_metrics(len(layer_io.spatial_shape(ctx["like"])), index)
        self.figure_btn.setEnabled(True)
        self.volume_btn.setVisible(outcome.lazy or (outcome.stacked and outcome.index is None))
        self._last_note = None
        res = outcome.result
        where = (f"slice {outcome.index}" if outcome.index is not None
                 else f"{outcome.slices} slices" if outcome.stacked else "the image")
        wall = time.perf_counter() - ctx["clicked"]
        self.status.setText(f"Fused {where} with {res.preset or 'custom weights'} on {res.device}: "
                            f"{wall:.3f} s from click to layer (network {res.seconds:.3f} s); metrics follow.")
        self.results_written.emit(dict(written))

    def _describe_metrics(self, ndim: int, index: int | None) -> None:
        """Title the metric group with the slice the table describes (and follow later changes of the view)."""
        if self._metric_slice is None:  # the first result: the title follows the dims from now on
            for event in (self.viewer.dims.events.order, self.viewer.dims.events.ndisplay):
                event.connect(self._guard(self._title_metrics))
        self._metric_slice = (ndim, index)
        self._title_metrics()

    def _title_metrics(self, *_):
        """Set the metric group's title and tooltip (:func:`metrics_title`) for the view as it is now."""
        box = self.table.parentWidget()  # the group box the controls put the table in
        if isinstance(box, QGroupBox) and self._metric_slice is not None:
            title, tip = metrics_title(self.viewer, *self._metric_slice)
            box.setTitle(title)
            box.setToolTip(tip)

    def _write_baselines(self, outcome):
        """Add the baselines of a comparison to its set and show the set as a labelled grid."""
        ctx = outcome.request.context
        grey_ndim = len(layer_io.spatial_shape(ctx["like"]))
        added = outputs.write_set(self.viewer, ctx["set"], ctx["label"], ctx["names"],
                                  outputs.baseline_specs(outcome.compare), ctx["like"], grey_ndim)
        written = {**self._result[1], **added}
        self._result = (ctx["set"], written, "compare")
        self.show_map.setCurrentIndex(0)
        tiles = compare.grid_layers(ctx["inputs"], written)
        compare.show_grid(self.viewer, tiles)
        self._fit_tile_labels(tiles)
        # fit every tile once the canvas has made the grid's viewboxes (they are empty until it draws)
        QTimer.singleShot(50, self._guard(self.viewer.reset_view))
        self.results_written.emit(dict(written))

    def _fit_tile_labels(self, tiles: list) -> float:
        """Give the Compare tiles' labels a font size at which each name fits its tile (returns it)."""
        window = self.window()
        canvas = window.centralWidget() if isinstance(window, QMainWindow) else None  # the viewer's canvas
        _, columns = layer_io.grid_of(self.viewer).actual_shape(self.viewer.layers)
        width = (canvas.width() if canvas is not None else 1000) / max(columns, 1)

        def text_width(text: str, points: float) -> float:
            font = QFont(self.font())
            font.setPointSizeF(points)
            return QFontMetricsF(font).horizontalAdvance(text)

        return compare.fit_labels(tiles, width, text_width)
