"""Length units as files name them, brought to OME-NGFF's names and to metres.

TIFF (ImageJ, OME-XML), NIfTI and zarr files spell a voxel's unit in many
ways ("mm", "\u00b5m", "micron", ...); :func:`ngff_unit` gives the OME-NGFF
name the readers and the OME-Zarr output use, :data:`METRES` its length.
"""

from __future__ import annotations

#: Unit names (as files write them) -> OME-NGFF unit names.
UNITS = {
    "mm": "millimeter",
    "millimeter": "millimeter",
    "millimetre": "millimeter",
    "um": "micrometer",
    "\u00b5m": "micrometer",
    "\u03bcm": "micrometer",
    "micron": "micrometer",
    "micrometer": "micrometer",
    "micrometre": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "cm": "centimeter",
    "centimeter": "centimeter",
    "m": "meter",
    "meter": "meter",
    "inch": "inch",
}

#: OME-NGFF unit names -> metres, to bring a file's axes to one unit.
METRES = {"meter": 1.0, "centimeter": 1e-2, "millimeter": 1e-3, "micrometer": 1e-6, "nanometer": 1e-9, "inch": 0.0254}


def ngff_unit(name) -> str | None:
    return UNITS.get(str(name).strip().lower()) if name else None
