"""Write DICOM series the way scanners do, for tests: PET (Bq/ml, per-slice slopes), CT (HU) and MR.

No real PET DICOM is available offline, so tests write their own with
pydicom. Each writer takes a volume ``(slices, rows, columns)`` ordered
along the slice normal (the cross product of the row and column directions)
and writes one file per slice, with every tag a scanner writes that the
plugin reads: patient, study and series identity, frame of reference,
ImagePositionPatient / ImageOrientationPatient / PixelSpacing, rescale
slope and intercept, acquisition times, and for PET the units, decay
correction, patient weight and RadiopharmaceuticalInformationSequence.
Files are written in shuffled order under meaningless names without an
extension (``1729403857``), and InstanceNumber counts from the head down, so a
reader that sorts by file name or InstanceNumber gets the slices wrong.

    written = write_pet_series(tmp_path / "pet", activity_bq_ml, weight_kg=70, dose_bq=3.7e8)
    written.folder, written.files, written.values, written.suv_factor, written.world(k, r, c)

``omit=("PatientWeight",)`` leaves tags out (also inside the
radiopharmaceutical item); ``tags={...}`` sets or overrides top-level tags on
every slice. :func:`write_enhanced_mr` writes one Enhanced MR multi-frame file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

#: ImageOrientationPatient of an axial series: rows toward the patient's left, columns toward the back.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
#: A sagittal series: rows toward the back, columns toward the feet (the normal points to the right).
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
#: A coronal series: rows toward the left, columns toward the feet (the normal points to the back).
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)

SOP_CLASSES = {
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
}
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"

#: The patient every series is written for (tests check these never reach a layer's name).
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-0042", "PatientBirthDate": "19600214", "PatientSex": "F"}


@dataclass
class Written:
    """What a writer wrote: where, and what a correct reader must find there."""

    folder: Path
    #: the files, in slice order (ascending position along the slice normal)
    files: list[Path]
    #: stored value x RescaleSlope + RescaleIntercept, float32, (slices, rows, columns) in slice order
    values: np.ndarray
    #: ImagePositionPatient of each slice (LPS mm), in slice order
    positions: np.ndarray
    orientation: tuple
    #: (between slices, between rows, between columns) in mm
    spacing: tuple
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    #: PET: SUV (body weight) per Bq/ml from the tags written, as QIBA computes it; else None
    suv_factor: float | None = None

    def world(self, k: int, r: int, c: int) -> np.ndarray:
        """The plugin's world position ``(S, P, L)`` in mm of voxel (slice ``k``, row ``r``, column ``c``).

        Straight from the tags written: ImagePositionPatient + r x row spacing
        x the column direction + c x column spacing x the row direction, in
        LPS, read backwards (z = S, y = P, x = L).
        """
        along_row, down_column = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        lps = self.positions[k] + r * self.spacing[1] * down_column + c * self.spacing[2] * along_row
        return lps[::-1].copy()


def _dt(value: datetime) -> tuple[str, str]:
    return value.strftime("%Y%m%d"), value.strftime("%H%M%S.%f")[:13]


def _meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _drop(ds: Dataset, omit) -> None:
    for name in omit:
        if name in ds:
            delattr(ds, name)


def write_series(
    folder,
    volume,
    modality: str,
    *,
    spacing=(3.0, 2.0, 2.0),
    origin=(-32.0, -32.0, -20.0),
    orientation=AXIAL,
    positions=None,
    rescale=None,
    description="",
    series_number=1,
    series_time=datetime(2024, 1, 2, 10, 30),
    study_uid=None,
    series_uid=None,
    frame_of_reference_uid=None,
    shuffle=True,
    seed=0,
    omit=(),
    tags=None,
    series_tags=None,
) -> Written:
    """Write ``volume`` (slices, rows, columns, in the unit shown) as one file per slice; see the module.

    ``rescale``: a function ``slice -> (stored uint16/int16 array, slope,
    intercept)``; by default slope 1 / intercept 0, values rounded to
    uint16. ``positions`` (one ImagePositionPatient per slice) replaces
    ``origin + k x spacing[0] x normal`` (a gantry tilt, a gap).
    ``series_tags`` are series-level tags set before ``tags``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(volume, dtype=float)
    n = volume.shape[0]
    rng = np.random.default_rng(seed)
    along_row, down_column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(along_row, down_column)
    if positions is None:
        positions = np.asarray(origin, float) + np.arange(n)[:, None] * spacing[0] * normal
    positions = np.asarray(positions, float)
    study_uid, series_uid = study_uid or generate_uid(), series_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    tagged = rescale is not None  # MR without rescale writes no RescaleSlope / RescaleIntercept at all
    rescale = rescale or (lambda image: (np.round(image).astype(np.uint16), 1.0, 0.0))
    names = [str(v) for v in rng.choice(10**9, n, replace=False) + 10**9]  # as exporters write: digits, no order
    files, values = [None] * n, np.zeros(volume.shape, np.float32)
    for k in rng.permutation(n) if shuffle else range(n):
        stored, slope, intercept = rescale(volume[k])
        values[k] = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASSES[modality], generate_uid()
        for key, value in PATIENT.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "S1", "ACC77", "House^Gregory"
        ds.StudyDate, ds.StudyTime = _dt(series_time - timedelta(minutes=20))
        ds.SeriesDate, ds.SeriesTime = _dt(series_time)
        ds.AcquisitionDate, ds.AcquisitionTime = _dt(series_time + timedelta(seconds=30 + 2 * int(k)))
        ds.Modality, ds.Manufacturer, ds.SeriesNumber = modality, "Acme Medical", series_number
        if description:
            ds.SeriesDescription = description
        ds.InstanceNumber = n - k  # from the head down: sorting by it would flip the volume
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[2])]
        ds.SliceThickness = float(spacing[0]) * 1.5  # thicker than the spacing, as often: never the spacing
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = int(stored.dtype == np.int16)
        if tagged:
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}"[:16], f"{intercept:.10g}"[:16]
        ds.update(series_tags or {})
        ds.update(tags or {})
        _drop(ds, omit)
        ds.PixelData = stored.tobytes()
        ds.file_meta = _meta(ds.SOPClassUID, ds.SOPInstanceUID)
        files[k] = folder / names[k]
        pydicom.dcmwrite(files[k], ds, enforce_file_format=True)
    return Written(
        folder,
        files,
        values,
        positions,
        tuple(orientation),
        tuple(spacing),
        series_uid,
        study_uid,
        frame_of_reference_uid,
    )


def write_pet_series(
    folder,
    volume_bq_ml,
    *,
    spacing=(3.27, 2.0, 2.0),
    weight_kg=75.0,
    dose_bq=370e6,
    half_life_s=6586.2,
    injection_time=datetime(2024, 1, 2, 9, 30),
    series_time=datetime(2024, 1, 2, 10, 30),
    units="BQML",
    decay_correction="START",
    start_datetime=True,
    per_slice_slopes=True,
    description="PET AC",
    omit=(),
    tags=None,
    **kwargs,
) -> Written:
    """A PET series in Bq/ml, stored int16 with a slope per slice (each slice's maximum is 32767).

    ``start_datetime``: write RadiopharmaceuticalStartDateTime as well as
    RadiopharmaceuticalStartTime (old scanners write only the time).
    ``suv_factor`` of the result is weight [g] / (dose x 2^(-dt / T1/2)),
    dt from the injection to SeriesTime (START), no decay for ADMIN.
    Other keywords go to :func:`write_series`.
    """
    volume = np.asarray(volume_bq_ml, dtype=float)
    top = float(volume.max()) or 1.0

    def rescale(image):
        slope = (float(image.max()) or 1.0) / 32767 if per_slice_slopes else top / 32767
        return np.round(image / slope).astype(np.int16), slope, 0.0

    drug = Dataset()
    drug.Radiopharmaceutical = "Fluorodeoxyglucose"
    drug.RadiopharmaceuticalStartTime = _dt(injection_time)[1]
    if start_datetime:
        drug.RadiopharmaceuticalStartDateTime = "".join(_dt(injection_time))
    drug.RadionuclideTotalDose = f"{dose_bq:.6g}"
    drug.RadionuclideHalfLife = f"{half_life_s:.6g}"
    drug.RadionuclidePositronFraction = "0.97"
    _drop(drug, omit)
    series = Dataset()
    series.Units, series.DecayCorrection = units, decay_correction
    series.CorrectedImage = ["ATTN", "DECY", "NORM"]
    series.PatientWeight = f"{weight_kg:g}"
    series.RadiopharmaceuticalInformationSequence = Sequence([drug])
    written = write_series(
        folder,
        volume,
        "PT",
        spacing=spacing,
        rescale=rescale,
        description=description,
        series_time=series_time,
        omit=omit,
        tags=tags,
        series_tags=series,
        **kwargs,
    )
    decay = 0.0 if decay_correction == "ADMIN" else (series_time - injection_time).total_seconds()
    written.suv_factor = weight_kg * 1000.0 / (dose_bq * 2.0 ** (-decay / half_life_s))
    return written


def write_ct_series(
    folder, volume_hu, *, spacing=(2.5, 0.8, 0.8), description="Head soft tissue", tilt_deg=0.0, **kwargs
) -> Written:
    """A CT series in HU, stored uint16 with RescaleIntercept -1024 (values rounded to whole HU).

    ``tilt_deg``: a gantry tilt, as scanners write it: the slice plane is
    tilted about the left-right axis but the slices step along the table
    (the patient's z), so they are not stacked along their normal.
    """
    volume = np.asarray(volume_hu, dtype=float)
    tags = {
        "RescaleType": "HU",
        "KVP": "120",
        "GantryDetectorTilt": f"{tilt_deg:g}",
        "ConvolutionKernel": "B30f",
        "WindowCenter": "40",
        "WindowWidth": "400",
        **kwargs.pop("tags", {}),
    }
    if tilt_deg:
        t = np.radians(tilt_deg)
        kwargs["orientation"] = (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))
        origin = np.asarray(kwargs.pop("origin", (-32.0, -32.0, -20.0)), float)
        kwargs["positions"] = origin + np.arange(volume.shape[0])[:, None] * np.array([0.0, 0.0, spacing[0]])

    def rescale(image):
        return np.clip(np.round(image) + 1024, 0, 4095).astype(np.uint16), 1.0, -1024.0

    return write_series(
        folder, volume, "CT", spacing=spacing, rescale=rescale, description=description, tags=tags, **kwargs
    )


def write_mr_series(folder, volume, *, spacing=(1.2, 1.0, 1.0), description="T1 MPRAGE", **kwargs) -> Written:
    """An MR series as stored (uint16, no rescale tags: MR values have no unit)."""
    tags = {
        "MagneticFieldStrength": "3",
        "EchoTime": "2.3",
        "RepetitionTime": "2300",
        "ScanningSequence": "GR",
        **kwargs.pop("tags", {}),
    }
    return write_series(folder, volume, "MR", spacing=spacing, description=description, tags=tags, **kwargs)


def write_enhanced_mr(
    path,
    volume,
    *,
    spacing=(2.0, 1.0, 1.0),
    origin=(-10.0, -20.0, -30.0),
    orientation=AXIAL,
    slope=0.5,
    intercept=10.0,
    description="Enhanced T2",
    seed=0,
) -> Written:
    """One Enhanced MR Image Storage file: frames in shuffled order, each placed by PlanePositionSequence.

    PixelMeasures, PlaneOrientation and PixelValueTransformation are in the
    SharedFunctionalGroupsSequence; the frame positions in the
    PerFrameFunctionalGroupsSequence. ``values`` is in slice order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(volume, dtype=float)
    n = volume.shape[0]
    order = np.random.default_rng(seed).permutation(n)  # frame f holds slice order[f]
    along_row, down_column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    positions = np.asarray(origin, float) + np.arange(n)[:, None] * spacing[0] * np.cross(along_row, down_column)
    stored = np.round((volume - intercept) / slope).astype(np.uint16)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_MR, generate_uid()
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    study_uid, series_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription, ds.Manufacturer = "MR", 5, description, "Acme Medical"
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20240102", "101000", "20240102", "103000"
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = n, volume.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    measures, plane, transform, shared = Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [float(spacing[1]), float(spacing[2])], float(spacing[0])
    plane.ImageOrientationPatient = [float(v) for v in orientation]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = str(slope), str(intercept), "US"
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([plane])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        position, content, item = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [float(v) for v in positions[k]]
        content.InStackPositionNumber = int(k + 1)
        item.PlanePositionSequence, item.FrameContentSequence = Sequence([position]), Sequence([content])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = stored[order].tobytes()
    ds.file_meta = _meta(ENHANCED_MR, ds.SOPInstanceUID)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    values = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
    return Written(
        path.parent, [path], values, positions, tuple(orientation), tuple(spacing), series_uid, study_uid, for_uid
    )
