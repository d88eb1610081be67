"""Reading DICOM tag values leniently: a number, a text, a date and time, a sequence's first item.

Scanners leave tags out, write them empty or malformed; the readers
(:mod:`napari_lightfusion.dicom_reader`, :mod:`napari_lightfusion.suv`) ask for
values through these and get a default instead of an exception. pydicom's
value types (DS, IS, DA, TM, DT) do the parsing.
"""

from __future__ import annotations

from datetime import datetime


def number(value, default):
    """A DICOM number (DS, IS) as float; ``default`` when absent or empty."""
    try:
        return default if value is None or str(value).strip() == "" else float(value)
    except (TypeError, ValueError):
        return default


def floats(value) -> tuple | None:
    """A multi-valued number (IPP, IOP, PixelSpacing) as a tuple of floats; ``None`` when absent or empty."""
    return tuple(float(v) for v in value) if value not in (None, "") and len(value) else None


def first_item(sequence):
    """The first item of a sequence; ``None`` when it is absent or empty."""
    return sequence[0] if sequence else None


def text(value) -> str:
    """A value as text; "" when absent."""
    return "" if value is None else str(value)


def date_time(date, time=None) -> datetime | None:
    """DA + TM (or one DT, its time zone dropped) as a datetime; ``None`` when absent or malformed."""
    from pydicom.valuerep import DA, DT, TM

    try:
        if time is None:
            return DT(str(date)).replace(tzinfo=None) if date else None
        return datetime.combine(DA(str(date)), TM(str(time))) if date and time else None
    except (TypeError, ValueError):
        return None
