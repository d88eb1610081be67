"""TIFF stacks and folders of PNG slices, read one slice at a time.

The readers are small picklable array-likes that open the file when a
slice is asked for (what ``da.from_array`` needs), so the same graph runs
on threads, processes or dask.distributed workers that see the same file
system; :class:`SliceReader` is their base (the NIfTI reader's too). A
TIFF stack's voxel size comes from its OME-XML, else its ImageJ metadata
and resolution tags.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .ngff_units import METRES, ngff_unit


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class SliceReader:
    """Array-like over a file, read one slice (first axis) at a time: what ``da.from_array`` needs."""

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        zs = range(self.shape[0])[key[0]]
        slices = [self.read(z) for z in zs]
        out = np.stack(slices) if slices else np.empty((0, *self.shape[1:]), self.dtype)
        return out[(slice(None), *key[1:])]

    def read(self, z: int) -> np.ndarray:  # pragma: no cover - every reader defines it
        raise NotImplementedError


class TiffStack(SliceReader):
    """The first series of a TIFF file, grey or RGB (samples moved last), one page per slice.

    A series stored as a single page (an RGB image with separate planes, say)
    is read whole for each slice; it is one slice or a small stack anyway.
    """

    def __init__(self, path: str):
        import tifffile

        self.path = path
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, axes, self.dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
            self.single = len(series.pages) == 1
            self.voxel_size, self.unit = _tiff_voxel(tif)
        self.samples_first = "S" in axes and axes.index("S") != len(axes) - 1
        if self.samples_first:
            s = axes.index("S")
            shape = shape[:s] + shape[s + 1 :] + (shape[s],)
        if len(shape) == 2 or (len(shape) == 3 and "S" in axes):
            shape = (1, *shape)
        if len(shape) not in (3, 4):
            raise ValueError(f"cannot read {path}: a TIFF series of axes {axes} is not a grey or RGB stack")
        self.shape = shape

    def read(self, z: int) -> np.ndarray:
        import tifffile

        if self.single:
            return self._layout(tifffile.imread(self.path, series=0)).reshape(self.shape)[z]
        return self._layout(tifffile.imread(self.path, series=0, key=z)).reshape(self.shape[1:])

    def _layout(self, image: np.ndarray) -> np.ndarray:
        """Samples last, as :func:`napari_lightfusion.fuse` takes colour (planar samples precede Y, X)."""
        return np.moveaxis(image, -3, -1) if self.samples_first else image


def _tiff_voxel(tif) -> tuple[tuple[float, float, float] | None, str | None]:
    """Voxel size and unit from OME-XML, else ImageJ metadata and the resolution tags, when present."""
    voxel, unit = _ome_voxel(tif)
    if voxel is not None:
        return voxel, unit
    page = tif.pages.first
    ij = tif.imagej_metadata or {}
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if xres is None or yres is None:
        return None, None
    (xn, xd), (yn, yd) = xres.value, yres.value
    unit = ngff_unit(ij.get("unit"))
    resunit = page.tags.get("ResolutionUnit")
    if unit is None and resunit is not None:
        unit = {2: "inch", 3: "centimeter"}.get(int(resunit.value))
    if unit is None and (xn, xd, yn, yd) == (1, 1, 1, 1) and "spacing" not in ij:
        return None, None
    dx = xd / xn if xn else 1.0
    dy = yd / yn if yn else 1.0
    return (float(ij.get("spacing", 1.0)), float(dy), float(dx)), unit


def _ome_voxel(tif) -> tuple[tuple[float, float, float] | None, str | None]:
    """``PhysicalSizeZ/Y/X`` of the first OME image, in the unit of X (OME's default: micrometres).

    ``(None, None)`` when the file has no OME-XML or it gives no size in
    the plane; a missing Z (a single plane, or not stated) counts as 1.
    """
    import tifffile

    if not tif.is_ome or not tif.ome_metadata:
        return None, None
    try:
        image = tifffile.xml2dict(tif.ome_metadata).get("OME", {}).get("Image") or {}
    except (SyntaxError, AttributeError):  # malformed OME-XML (ParseError): use the other metadata
        return None, None
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels") or {}
    size = {a: pixels.get(f"PhysicalSize{a}") for a in "ZYX"}
    if size["X"] is None and size["Y"] is None:
        return None, None
    size["X"] = size["X"] if size["X"] is not None else size["Y"]
    size["Y"] = size["Y"] if size["Y"] is not None else size["X"]
    units = {a: ngff_unit(pixels.get(f"PhysicalSize{a}Unit", "\u00b5m")) for a in "ZYX"}
    unit = units["X"]
    metres = {a: METRES.get(units[a]) for a in "ZYX"}
    if None in metres.values():  # a unit we do not know: the numbers as they stand
        return tuple(float(size[a]) if size[a] is not None else 1.0 for a in "ZYX"), None
    z = float(size["Z"]) * metres["Z"] / metres["X"] if size["Z"] is not None else 1.0
    return (z, float(size["Y"]) * metres["Y"] / metres["X"], float(size["X"])), unit


class PngFolder(SliceReader):
    """A folder of PNG slices, in natural order of their names (slice2 before slice10)."""

    def __init__(self, path: str):
        import imageio.v3 as iio

        self.files = [str(p) for p in sorted(Path(path).glob("*.[pP][nN][gG]"), key=_natural_key)]
        if not self.files:
            raise ValueError(f"cannot read {path}: the folder holds no PNG slices")
        first = iio.imread(self.files[0])
        self.shape, self.dtype = (len(self.files), *first.shape), first.dtype

    def read(self, z: int) -> np.ndarray:
        import imageio.v3 as iio

        image = iio.imread(self.files[z])
        if image.shape != self.shape[1:]:
            raise ValueError(f"slice {self.files[z]} has shape {image.shape}, the first slice {self.shape[1:]}")
        return image.astype(self.dtype, copy=False)
