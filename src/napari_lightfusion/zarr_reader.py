"""napari's reader for the OME-Zarr folders this project writes: placed in the patient, colour as colour.

napari's own zarr reader opens a fused volume with scale ``[1, 1, 1]`` (a
3 mm-slice volume flattened in 3D) and a colour one as a channel slider.
:func:`get_reader` (the ``napari.yaml`` reader contribution) claims only
folders whose group has the ``lightfusion`` record
(:data:`~napari_lightfusion.ome_zarr_output.RECORD`) and leaves every other zarr
to the other readers. :func:`read_fused` gives one image layer, lazily
(dask, one chunk per slice): placed by the record's geometry (the
anatomical volume's ``(z, y, x)`` -> patient affine; ``scale``/``translate``,
or ``affine`` when oblique), else by the OME-NGFF scale and translation;
grey with contrast limits ``(0, 1)``, colour as an RGB layer (channels moved
last). No napari import: the layers are napari's layer-data tuples.
"""

from __future__ import annotations

import json
from pathlib import Path

from .geometry import Geometry
from .ngff_units import ngff_unit
from .ome_zarr_output import RECORD


def _attributes(path) -> dict | None:
    """The group attributes of a lightfusion output folder (zarr format 2), else ``None``."""
    try:
        attrs = json.loads((Path(path) / ".zattrs").read_text())
    except (OSError, ValueError):
        return None
    return attrs if isinstance(attrs, dict) and isinstance(attrs.get(RECORD), dict) else None


def get_reader(path):
    """npe2 reader hook: :func:`read_fused` for an OME-Zarr folder written here, else ``None``."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return read_fused if _attributes(path) is not None else None


def read_fused(path) -> list[tuple]:
    """The fused volume at ``path`` as one napari image layer ``(data, kwargs, "image")`` (see the module)."""
    import dask.array as da

    path = Path(path[0] if isinstance(path, list | tuple) else path)
    attrs = _attributes(path)
    if attrs is None:
        raise ValueError(f"{path} is not an OME-Zarr folder written by napari-lightfusion")
    multiscale = attrs["multiscales"][0]
    dataset = multiscale["datasets"][0]
    axes = multiscale["axes"]
    rgb = axes[0]["name"] == "c"
    data = da.from_zarr(str(path / dataset["path"]))
    if rgb:
        data = da.moveaxis(data, 0, -1)
    record = attrs[RECORD]
    if isinstance(record.get("geometry"), dict):
        placement = Geometry(record["geometry"]["affine"]).layer_kwargs()
    else:
        placement = _ngff_placement(dataset, axes[1:] if rgb else axes, rgb)
    kwargs = {
        "name": multiscale.get("name") or path.name.split(".")[0],
        "rgb": rgb,
        "multiscale": False,
        "contrast_limits": (0.0, 1.0),
        "metadata": {"fused_volume": {"path": str(path), **record}},
        **placement,
    }
    if not rgb:
        kwargs["colormap"] = "gray"
    return [(data, kwargs, "image")]


def _ngff_placement(dataset: dict, space: list, rgb: bool) -> dict:
    """``scale``/``translate`` (and ``units`` when stated) from a dataset's coordinate transformations."""
    placement = {}
    for transform in dataset.get("coordinateTransformations", []):
        kind = transform.get("type")
        if kind in ("scale", "translation"):
            values = [float(v) for v in transform[kind]][1 if rgb else 0 :]
            placement["scale" if kind == "scale" else "translate"] = tuple(values)
    units = [ngff_unit(a.get("unit")) for a in space]
    if all(units):
        placement["units"] = tuple(units)
    return placement
