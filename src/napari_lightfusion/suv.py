"""SUV (body weight) of a PET series from its DICOM tags, as QIBA's SUV profile computes it.

SUV = C [Bq/ml] x weight [g] / (dose [Bq] x 2^(-dt / T1/2)): the activity
concentration the scanner stores, normalised by the injected dose (decayed
to the scan) per gram of patient. :func:`suv_factor` gives the factor and
what it was made of, or the tag that is missing, so the reader can keep
Bq/ml and say why (:mod:`napari_lightfusion.dicom_reader`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .dicom_tags import date_time, first_item, number, text

#: PET Units (0054,1001) -> the unit its values are shown in, when SUV cannot be computed.
PET_UNITS = {"BQML": "Bq/ml", "CNTS": "counts", "PROPCNTS": "counts", "GML": "SUV"}


def _missing(tag: str, reason: str) -> dict:
    return {"missing": tag, "reason": reason}


def _scan_time(ds, acquired) -> datetime | None:
    """When decay is counted to (QIBA): SeriesDate/Time, unless later than the earliest acquisition (post-processed)."""
    series = date_time(ds.get("SeriesDate"), ds.get("SeriesTime"))
    earliest = min(acquired) if acquired else None
    return earliest if series is None or (earliest is not None and series > earliest) else series


def _injection_time(drug, scan: datetime) -> datetime | None:
    """RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime on the scan's day (or the day before)."""
    from pydicom.valuerep import TM

    stamp = date_time(drug.get("RadiopharmaceuticalStartDateTime"))
    if stamp is not None:
        return stamp
    try:
        injection = datetime.combine(scan.date(), TM(str(drug.get("RadiopharmaceuticalStartTime"))))
    except (TypeError, ValueError):
        return None
    return injection - timedelta(days=1) if injection > scan else injection  # injected before midnight


def suv_factor(ds, acquired=()) -> dict:
    """SUV (body weight) per Bq/ml of a PET series, from its first slice's header ``ds``.

    SUV = C [Bq/ml] x weight [g] / (dose [Bq] x 2^(-dt / T1/2)), with the
    dose, half-life and injection time from RadiopharmaceuticalInformation-
    Sequence and the weight from PatientWeight. With DecayCorrection START,
    dt runs from the injection to the scan: SeriesDate/SeriesTime, or, as
    QIBA's SUV profile says, the earliest slice's acquisition time
    (``acquired``) when the series time is later (a series made after the
    scan); without RadiopharmaceuticalStartDateTime, the start time on the
    scan's day, the day before when it is later (dates across midnight).
    ADMIN: no decay factor. Units GML are SUV already (factor 1).

    Returns ``{"factor", "weight_kg", "dose_bq", "half_life_s", "decay_s",
    "decay_correction"}``, or ``{"missing": TAG, "reason": one line}`` when
    SUV cannot be computed (a missing or zero tag, Units not BQML).
    """
    units, correction = text(ds.get("Units")).upper(), text(ds.get("DecayCorrection")).upper()
    weight = number(ds.get("PatientWeight"), 0.0)
    known = {
        "weight_kg": weight or None,
        "dose_bq": None,
        "half_life_s": None,
        "decay_s": None,
        "decay_correction": correction,
    }
    if units == "GML":
        return {"factor": 1.0, **known}
    if units != "BQML":
        return _missing("Units", f"Units is {units or 'missing'}, not BQML")
    if not weight:
        return _missing("PatientWeight", "PatientWeight is missing or zero")
    drug = first_item(ds.get("RadiopharmaceuticalInformationSequence"))
    if drug is None:
        return _missing("RadiopharmaceuticalInformationSequence", "RadiopharmaceuticalInformationSequence is missing")
    dose, half_life = number(drug.get("RadionuclideTotalDose"), 0.0), number(drug.get("RadionuclideHalfLife"), 0.0)
    if not dose:
        return _missing("RadionuclideTotalDose", "RadionuclideTotalDose is missing or zero")
    if correction == "ADMIN":
        decay = 0.0
    elif correction == "START":
        if not half_life:
            return _missing("RadionuclideHalfLife", "RadionuclideHalfLife is missing or zero")
        scan = _scan_time(ds, acquired)
        if scan is None:
            return _missing("SeriesTime", "SeriesDate/SeriesTime and AcquisitionTime are missing")
        injection = _injection_time(drug, scan)
        if injection is None:
            return _missing("RadiopharmaceuticalStartTime", "RadiopharmaceuticalStartTime is missing")
        decay = (scan - injection).total_seconds()
        if decay < 0:
            return _missing("RadiopharmaceuticalStartDateTime", "the injection is recorded after the scan")
    else:
        return _missing("DecayCorrection", f"DecayCorrection is {correction or 'missing'}, not START or ADMIN")
    factor = weight * 1000.0 / (dose * 2.0 ** (-decay / half_life)) if decay else weight * 1000.0 / dose
    return {**known, "factor": factor, "dose_bq": dose, "half_life_s": half_life or None, "decay_s": decay}
