"""A fused volume as a DICOM derived series: one Secondary Capture image per slice, in the source's study.

:func:`write_dicom_series` (:class:`DicomSeriesWriter`) writes
``IM00001.dcm`` ... in slice order. Single-frame SC
(1.2.840.10008.5.1.4.1.1.7) is the SOP class every PACS stores and every
viewer scrolls; the multi-frame true-colour SC class is not stored or not
stacked by some older ones. The image plane (orientation, position,
spacing) and the source's frame of reference ride along, so a viewer that
reads them places and links it with the source series
(:func:`read_dicom_source` takes that record from a DICOM file). Colour is
RGB; grey is MONOCHROME2 (window/level works on it), both 8 bits. The series
is written into a temporary folder beside the target and renamed at the end
(:class:`~napari_lightfusion.slice_writer.SliceWriter`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

from . import __version__
from .dicom_reader import IDENTITY_TAGS
from .geometry import AXIS_TOLERANCE, Geometry
from .slice_writer import SliceWriter, fused_layout, to_uint8, write_all

#: The keys of a DICOM source record (``layer.metadata["clinical"]["dicom"]``, as the DICOM reader writes it).
SOURCE_KEYS = IDENTITY_TAGS

#: Secondary Capture Image Storage.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: A derived series' number: the source's plus this (PACS list series by number).
SERIES_OFFSET = 1000

SOFTWARE = "napari-lightfusion"


class DicomSeriesWriter(SliceWriter):
    """A DICOM derived series written slice by slice into a new (or empty) folder (see the module).

    ``source`` is the anatomical series' record (:data:`SOURCE_KEYS`): the
    new series goes into its study, with its patient and frame of
    reference. With ``source=None`` it is a new study of a patient named
    ANONYMOUS (a new PatientID each time, so two exports never merge into
    one patient in a PACS) and a new frame of reference.
    """

    def __init__(
        self,
        folder,
        shape: tuple[int, int, int],
        rgb: bool,
        geometry: Geometry,
        *,
        source: dict | None = None,
        description: str = "LightFusion fused",
        modality: str = "OT",
        series_number: int | None = None,
    ):
        folder = Path(folder)
        check_empty(folder)
        direction = geometry.direction
        if not np.allclose(direction.T @ direction, np.eye(3), atol=AXIS_TOLERANCE):
            raise ValueError("the volume's axes are not perpendicular (sheared); a DICOM series cannot place it")
        super().__init__(folder, shape, rgb)
        self.geometry = geometry
        self.series = _series_attributes(source, geometry, rgb, description, modality, series_number)
        with self._disk():
            folder.parent.mkdir(parents=True, exist_ok=True)
            self.temp.mkdir()

    def _write(self, z: int, image: np.ndarray) -> None:
        import pydicom
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
        from pydicom.valuerep import format_number_as_ds

        ds = Dataset()
        for keyword, value in self.series.items():
            setattr(ds, keyword, value() if callable(value) else value)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = z + 1
        position = self.geometry.slice_position(z)
        ds.ImagePositionPatient = [format_number_as_ds(v) for v in position]
        ds.SliceLocation = format_number_as_ds(float(np.dot(position, _normal(ds.ImageOrientationPatient))))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = f"LIGHTFUSION{__version__}"[:16]
        ds.set_pixel_data(to_uint8(image), "RGB" if self.rgb else "MONOCHROME2", 8, generate_instance_uid=False)
        pydicom.dcmwrite(self.temp / f"IM{z + 1:05d}.dcm", ds, enforce_file_format=True)

    def _commit(self) -> None:
        if self.target.exists():
            self.target.rmdir()  # empty, as checked; a file put there since fails here
        os.replace(self.temp, self.target)

    def _cleanup(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)


def check_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not an empty folder; choose a new folder for the DICOM series")


def _normal(orientation) -> np.ndarray:
    cosines = np.asarray([float(v) for v in orientation]).reshape(2, 3)
    return np.cross(cosines[0], cosines[1])


def _letters(direction) -> str:
    """PatientOrientation of one LPS direction: its patient letters, most significant first."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    return "".join(
        names[a][0 if direction[a] > 0 else 1]
        for a in np.argsort(-np.abs(direction))
        if abs(direction[a]) > AXIS_TOLERANCE
    )


def _series_attributes(source, geometry: Geometry, rgb: bool, description: str, modality: str, series_number) -> dict:
    """The attributes every image of the series shares (callables: a fresh value per image)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid
    from pydicom.valuerep import format_number_as_ds

    source = {k: str(v) for k, v in (source or {}).items() if k in SOURCE_KEYS and v not in (None, "")}
    anonymous = not source
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    if series_number is None:
        try:
            series_number = SERIES_OFFSET + int(float(source.get("SeriesNumber", "0")))
        except ValueError:
            series_number = SERIES_OFFSET
    orientation, pixel_spacing, spacing = geometry.dicom_plane()
    study = source.get("StudyInstanceUID") or generate_uid()
    derivation = f"{description}: fused by {SOFTWARE} {__version__}"
    if "SeriesInstanceUID" in source:
        named = " ".join(source[k] for k in ("Modality", "SeriesDescription") if k in source)
        derivation += f" on the grid of series {source['SeriesInstanceUID']}" + (f" ({named})" if named else "")

    def referenced():
        item = Dataset()
        item.SeriesInstanceUID = source["SeriesInstanceUID"]
        item.StudyInstanceUID = study
        return Sequence([item])

    attributes = {
        "SpecificCharacterSet": "ISO_IR 192",
        "SOPClassUID": SECONDARY_CAPTURE,
        "ImageType": ["DERIVED", "SECONDARY"],
        "InstanceCreationDate": date,
        "InstanceCreationTime": time,
        "ContentDate": date,
        "ContentTime": time,
        "DateOfSecondaryCapture": date,
        "TimeOfSecondaryCapture": time,
        "PatientName": "ANONYMOUS" if anonymous else source.get("PatientName", ""),
        "PatientID": f"ANON-{uuid.uuid4().hex[:12].upper()}" if anonymous else source.get("PatientID", ""),
        "PatientBirthDate": source.get("PatientBirthDate", ""),
        "PatientSex": source.get("PatientSex", ""),
        "StudyInstanceUID": study,
        "StudyDate": source.get("StudyDate", date if "StudyInstanceUID" not in source else ""),
        "StudyTime": source.get("StudyTime", time if "StudyInstanceUID" not in source else ""),
        "StudyID": source.get("StudyID", ""),
        "AccessionNumber": source.get("AccessionNumber", ""),
        "ReferringPhysicianName": source.get("ReferringPhysicianName", ""),
        "Modality": modality,
        "SeriesInstanceUID": generate_uid(),
        "SeriesNumber": series_number,
        "SeriesDescription": description,
        "SeriesDate": date,
        "SeriesTime": time,
        "Manufacturer": SOFTWARE,
        "SoftwareVersions": __version__,
        "ConversionType": "WSD",
        "SecondaryCaptureDeviceManufacturer": SOFTWARE,
        "SecondaryCaptureDeviceManufacturerModelName": "LightFusion",
        "SecondaryCaptureDeviceSoftwareVersions": __version__,
        "FrameOfReferenceUID": source.get("FrameOfReferenceUID") or generate_uid(),
        "PositionReferenceIndicator": "",
        "BurnedInAnnotation": "NO",
        "LossyImageCompression": "00",
        "DerivationDescription": derivation[:1024],
        "PatientOrientation": [_letters(orientation[:3]), _letters(orientation[3:])],
        "ImageOrientationPatient": [format_number_as_ds(v) for v in orientation],
        "PixelSpacing": [format_number_as_ds(v) for v in pixel_spacing],
        "SliceThickness": format_number_as_ds(spacing),
        "SpacingBetweenSlices": format_number_as_ds(spacing),
    }
    if "SeriesInstanceUID" in source:
        attributes["ReferencedSeriesSequence"] = referenced
    if not rgb:
        attributes.update(WindowCenter="127.5", WindowWidth="256")
    return attributes


def write_dicom_series(
    folder,
    volume,
    geometry: Geometry,
    *,
    source: dict | None = None,
    description: str = "LightFusion fused",
    modality: str = "OT",
    series_number: int | None = None,
    progress=None,
) -> Path:
    """Write ``volume`` as a DICOM derived series into the new (or empty) ``folder`` (see the module).

    ``source``: the anatomical series' record (:class:`DicomSeriesWriter`);
    ``modality``: the series' Modality (OT: the fusion is no one modality);
    ``series_number``: default the source's + :data:`SERIES_OFFSET`.
    ``progress(done, total)`` is called after each slice. Returns ``folder``.
    """
    shape, rgb = fused_layout(volume)
    writer = DicomSeriesWriter(
        folder,
        shape,
        rgb,
        geometry,
        source=source,
        description=description,
        modality=modality,
        series_number=series_number,
    )
    return write_all(writer, volume, progress)


def read_dicom_source(path) -> dict:
    """The source record (:data:`SOURCE_KEYS`) of a DICOM file, or of the first image file in a folder."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.exists():
        raise ValueError(f"the DICOM source {path} does not exist")
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        if "SeriesInstanceUID" in ds:  # an image, not a DICOMDIR
            return {k: str(ds.get(k)) for k in SOURCE_KEYS if ds.get(k) not in (None, "")}
    raise ValueError(f"no DICOM image in {path} to take the patient and study from")
