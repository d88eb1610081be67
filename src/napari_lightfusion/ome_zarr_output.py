"""The fused volume on disk as OME-Zarr, written slice by slice and resumed where it stopped.

:class:`OmeZarrOutput` is OME-Zarr 0.4 (zarr format 2), one array ``0`` of
float32 in [0, 1], axes ``z, y, x`` (grey) or ``c, z, y, x`` (colour, three
channels), one chunk per slice and the voxel size as its scale. How it was
made (the settings, the preset and its sha256, the command, the contrast
limits) is recorded in the group's ``lightfusion`` attribute and in the
sidecar ``OUT.zarr.json`` beside it. zarr writes every chunk to a temporary
file and renames it, so a chunk on disk is complete;
:meth:`OmeZarrOutput.missing` lists the slices still to write, which is what
makes a rerun resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: The attribute of an output group that records how it was made (settings, preset,
#: its sha256, the command); the same goes to the sidecar file ``OUT.zarr.json``
#: beside it (a file inside the folder would not be part of the zarr hierarchy).
RECORD = "lightfusion"


class OmeZarrOutput:
    """The fused volume on disk (see the module docstring); slices are written one at a time."""

    ARRAY = "0"

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(
        cls,
        path,
        shape: tuple[int, int, int],
        rgb: bool,
        voxel_size=None,
        unit=None,
        name: str = "fused",
        translation=None,
    ) -> OmeZarrOutput:
        """A new, empty output of ``shape`` ``(Z, Y, X)`` (three channels when ``rgb``).

        ``translation``: where voxel ``(0, 0, 0)`` lies ``(z, y, x)``, an OME-NGFF
        translation after the scale.
        """
        import zarr

        z, y, x = shape
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        group.create_array(
            cls.ARRAY,
            shape=((3,) if rgb else ()) + (z, y, x),
            chunks=((3,) if rgb else ()) + (1, y, x),
            dtype="float32",
            fill_value=0.0,
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        space = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
        axes = ([{"name": "c", "type": "channel"}] if rgb else []) + space
        scale = ([1.0] if rgb else []) + [float(v) for v in (voxel_size or (1.0, 1.0, 1.0))]
        transforms = [{"type": "scale", "scale": scale}]
        if translation is not None:
            offset = ([0.0] if rgb else []) + [float(v) for v in translation]
            transforms.append({"type": "translation", "translation": offset})
        colours = ("FF0000", "00FF00", "0000FF") if rgb else ("FFFFFF",)
        group.attrs.update(
            {
                "multiscales": [
                    {
                        "version": "0.4",
                        "name": name,
                        "axes": axes,
                        "datasets": [{"path": cls.ARRAY, "coordinateTransformations": transforms}],
                    }
                ],
                "omero": {
                    "channels": [
                        {"color": c, "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}, "active": True}
                        for c in colours
                    ]
                },
            }
        )
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
