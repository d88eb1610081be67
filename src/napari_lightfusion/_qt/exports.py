"""What the widget writes to the clipboard and to files: the metric table, a figure, a fused volume, a screenshot."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QApplication, QFileDialog

from ..metric_registry import TIME
from . import compare
from .table_text import to_csv, to_tsv

#: The time column of an exported figure.
TIME_MS = "time (ms)"


class ExportActions:
    """Mixin of :class:`~napari_lightfusion._qt.widget.LightFusionWidget`: copy, CSV, figure, volume, screenshot.

    Uses the widget's ``viewer``, ``table_data``, ``pair()`` and
    ``last_result()``.
    """

    def copy_table(self):
        """Put the metric table on the clipboard, tab separated."""
        QApplication.clipboard().setText(to_tsv(self.table_data))

    def export_csv(self, path) -> Path:
        """Write the metric table to ``path`` as CSV."""
        Path(path).write_text(to_csv(self.table_data))
        return Path(path)

    def export_figure(self, path) -> Path:
        """Write one PNG: the inputs, the fused image and the baselines of the last result
        as labelled tiles (the current slice, as napari shows it), the metric table beneath."""
        from .figure import DIRECTIONS, export_figure

        result = self.last_result()
        if not result:
            raise ValueError("fuse or compare first: there is no result to put in a figure")
        layers = compare.grid_layers(self.pair(), result)
        labels = [compare.tile_label(layer) for layer in layers]
        tiles = [(label, image) for label, (_, image) in zip(labels, compare.tiles(self.viewer, layers))]
        # times in milliseconds: a baseline's 0.0012 s would print as "0.001"
        table = {method: {(TIME_MS if k == TIME else k): (v * 1000 if k == TIME else v) for k, v in row.items()}
                 for method, row in self.table_data.items()}
        return Path(export_figure(tiles, table, path, caption=result["fused"].name,
                                  directions={**DIRECTIONS, TIME_MS: "↓"}, columns=min(len(tiles), 4)))

    def save_screenshot(self, path) -> Path:
        """Save what the canvas shows, cropped to the data at its resolution, as a PNG."""
        self.viewer.export_figure(str(path), flash=False)
        return Path(path)

    def _ask_path(self, title: str, default: str, filters: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self, title, default, filters)
        return path

    def _on_export_csv(self):
        if path := self._ask_path("Export metrics", "lightfusion_metrics.csv", "CSV (*.csv)"):
            self.export_csv(path)

    def _on_export_figure(self):
        if path := self._ask_path("Export figure", "lightfusion_comparison.png", "PNG (*.png)"):
            self.export_figure(path)

    def _on_export_volume(self):
        fused = self.last_result().get("fused")
        if fused is None:
            return
        from .volume_export import ask_and_export

        try:
            ask_and_export(self, self.viewer, fused, anatomical=self.pair()[0])
        except ValueError as exc:
            self._notify(show_error, str(exc))

    def _on_save_screenshot(self):
        if path := self._ask_path("Save screenshot", "lightfusion.png", "PNG (*.png)"):
            self.save_screenshot(path)
