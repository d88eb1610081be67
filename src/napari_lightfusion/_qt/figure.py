"""One PNG for a paper or a report: labelled image tiles with the metric table beneath.

The widget's "Export figure" gives :func:`export_figure` the images of a
comparison (the inputs, LightFusionNet, the baselines) and their metrics.
It paints with Qt (``QImage`` + ``QPainter``, the default font), so it needs
no window and no new dependency: it works in napari, under Xvfb and with
``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from qtpy.QtCore import QRect, Qt
from qtpy.QtGui import QColor, QFont, QFontMetrics, QGuiApplication, QImage, QPainter, QPen

from ..metric_registry import METRICS, REGISTRY

#: Which way is better for each reported number ("↑" or "↓", from the metric registry).
DIRECTIONS: dict[str, str] = {name: info.arrow for name, info in REGISTRY.items()}

#: Smallest tile edge, pixels.
MIN_TILE = 256

_MARGIN = 24  # around everything
_GAP = 12  # between tiles
_BODY_PX, _LABEL_PX, _TITLE_PX = 14, 16, 20  # font pixel sizes
_ROW = 26  # table row height
_CELL_PAD = 10  # horizontal padding in a table cell
_INK = QColor(20, 20, 20)
_MUTED = QColor(90, 90, 90)
_APP = None  # the QGuiApplication made by _application(), when there was none


def _application() -> None:
    """Make sure a QGuiApplication exists (fonts need one); headless Linux gets 'offscreen'."""
    if QGuiApplication.instance() is not None:
        return
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and headless:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    global _APP  # kept alive for the process; Qt allows one application object
    _APP = QGuiApplication([sys.argv[0] if sys.argv else "lightfusion"])


def _rgb8(image, label: str) -> np.ndarray:
    """``image`` as contiguous (H, W, 3) uint8: grey is repeated, floats are taken as 0..1."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)) or a.size == 0:
        raise ValueError(f"tile '{label}' must be an (H, W) or (H, W, 3) image, not shape {a.shape}")
    if a.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5
    elif a.dtype.kind not in "biu":
        raise ValueError(f"tile '{label}' has data type {a.dtype}, which is not an image type")
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return np.ascontiguousarray(a)


def _qimage(rgb: np.ndarray) -> QImage:
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _font(px: int, bold: bool = False) -> QFont:
    font = QFont()
    font.setPixelSize(px)
    font.setBold(bold)
    return font


def _format(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 10 else f"{v:.3f}"


def _best(table: Mapping, metric: str, direction: str | None) -> set:
    """Methods holding the best finite value of ``metric`` (ties: all of them)."""
    if direction not in ("↑", "↓"):
        return set()
    values = {}
    for method, row in table.items():
        try:
            v = float(row.get(metric, math.nan))
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            values[method] = v
    if len(values) < 2:
        return set()
    best = max(values.values()) if direction == "↑" else min(values.values())
    return {m for m, v in values.items() if v == best}


def export_figure(
    tiles: Sequence[tuple[str, np.ndarray]],
    table: Mapping[str, Mapping[str, float]],
    path,
    *,
    title: str | None = None,
    caption: str | None = None,
    metrics: Sequence[str] | None = None,
    directions: Mapping[str, str] | None = None,
    tile_size: int = MIN_TILE,
    columns: int | None = None,
) -> Path:
    """Write one PNG: ``tiles`` in a labelled grid, the metric ``table`` beneath.

    ``tiles``: ``(label, image)`` pairs; an image is ``(H, W)`` grey or
    ``(H, W, 3)`` RGB (RGBA: alpha dropped), uint8 or float in [0, 1]. Each
    is scaled to fit a ``tile_size`` square (at least :data:`MIN_TILE`),
    keeping its aspect, under its label. ``table``: ``{method: {metric:
    value}}``; columns in ``metrics`` order (default: the ten of
    :data:`~napari_lightfusion.metric_registry.METRICS` that the table holds, then
    any other keys). ``directions``: ``{metric: "↑" or "↓"}`` (default
    :data:`DIRECTIONS`): shown in the header, and the best value of each
    such column is bold. ``title`` goes above, ``caption`` (e.g. the preset)
    below. ``columns``: tiles per row (default up to 5). White background,
    1x pixels. Returns the path written; raises ``ValueError`` (one line)
    for unusable tiles or an unwritable path.
    """
    if not tiles:
        raise ValueError("give at least one tile")
    rgbs = [(str(label), _rgb8(image, str(label))) for label, image in tiles]
    directions = DIRECTIONS if directions is None else directions
    methods = list(table)
    keys = [k for row in table.values() for k in row]
    if metrics is None:
        metrics = [m for m in METRICS if m in keys] + list(dict.fromkeys(k for k in keys if k not in METRICS))
    metrics = list(metrics)
    tile = max(MIN_TILE, int(tile_size))
    ncol = max(1, min(len(rgbs), columns or 5))
    nrow = math.ceil(len(rgbs) / ncol)

    _application()
    body, bold = _font(_BODY_PX), _font(_BODY_PX, True)
    label_font, title_font = _font(_LABEL_PX, True), _font(_TITLE_PX, True)
    fm_body, fm_bold = QFontMetrics(body), QFontMetrics(bold)
    label_h = QFontMetrics(label_font).height() + 6
    title_h = QFontMetrics(title_font).height() + 12 if title else 0

    # table geometry: first column holds method names, then one column per metric
    headers = [f"{m} {directions[m]}" if directions.get(m) in ("↑", "↓") else m for m in metrics]
    cells = {m: [_format(table[m].get(k, math.nan)) for k in metrics] for m in methods}
    name_w = max(fm_bold.horizontalAdvance(m) for m in ["Method", *methods]) + 2 * _CELL_PAD
    col_w = [
        max(fm_bold.horizontalAdvance(t) for t in [h, *(cells[m][j] for m in methods)]) + 2 * _CELL_PAD
        for j, h in enumerate(headers)
    ]
    table_w = name_w + sum(col_w) if methods and metrics else 0
    table_h = _ROW * (len(methods) + 1) + 8 if table_w else 0
    notes = []
    shown = {directions.get(k) for k in metrics} if table_w else set()
    meaning = [text for arrow, text in (("↑", "↑ higher is better"), ("↓", "↓ lower is better")) if arrow in shown]
    if meaning:
        notes.append(", ".join(meaning) + "; bold: best in its column")
    if table_w and {"SSIM", "VIF"} & set(metrics):
        notes.append("SSIM and VIF are sums over both sources, so they can exceed 1")
    if caption:
        notes.append(caption)
    note_h = fm_body.height() + 4

    grid_w = ncol * tile + (ncol - 1) * _GAP
    grid_h = nrow * (label_h + tile) + (nrow - 1) * _GAP
    width = 2 * _MARGIN + max(grid_w, table_w, *(fm_body.horizontalAdvance(n) for n in notes), 0)
    height = (
        2 * _MARGIN
        + title_h
        + grid_h
        + (_MARGIN + table_h if table_h else 0)
        + (12 + note_h * len(notes) if notes else 0)
    )

    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    p = QPainter(image)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setPen(_INK)
        y = _MARGIN
        if title:
            p.setFont(title_font)
            p.drawText(QRect(0, y, width, title_h), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, title)
            y += title_h
        x0 = (width - grid_w) // 2
        for i, (label, rgb) in enumerate(rgbs):
            r, c = divmod(i, ncol)
            x = x0 + c * (tile + _GAP)
            top = y + r * (label_h + tile + _GAP)
            p.setFont(label_font)
            p.setPen(_INK)
            p.drawText(QRect(x, top, tile, label_h), Qt.AlignmentFlag.AlignCenter, label)
            q = _qimage(rgb).scaled(
                tile, tile, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            box = QRect(x, top + label_h, tile, tile)
            p.fillRect(box, QColor("black"))
            p.drawImage(x + (tile - q.width()) // 2, top + label_h + (tile - q.height()) // 2, q)
        y += grid_h
        if table_h:
            y += _MARGIN
            _draw_table(
                p,
                (width - table_w) // 2,
                y,
                name_w,
                col_w,
                headers,
                methods,
                metrics,
                cells,
                table,
                directions,
                body,
                bold,
            )
            y += table_h
        if notes:
            y += 12
            p.setFont(body)
            p.setPen(_MUTED)
            for note in notes:
                p.drawText(QRect(0, y, width, note_h), Qt.AlignmentFlag.AlignCenter, note)
                y += note_h
    finally:
        p.end()
    path = Path(path)
    if not image.save(str(path), "PNG"):
        raise ValueError(f"could not write the figure to {path}")
    return path


def _draw_table(p, x, y, name_w, col_w, headers, methods, metrics, cells, table, directions, body, bold) -> None:
    """A booktabs-style table: rules above, under the header and below; best values bold."""
    width = name_w + sum(col_w)
    best = {k: _best(table, k, directions.get(k)) for k in metrics}
    left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
    right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    thick, thin = QPen(_INK, 2), QPen(_INK, 1)
    p.setPen(thick)
    p.drawLine(x, y, x + width, y)
    p.setPen(_INK)
    p.setFont(bold)
    p.drawText(QRect(x + _CELL_PAD, y, name_w - 2 * _CELL_PAD, _ROW), left, "Method")
    cx = x + name_w
    for h, w in zip(headers, col_w):
        p.drawText(QRect(cx + _CELL_PAD, y, w - 2 * _CELL_PAD, _ROW), right, h)
        cx += w
    y += _ROW
    p.setPen(thin)
    p.drawLine(x, y, x + width, y)
    p.setPen(_INK)
    for method in methods:
        p.setFont(body)
        p.drawText(QRect(x + _CELL_PAD, y, name_w - 2 * _CELL_PAD, _ROW), left, method)
        cx = x + name_w
        for k, text, w in zip(metrics, cells[method], col_w):
            p.setFont(bold if method in best[k] else body)
            p.drawText(QRect(cx + _CELL_PAD, y, w - 2 * _CELL_PAD, _ROW), right, text)
            cx += w
        y += _ROW
    p.setPen(thick)
    p.drawLine(x, y + 2, x + width, y + 2)
