"""Reading volumes slice by slice, and writing the fused volume as OME-Zarr.

:func:`open_volume` reads a TIFF stack, a zarr array or OME-Zarr image, a
NIfTI file (``.nii``, ``.nii.gz``), a DICOM series (a file or the folder of
one series, values in their unit: SUV, HU) or a folder of PNG slices as a dask
array with one chunk per slice, plus its voxel size when the file states
one. NIfTI volumes are read in canonical orientation (:class:`NiftiVolume`:
axial slices, anterior up, the patient's right on the left) whatever their
voxel order on disk, and keep where they lie (:class:`Space`,
:attr:`Volume.geometry`). The readers are small picklable
objects that open the file when a slice is asked for, so the same graph
runs on threads, processes or dask.distributed workers that see the same
file system.

:class:`OmeZarrOutput` is the fused volume on disk: OME-Zarr 0.4 (zarr
format 2), one array ``0`` of float32 in [0, 1], axes ``z, y, x`` (grey) or
``c, z, y, x`` (colour, three channels), one chunk per slice and the voxel
size as its scale. How it was made (the settings, the preset and its
sha256, the command, the contrast limits) is recorded in the group's
``lightfusion`` attribute and in the sidecar ``OUT.zarr.json`` beside it.
zarr writes every chunk to a temporary file and renames
it, so a chunk on disk is complete; :meth:`OmeZarrOutput.missing` lists
the slices still to write, which is what makes a rerun resume.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .geometry import Geometry
from .messages import first_line

#: Unit names (as files write them) -> OME-NGFF unit names.
UNITS = {
    "mm": "millimeter", "millimeter": "millimeter", "millimetre": "millimeter",
    "um": "micrometer", "\u00b5m": "micrometer", "\u03bcm": "micrometer", "micron": "micrometer",
    "micrometer": "micrometer", "micrometre": "micrometer",
    "nm": "nanometer", "nanometer": "nanometer", "cm": "centimeter", "centimeter": "centimeter",
    "m": "meter", "meter": "meter", "inch": "inch",
}

#: OME-NGFF unit names -> metres, to bring a file's axes to one unit.
METRES = {"meter": 1.0, "centimeter": 1e-2, "millimeter": 1e-3, "micrometer": 1e-6, "nanometer": 1e-9,
          "inch": 0.0254}

#: The attribute of an output group that records how it was made (settings, preset,
#: its sha256, the command); the same goes to the sidecar file ``OUT.zarr.json``
#: beside it (a file inside the folder would not be part of the zarr hierarchy).
RECORD = "lightfusion"

#: Where NIfTI volumes are read to: nibabel's closest canonical orientation, RAS+.
CANONICAL = "RAS"

#: The canonical volume as (slices, rows, columns): toward superior, posterior and the
#: patient's left, so an axial slice shows anterior up and the patient's right on the
#: left, as radiologists read it (nibabel axis codes; the same axes as DICOM's LPS).
DISPLAY_AXES = ("S", "P", "L")

#: A NIfTI slice across the file's fastest axis is read in slabs of at most this many bytes.
SLAB_BYTES = 32 * 2**20

@dataclass(frozen=True)
class Space:
    """Where a NIfTI volume's voxels lie in the patient, and how to go back to the file.

    ``input_affine`` maps the file's voxel indices ``(i, j, k, 1)`` to RAS+
    millimetres (the sform or qform, as nibabel reads it); ``affine`` maps
    the volume's indices as read, ``(z, y, x, 1)``, to the same millimetres.
    """

    input_affine: tuple
    input_axcodes: str
    affine: tuple
    shape: tuple[int, int, int]

    def record(self) -> dict:
        """The orientation as an output's sidecar keeps it (plain JSON)."""
        return {
            "canonical": CANONICAL + "+",
            "axes": dict(zip("zyx", DISPLAY_AXES, strict=True)),
            "zyx_to_ras": [list(row) for row in self.affine],
            "input_axcodes": self.input_axcodes,
            "input_affine": [list(row) for row in self.input_affine],
        }


@dataclass(frozen=True)
class Volume:
    """A volume read lazily: ``data`` ``(Z, Y, X)`` or ``(Z, Y, X, C)`` (dask, one chunk per slice).

    ``voxel_size`` is ``(z, y, x)`` in ``unit`` when the file says it, else
    ``None``; ``space`` is where a NIfTI volume lies in the patient (else ``None``).
    """

    def matrix(self) -> np.ndarray:
        """The data-to-world matrix: the geometry's, else the voxel size's diagonal (else the identity)."""
        if self.geometry is not None:
            return self.geometry.affine
        return np.diag([*(self.voxel_size or (1.0, 1.0, 1.0)), 1.0])

    path: str
    data: object
    rgb: bool
    voxel_size: tuple[float, float, float] | None
    unit: str | None
    space: Space | None = None
    #: where the voxels lie in the patient (NIfTI, DICOM; :mod:`~napari_lightfusion.geometry`), else None
    geometry: Geometry | None = None
    #: what a DICOM reader recorded (modality, unit of the values: SUV, HU), else None
    clinical: dict | None = None


def ngff_unit(name) -> str | None:
    return UNITS.get(str(name).strip().lower()) if name else None


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class _SliceReader:
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


class TiffStack(_SliceReader):
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


class PngFolder(_SliceReader):
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
            raise ValueError(
                f"slice {self.files[z]} has shape {image.shape}, the first slice {self.shape[1:]}"
            )
        return image.astype(self.dtype, copy=False)


@lru_cache(maxsize=8)
def _nifti(path: str, mtime_ns: int):
    """The image, loaded once per process with its file kept open (sequential reads of a .nii.gz)."""
    import nibabel

    return nibabel.load(path, keep_file_open=True)


class NiftiVolume(_SliceReader):
    """A 3D NIfTI volume in canonical orientation, read one axial slice at a time.

    The file's voxel axes are matched to the patient's by its affine
    (nibabel's ``io_orientation``: the closest canonical RAS+ orientation)
    and laid out as :data:`DISPLAY_AXES` says: slices go from inferior to
    superior, rows from anterior to posterior, columns from the patient's
    right to left (the radiological view of axial slices). Only the slice
    asked for is read: a file whose axial axis is its first (fastest) one
    is read in slabs of at most :data:`SLAB_BYTES`, since one slice across
    it spans the whole file.
    """

    def __init__(self, path: str):
        from nibabel.orientations import aff2axcodes, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        self.path = path
        image = self._image()
        shape = image.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) != 3:
            raise ValueError(f"cannot read {path}: a 3D NIfTI volume is needed, this one has shape {shape}")
        self.file_shape = tuple(int(n) for n in shape)
        affine = np.asarray(image.affine, dtype=float)
        _check_affine(path, affine)
        #: file axis i -> (display axis, +1 same direction / -1 reversed), a nibabel orientation
        self.ornt = ornt_transform(io_orientation(affine), axcodes2ornt(DISPLAY_AXES))
        axes = [int(a) for a in self.ornt[:, 0]]
        self.shape = tuple(self.file_shape[axes.index(d)] for d in range(3))
        self.slice_axis = axes.index(0)
        self.itemsize = np.dtype(image.get_data_dtype()).itemsize
        self.dtype = self.read(0).dtype
        zooms = [float(v) for v in image.header.get_zooms()[:3]]
        self.voxel_size = tuple(zooms[axes.index(d)] for d in range(3))
        self.unit = ngff_unit(image.header.get_xyzt_units()[0])
        self.space = Space(
            input_affine=_rows(affine), input_axcodes="".join(aff2axcodes(affine)),
            affine=_rows(affine @ inv_ornt_aff(self.ornt, self.file_shape)), shape=self.shape,
        )
        if image.get_data_dtype().names:  # RGB24 (what write_nifti writes for colour): channels last
            self.shape += (len(image.get_data_dtype().names),)

    def _image(self):
        return _nifti(self.path, os.stat(self.path).st_mtime_ns)

    def read(self, z: int) -> np.ndarray:
        from nibabel.orientations import apply_orientation

        a = self.slice_axis
        k = z if self.ornt[a, 1] > 0 else self.file_shape[a] - 1 - z
        plane = np.expand_dims(self._plane(a, k), a)  # the file's 3D layout, one voxel thick along a
        image = np.ascontiguousarray(apply_orientation(plane, self.ornt)[0])
        return np.stack([image[c] for c in image.dtype.names], -1) if image.dtype.names else image

    def _plane(self, a: int, k: int) -> np.ndarray:
        """Voxels ``k`` along file axis ``a``: the other two file axes, in file order."""
        proxy = self._image().dataobj
        extra = (0,) if len(proxy.shape) == 4 else ()
        if a != 0:
            index = [slice(None)] * 3
            index[a] = k
            return np.asarray(proxy[tuple(index) + extra])
        n0, n1, n2 = self.file_shape
        step = max(1, SLAB_BYTES // (n0 * n1 * self.itemsize))
        out = None
        for s in range(0, n2, step):  # each slab is a view of the whole slab read: copy out, let it go
            part = np.asarray(proxy[(k, slice(None), slice(s, s + step)) + extra])
            out = np.empty((n1, n2), part.dtype) if out is None else out
            out[:, s : s + step] = part
        return out


def _rows(matrix: np.ndarray) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in matrix)


def _check_affine(path: str, affine: np.ndarray) -> None:
    """``ValueError`` (one line) for an affine that does not place voxels in the patient (singular)."""
    linear = affine[:3, :3]
    norms = np.linalg.norm(linear, axis=0) if np.isfinite(affine).all() else np.zeros(3)
    if norms.min() == 0 or abs(np.linalg.det(linear)) < 1e-6 * np.prod(norms):
        raise ValueError(
            f"cannot read {path}: its affine (sform/qform) is degenerate, not invertible; fix its header first"
        )


def _ome_multiscales(attrs: dict) -> dict | None:
    attrs = attrs.get("ome", attrs)
    multiscales = attrs.get("multiscales")
    return multiscales[0] if multiscales else None


def _open_zarr(path: str) -> Volume:
    import dask.array as da
    import zarr

    node = zarr.open(path, mode="r")
    scale, unit, axes = None, None, None
    if isinstance(node, zarr.Group):
        ms = _ome_multiscales(dict(node.attrs))
        if ms is not None:
            dataset = ms["datasets"][0]
            array = node[dataset["path"]]
            axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])] or None
            units = [a.get("unit") for a in ms.get("axes", []) if isinstance(a, dict) and a.get("type") == "space"]
            unit = ngff_unit(units[0]) if units else None
            for transform in dataset.get("coordinateTransformations", []):
                if transform.get("type") == "scale":
                    scale = [float(v) for v in transform["scale"]]
        else:
            names = sorted(node.array_keys())
            if len(names) != 1:
                raise ValueError(f"cannot read {path}: a zarr group needs OME multiscales or exactly one array")
            array = node[names[0]]
    else:
        array = node
    data = da.from_zarr(array)
    if axes is None:  # a plain array: the layout fuse takes (colour last, as inputs.is_rgb says)
        colour = data.ndim >= 3 and data.shape[-1] in (3, 4)
        axes = (["z", "y", "x"][3 - data.ndim + colour :] + ["c"]) if colour else ["z", "y", "x"][3 - data.ndim :]
    if len(axes) != data.ndim:
        raise ValueError(f"cannot read {path}: its axes {axes} do not match its shape {data.shape}")
    for name in [a for a in axes if a not in ("c", "z", "y", "x")]:
        size = data.shape[axes.index(name)]
        if size != 1:
            raise ValueError(f"cannot read {path}: axis {name!r} has {size} entries; give one volume")
        data = data[tuple(0 if a == name else slice(None) for a in axes)]
        if scale is not None:
            scale.pop(axes.index(name))
        axes.remove(name)
    spatial = [a for a in ("z", "y", "x") if a in axes]
    order = [axes.index(a) for a in spatial] + ([axes.index("c")] if "c" in axes else [])
    data = data.transpose(order)
    rgb = "c" in axes
    if rgb and data.shape[-1] == 1:
        data, rgb = data[..., 0], False
    elif rgb and data.shape[-1] not in (3, 4):
        raise ValueError(f"cannot read {path}: {data.shape[-1]} channels; give grey or RGB")
    if "z" not in spatial:
        data = data[None]
    voxel = None
    if scale is not None:
        voxel = tuple([1.0] * (3 - len(spatial)) + [scale[axes.index(a)] for a in spatial])
    return Volume(path, data, rgb, voxel, unit)


def open_volume(path) -> Volume:
    """Open a volume for lazy reading; ``ValueError`` (one line) if it is missing or unreadable.

    Grey volumes are ``(Z, Y, X)``; colour ones ``(Z, Y, X, 3|4)``. A single
    2D image is a volume of one slice.
    """
    import dask.array as da
    from dask.base import tokenize

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{path} does not exist")
    name = p.name.lower()
    try:
        if p.is_dir() and (name.endswith(".zarr") or (p / ".zgroup").exists() or (p / ".zarray").exists()
                           or (p / "zarr.json").exists()):
            return _open_zarr(str(p))
        if name.endswith((".nii", ".nii.gz")):
            reader = NiftiVolume(str(p))
        elif name.endswith((".tif", ".tiff")):
            reader = TiffStack(str(p))
        elif _is_dicom(p):
            return _open_dicom(p)
        elif p.is_dir():
            reader = PngFolder(str(p))
        else:
            raise ValueError(
                f"cannot read {path}: give a TIFF stack, a zarr / OME-Zarr folder, a NIfTI file "
                "or a folder of PNG slices"
            )
    except Exception as exc:  # any reader failure is the file's fault: say so in one line
        first = first_line(exc)
        if first.startswith(f"cannot read {path}"):
            raise
        raise ValueError(f"cannot read {path}: {first}") from None
    stat = p.stat()
    data = da.from_array(
        reader, chunks=(1, *reader.shape[1:]), asarray=True, fancy=False,
        name=f"read-{tokenize(str(p.resolve()), stat.st_mtime_ns, stat.st_size)}",
    )
    rgb = len(reader.shape) == 4
    if not rgb and len(reader.shape) != 3:
        raise ValueError(f"cannot read {path}: shape {reader.shape} is not a grey or RGB volume")
    space = getattr(reader, "space", None)
    return Volume(str(p), data, rgb, getattr(reader, "voxel_size", None), getattr(reader, "unit", None),
                  space, None if space is None else Geometry.from_ras(space.affine))


def _is_dicom(path: Path) -> bool:
    from .dicom import holds_dicom, is_dicom

    return holds_dicom(path) if path.is_dir() else is_dicom(path)


def _open_dicom(path: Path) -> Volume:
    """One DICOM series (a file, or a folder that holds one) as a volume in the patient, values in their unit."""
    import dask.array as da

    from .dicom import read_dicom

    images, _ = read_dicom(path)
    if len(images) != 1:
        names = ", ".join(image.name for image in images)
        raise ValueError(f"cannot read {path}: it holds {len(images)} series ({names}); give the folder of one")
    image = images[0]
    data = da.asarray(image.data)
    if data.ndim - image.rgb == 2:
        data = data[None]
    data = data.rechunk((1, *data.shape[1:]))
    return Volume(str(path), data, bool(image.rgb), image.geometry.spacing, "millimeter", None, image.geometry,
                  image.clinical)


class OmeZarrOutput:
    """The fused volume on disk (see the module docstring); slices are written one at a time."""

    ARRAY = "0"

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, shape: tuple[int, int, int], rgb: bool, voxel_size=None, unit=None,
               name: str = "fused", translation=None) -> OmeZarrOutput:
        """A new, empty output of ``shape`` ``(Z, Y, X)`` (three channels when ``rgb``).

        ``translation``: where voxel ``(0, 0, 0)`` lies ``(z, y, x)``, an OME-NGFF
        translation after the scale.
        """
        import zarr

        z, y, x = shape
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.create_array(
            cls.ARRAY, shape=((3,) if rgb else ()) + (z, y, x), chunks=((3,) if rgb else ()) + (1, y, x),
            dtype="float32", fill_value=0.0, chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        space = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
        axes = ([{"name": "c", "type": "channel"}] if rgb else []) + space
        scale = ([1.0] if rgb else []) + [float(v) for v in (voxel_size or (1.0, 1.0, 1.0))]
        transforms = [{"type": "scale", "scale": scale}]
        if translation is not None:
            offset = ([0.0] if rgb else []) + [float(v) for v in translation]
            transforms.append({"type": "translation", "translation": offset})
        colours = ("FF0000", "00FF00", "0000FF") if rgb else ("FFFFFF",)
        group.attrs.update({
            "multiscales": [{
                "version": "0.4", "name": name, "axes": axes,
                "datasets": [{"path": cls.ARRAY, "coordinateTransformations": transforms}],
            }],
            "omero": {"channels": [
                {"color": c, "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}, "active": True}
                for c in colours
            ]},
        })
        return cls(path)

    def array(self):
        """The zarr array, open for writing (chunks equal to the fill value are still written)."""
        import zarr

        return zarr.open_array(str(self.path / self.ARRAY), mode="r+", config={"write_empty_chunks": True})

    @property
    def rgb(self) -> bool:
        return json.loads((self.path / self.ARRAY / ".zarray").read_text())["chunks"][0] == 3

    def missing(self, clean: bool = True) -> list[int]:
        """Slices whose chunk is not on disk yet; ``clean``: remove leftovers of interrupted writes."""
        for partial in self.path.rglob("*.partial") if clean else ():
            partial.unlink(missing_ok=True)
        meta = json.loads((self.path / self.ARRAY / ".zarray").read_text())
        rgb = meta["chunks"][0] == 3
        z = meta["shape"][1 if rgb else 0]
        key = (lambda i: f"0/{i}/0/0") if rgb else (lambda i: f"{i}/0/0")
        return [i for i in range(z) if not (self.path / self.ARRAY / key(i)).exists()]

    def write(self, z: int, image: np.ndarray, array=None) -> None:
        """Write slice ``z``: ``(Y, X)`` grey or ``(Y, X, 3)`` colour."""
        array = self.array() if array is None else array
        if array.ndim == 4:
            array[:, z] = np.moveaxis(np.asarray(image, np.float32), -1, 0)
        else:
            array[z] = np.asarray(image, np.float32)

    @property
    def sidecar(self) -> Path:
        """The sidecar file beside the output folder: ``OUT.zarr`` -> ``OUT.zarr.json``."""
        return self.path.with_name(self.path.name + ".json")

    def read_sidecar(self) -> dict | None:
        """The record of what was written (the group's ``lightfusion`` attribute), or ``None``."""
        import zarr

        try:
            attrs = zarr.open_group(str(self.path), mode="r").attrs
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        record = attrs.get(RECORD)
        return dict(record) if isinstance(record, dict) else None

    def write_sidecar(self, content: dict) -> None:
        """Record ``content`` in the group's ``lightfusion`` attribute and, atomically, the sidecar file."""
        import zarr

        zarr.open_group(str(self.path), mode="r+").attrs[RECORD] = content
        tmp = self.sidecar.with_name(f".{self.sidecar.name}.tmp")
        tmp.write_text(json.dumps(content, indent=2) + "\n")
        os.replace(tmp, self.sidecar)
