"""What the dock writes to the clipboard and to files: the metric table, a figure, a fused volume, a screenshot."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QApplication, QFileDialog

from ..metric_registry import TIME
from ..session import compare
from ..session.model import FusionSession
from ..session.table_text import to_csv, to_tsv

#: The time column of an exported figure.
TIME_MS = "time (ms)"


class ExportActions:
    """Copy, CSV, figure, volume and screenshot of a session's result (what the dock's export buttons do).

    ``viewer`` is the napari viewer, ``session`` the dock's
    :class:`~napari_lightfusion.session.model.FusionSession` (its metric
    table, pair and result), ``progress`` the
    :class:`~napari_lightfusion._qt.progress.JobProgress` that shows a volume
    being written, ``parent`` the widget the save dialogs belong to.
    """

    def __init__(self, viewer, session: FusionSession, progress, parent):
        self.viewer = viewer
        self.session = session
        self.progress = progress
        self.parent = parent

    def copy_table(self) -> None:
        """Put the metric table on the clipboard, tab separated."""
        QApplication.clipboard().setText(to_tsv(self.session.metrics))

    def export_csv(self, path) -> Path:
        """Write the metric table to ``path`` as CSV."""
        Path(path).write_text(to_csv(self.session.metrics))
        return Path(path)

    def export_figure(self, path) -> Path:
        """Write one PNG: the inputs, the fused image and the baselines of the result on show
        as labelled tiles (the current slice, as napari shows it), the metric table beneath."""
        from .figure import DIRECTIONS, export_figure

        result = self.session.result
        if result is None:
            raise ValueError("fuse or compare first: there is no result to put in a figure")
        layers = compare.grid_layers(self.session.pair, result.layers)
        labels = [compare.tile_label(layer) for layer in layers]
        tiles = [(label, image) for label, (_, image) in zip(labels, compare.tiles(self.viewer, layers))]
        # times in milliseconds: a baseline's 0.0012 s would print as "0.001"
        table = {
            method: {(TIME_MS if k == TIME else k): (v * 1000 if k == TIME else v) for k, v in row.items()}
            for method, row in self.session.metrics.items()
        }
        return Path(
            export_figure(
                tiles,
                table,
                path,
                caption=result.layers["fused"].name,
                directions={**DIRECTIONS, TIME_MS: "↓"},
                columns=min(len(tiles), 4),
            )
        )

    def save_screenshot(self, path) -> Path:
        """Save what the canvas shows, cropped to the data at its resolution, as a PNG."""
        self.viewer.export_figure(str(path), flash=False)
        return Path(path)

    def _ask_path(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.parent, title, default, filters)
        return path

    def ask_csv(self) -> None:
        """ "Export CSV…": ask where, then :meth:`export_csv`."""
        if path := self._ask_path("Export metrics", "lightfusion_metrics.csv", "CSV (*.csv)"):
            self.export_csv(path)

    def ask_figure(self) -> None:
        """ "Export figure…": ask where, then :meth:`export_figure`."""
        if path := self._ask_path("Export figure", "lightfusion_comparison.png", "PNG (*.png)"):
            self.export_figure(path)

    def ask_screenshot(self) -> None:
        """ "Save screenshot…": ask where, then :meth:`save_screenshot`."""
        if path := self._ask_path("Save screenshot", "lightfusion.png", "PNG (*.png)"):
            self.save_screenshot(path)

    def ask_volume(self) -> None:
        """ "Export fused volume…": the fused layer of the result on show, where and in which format the user says."""
        result = self.session.result
        fused = None if result is None else result.layers.get("fused")
        if fused is None:
            return
        from .volume_export import ask_and_export

        try:
            ask_and_export(self.parent, self.viewer, fused, anatomical=self.session.pair[0], progress=self.progress)
        except ValueError as exc:
            self.session.say("error", str(exc))
