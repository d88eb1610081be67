"""Reading volumes slice by slice: :func:`open_volume` for any file or folder the project reads.

:func:`open_volume` reads a TIFF stack, a zarr array or OME-Zarr image, a
NIfTI file (``.nii``, ``.nii.gz``), a DICOM series (a file or the folder of
one series, values in their unit: SUV, HU) or a folder of PNG slices as a dask
array with one chunk per slice, plus its voxel size when the file states
one. NIfTI volumes are read in canonical orientation
(:class:`~napari_lightfusion.nifti_reader.NiftiVolume`: axial slices,
anterior up, the patient's right on the left) whatever their voxel order on
disk, and keep where they lie (:class:`~napari_lightfusion.nifti_reader.Space`,
:attr:`Volume.geometry`). The readers
(:mod:`~napari_lightfusion.slice_readers`,
:mod:`~napari_lightfusion.nifti_reader`) are small picklable objects that
open the file when a slice is asked for, so the same graph runs on threads,
processes or dask.distributed workers that see the same file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import Geometry
from .messages import first_line
from .ngff_units import ngff_unit
from .nifti_reader import NiftiVolume, Space
from .slice_readers import PngFolder, TiffStack


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
        if p.is_dir() and (
            name.endswith(".zarr") or (p / ".zgroup").exists() or (p / ".zarray").exists() or (p / "zarr.json").exists()
        ):
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
        reader,
        chunks=(1, *reader.shape[1:]),
        asarray=True,
        fancy=False,
        name=f"read-{tokenize(str(p.resolve()), stat.st_mtime_ns, stat.st_size)}",
    )
    rgb = len(reader.shape) == 4
    if not rgb and len(reader.shape) != 3:
        raise ValueError(f"cannot read {path}: shape {reader.shape} is not a grey or RGB volume")
    space = getattr(reader, "space", None)
    return Volume(
        str(p),
        data,
        rgb,
        getattr(reader, "voxel_size", None),
        getattr(reader, "unit", None),
        space,
        None if space is None else Geometry.from_ras(space.affine),
    )


def _is_dicom(path: Path) -> bool:
    from .dicom_files import holds_dicom, is_dicom

    return holds_dicom(path) if path.is_dir() else is_dicom(path)


def _open_dicom(path: Path) -> Volume:
    """One DICOM series (a file, or a folder that holds one) as a volume in the patient, values in their unit."""
    import dask.array as da

    from .dicom_reader import read_dicom

    images, _ = read_dicom(path)
    if len(images) != 1:
        names = ", ".join(image.name for image in images)
        raise ValueError(f"cannot read {path}: it holds {len(images)} series ({names}); give the folder of one")
    image = images[0]
    data = da.asarray(image.data)
    if data.ndim - image.rgb == 2:
        data = data[None]
    data = data.rechunk((1, *data.shape[1:]))
    return Volume(
        str(path), data, bool(image.rgb), image.geometry.spacing, "millimeter", None, image.geometry, image.clinical
    )
