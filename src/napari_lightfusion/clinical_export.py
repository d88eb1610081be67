"""Fused volumes back out as radiologists need them: a NIfTI file or a DICOM derived series.

The writers take the fused volume as the project keeps it (float32 in
``[0, 1]``, grey ``(Z, Y, X)`` or colour ``(Z, Y, X, 3)``; numpy, dask or
zarr, read one slice at a time, so memory stays at a slice) with its
:class:`~napari_lightfusion.geometry.Geometry`, so the result lies where the
anatomical volume lay in the patient.

* :func:`write_nifti` (:class:`NiftiWriter`): ``.nii`` / ``.nii.gz``, voxels
  in NIfTI's usual ``(i, j, k) = (x, y, z)`` order, sform and qform
  (scanner) from :meth:`Geometry.to_ras`, millimetres. Grey is float32: the
  fused values unchanged (``cal_min``/``cal_max`` 0..1 for the window), so a
  round trip gives the same voxels. Colour is RGB24, NIfTI's RGB voxel
  type, which ITK (under ITK-SNAP and 3D Slicer) reads as a three-component
  8-bit voxel, shown in colour.
* :func:`write_dicom_series` (:class:`DicomSeriesWriter`): one Secondary
  Capture image per slice, ``IM00001.dcm`` ... in slice order. Single-frame
  SC (1.2.840.10008.5.1.4.1.1.7) is the SOP class every PACS stores and
  every viewer scrolls; the multi-frame true-colour SC class is not stored
  or not stacked by some older ones. The image plane (orientation,
  position, spacing) and the source's frame of reference ride along, so a
  viewer that reads them places and links it with the source series.
  Colour is RGB; grey is MONOCHROME2 (window/level works on it), both 8 bits.

Both write into a temporary path beside the target and rename it at the
end: an error, a cancel or a full disk leaves no half file or half series
(``ValueError``, one line). :func:`fuse_volume_as` is ``lightfusion
fuse-volume`` for these formats.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np

from . import __version__
from .dicom import IDENTITY_TAGS
from .geometry import AXIS_TOLERANCE, Geometry

#: The formats a fused volume is written in (``lightfusion fuse-volume --format``).
FORMATS = ("auto", "ome-zarr", "nifti", "dicom")

#: The keys of a DICOM source record (``layer.metadata["clinical"]["dicom"]``, as the DICOM reader writes it).
SOURCE_KEYS = IDENTITY_TAGS

#: Secondary Capture Image Storage.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

#: NIfTI's RGB24 voxel, as nibabel names it.
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])

#: NIfTI voxel ``(i, j, k, 1)`` = ``(x, y, z, 1)`` -> the layer's index ``(z, y, x, 1)``.
IJK_TO_ZYX = np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])

#: A derived series' number: the source's plus this (PACS list series by number).
SERIES_OFFSET = 1000

SOFTWARE = "napari-lightfusion"


def output_format(path, requested: str = "auto") -> str:
    """``"ome-zarr"``, ``"nifti"`` or ``"dicom"`` for an output ``path``; ``ValueError`` when they disagree.

    A name ending in ``.nii`` / ``.nii.gz`` is NIfTI; a DICOM series is
    asked for by name (``requested="dicom"``); anything else is OME-Zarr.
    """
    name = Path(path).name.lower()
    if requested not in FORMATS:
        raise ValueError(f"unknown format {requested!r}; choose {', '.join(FORMATS)}")
    nifti = name.endswith((".nii", ".nii.gz"))
    if requested == "nifti" and not nifti:
        raise ValueError(f"a NIfTI file's name ends with .nii or .nii.gz, not {Path(path).name}")
    if nifti and requested not in ("auto", "nifti"):
        raise ValueError(f"{Path(path).name} is a NIfTI file name; choose another name for {requested}")
    if requested == "dicom" and name.endswith(".zarr"):
        raise ValueError(f"{Path(path).name} is an OME-Zarr name; choose another name for the DICOM folder")
    return "nifti" if nifti else "dicom" if requested == "dicom" else "ome-zarr"


def volume_geometry(volume) -> Geometry:
    """Where a :class:`~napari_lightfusion.volume_io.Volume` lies: its place in the patient (NIfTI, DICOM), else
    its voxel size in mm."""
    from .volume_io import METRES

    if volume.geometry is not None:
        return volume.geometry
    to_mm = METRES.get(volume.unit, 1e-3) / 1e-3
    return Geometry(np.diag([*(v * to_mm for v in (volume.voxel_size or (1.0, 1.0, 1.0))), 1.0]))


def _layout(volume) -> tuple[tuple[int, int, int], bool]:
    """(``(Z, Y, X)``, rgb) of a fused volume; ``ValueError`` for any other shape."""
    shape = tuple(int(n) for n in volume.shape)
    if (len(shape) == 3 or (len(shape) == 4 and shape[3] == 3)) and min(shape) > 0:
        return shape[:3], len(shape) == 4
    raise ValueError(f"a fused volume is (Z, Y, X) grey or (Z, Y, X, 3) colour, not shape {shape}")


def _uint8(image: np.ndarray) -> np.ndarray:
    """A slice as 8-bit values: uint8 as it is, floats in [0, 1] scaled by 255 (clipped, rounded)."""
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"slices must be float in [0, 1] or uint8, not {image.dtype}")
    return np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255).astype(np.uint8)


class _SliceWriter:
    """Slices written in order into a temporary path beside ``target``, renamed onto it at the end.

    A context manager: leaving it normally finishes the output, an error
    discards it. ``discard`` may also be called from another thread once
    the writing thread has stopped (a cancelled export). Each writer
    defines ``_write(z, image)``, ``_commit()`` (close, rename) and
    ``_cleanup()`` (remove the temporary output).
    """

    def __init__(self, target, shape: tuple[int, int, int], rgb: bool):
        self.target, self.shape, self.rgb = Path(target), tuple(shape), rgb
        self.written = 0
        self.temp = self.target.with_name(f".{self.target.name}.partial-{uuid.uuid4().hex[:8]}")

    def write(self, image) -> None:
        """Write the next slice: ``(Y, X)`` grey or ``(Y, X, 3)`` colour, float in [0, 1] (or uint8)."""
        image = np.asarray(image)
        if self.written == self.shape[0]:
            raise ValueError(f"all {self.shape[0]} slices of {self.target} are written already")
        want = self.shape[1:] + ((3,) if self.rgb else ())
        if image.shape != want:
            self.discard()
            raise ValueError(f"slice {self.written} has shape {image.shape}, the volume's slices {want}")
        with self._disk():
            self._write(self.written, image)
        self.written += 1

    def finish(self) -> Path:
        """Close and rename the output onto the target, once every slice is written."""
        if self.written != self.shape[0]:
            self.discard()
            raise ValueError(f"only {self.written} of {self.shape[0]} slices were written to {self.target}")
        with self._disk():
            self._commit()
        return self.target

    def discard(self) -> None:
        """Remove what was written (idempotent); the target is left as it was."""
        self._cleanup()

    @contextmanager
    def _disk(self):
        """An ``OSError`` inside discards the output and becomes a one-line ``ValueError``."""
        try:
            yield
        except OSError as exc:
            self.discard()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ValueError(f"disk full after {self.written} of {self.shape[0]} slices in {self.target}") from None
            raise ValueError(f"cannot write {self.target}: {exc.strerror or exc}") from None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.finish()
        else:
            self.discard()


class NiftiWriter(_SliceWriter):
    """A NIfTI-1 file written slice by slice (see the module); an existing file is replaced at the end."""

    def __init__(self, path, shape: tuple[int, int, int], rgb: bool, geometry: Geometry, description: str = ""):
        import nibabel

        path = Path(path)
        if not path.name.lower().endswith((".nii", ".nii.gz")):
            raise ValueError(f"a NIfTI file's name ends with .nii or .nii.gz, not {path.name}")
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give a NIfTI file name")
        super().__init__(path, shape, rgb)
        z, y, x = self.shape
        header = nibabel.Nifti1Header(endianness="<")
        header.set_data_dtype(RGB24 if rgb else np.dtype("<f4"))
        header.set_data_shape((x, y, z))
        affine = geometry.to_ras() @ IJK_TO_ZYX
        header.set_sform(affine, code="scanner")
        header.set_qform(affine, code="scanner")  # the nearest rotation and zooms: exact for scanner geometries
        header.set_xyzt_units(xyz="mm")
        header["descrip"] = description.encode("ascii", "replace")[:79]
        if not rgb:
            header["cal_min"], header["cal_max"] = 0.0, 1.0
        self._raw = self._file = None
        with self._disk():
            self._raw = open(self.temp, "wb")  # noqa: SIM115 - kept open across write() calls; closed by _commit or _cleanup
            gz = path.name.lower().endswith(".gz")
            self._file = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=1, mtime=0, filename="") \
                if gz else self._raw
            header.write_to(self._file)

    def _write(self, z: int, image: np.ndarray) -> None:
        data = _uint8(image) if self.rgb else image.astype("<f4")
        self._file.write(np.ascontiguousarray(data).tobytes())  # C order (y, x) is NIfTI's i-fastest plane

    def _commit(self) -> None:
        if self._file is not self._raw:
            self._file.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.temp, self.target)

    def _cleanup(self) -> None:
        for handle in (self._file, self._raw):
            try:
                if handle is not None:
                    handle.close()
            except OSError:  # a full disk fails the close too: the file goes anyway
                pass
        self.temp.unlink(missing_ok=True)


class DicomSeriesWriter(_SliceWriter):
    """A DICOM derived series written slice by slice into a new (or empty) folder (see the module).

    ``source`` is the anatomical series' record (:data:`SOURCE_KEYS`): the
    new series goes into its study, with its patient and frame of
    reference. With ``source=None`` it is a new study of a patient named
    ANONYMOUS (a new PatientID each time, so two exports never merge into
    one patient in a PACS) and a new frame of reference.
    """

    def __init__(self, folder, shape: tuple[int, int, int], rgb: bool, geometry: Geometry, *,
                 source: dict | None = None, description: str = "LightFusion fused", modality: str = "OT",
                 series_number: int | None = None):
        folder = Path(folder)
        _check_empty(folder)
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
        ds.set_pixel_data(_uint8(image), "RGB" if self.rgb else "MONOCHROME2", 8, generate_instance_uid=False)
        pydicom.dcmwrite(self.temp / f"IM{z + 1:05d}.dcm", ds, enforce_file_format=True)

    def _commit(self) -> None:
        if self.target.exists():
            self.target.rmdir()  # empty, as checked; a file put there since fails here
        os.replace(self.temp, self.target)

    def _cleanup(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)


def _check_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} exists and is not an empty folder; choose a new folder for the DICOM series")


def _normal(orientation) -> np.ndarray:
    cosines = np.asarray([float(v) for v in orientation]).reshape(2, 3)
    return np.cross(cosines[0], cosines[1])


def _letters(direction) -> str:
    """PatientOrientation of one LPS direction: its patient letters, most significant first."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    return "".join(names[a][0 if direction[a] > 0 else 1] for a in np.argsort(-np.abs(direction))
                   if abs(direction[a]) > AXIS_TOLERANCE)


def _series_attributes(source, geometry: Geometry, rgb: bool, description: str, modality: str,
                       series_number) -> dict:
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
        "InstanceCreationDate": date, "InstanceCreationTime": time, "ContentDate": date, "ContentTime": time,
        "DateOfSecondaryCapture": date, "TimeOfSecondaryCapture": time,
        "PatientName": "ANONYMOUS" if anonymous else source.get("PatientName", ""),
        "PatientID": f"ANON-{uuid.uuid4().hex[:12].upper()}" if anonymous else source.get("PatientID", ""),
        "PatientBirthDate": source.get("PatientBirthDate", ""), "PatientSex": source.get("PatientSex", ""),
        "StudyInstanceUID": study,
        "StudyDate": source.get("StudyDate", date if "StudyInstanceUID" not in source else ""),
        "StudyTime": source.get("StudyTime", time if "StudyInstanceUID" not in source else ""),
        "StudyID": source.get("StudyID", ""), "AccessionNumber": source.get("AccessionNumber", ""),
        "ReferringPhysicianName": source.get("ReferringPhysicianName", ""),
        "Modality": modality, "SeriesInstanceUID": generate_uid(), "SeriesNumber": series_number,
        "SeriesDescription": description, "SeriesDate": date, "SeriesTime": time,
        "Manufacturer": SOFTWARE, "SoftwareVersions": __version__, "ConversionType": "WSD",
        "SecondaryCaptureDeviceManufacturer": SOFTWARE,
        "SecondaryCaptureDeviceManufacturerModelName": "LightFusion",
        "SecondaryCaptureDeviceSoftwareVersions": __version__,
        "FrameOfReferenceUID": source.get("FrameOfReferenceUID") or generate_uid(),
        "PositionReferenceIndicator": "",
        "BurnedInAnnotation": "NO", "LossyImageCompression": "00", "DerivationDescription": derivation[:1024],
        "PatientOrientation": [_letters(orientation[:3]), _letters(orientation[3:])],
        "ImageOrientationPatient": [format_number_as_ds(v) for v in orientation],
        "PixelSpacing": [format_number_as_ds(v) for v in pixel_spacing],
        "SliceThickness": format_number_as_ds(spacing), "SpacingBetweenSlices": format_number_as_ds(spacing),
    }
    if "SeriesInstanceUID" in source:
        attributes["ReferencedSeriesSequence"] = referenced
    if not rgb:
        attributes.update(WindowCenter="127.5", WindowWidth="256")
    return attributes


def _write_all(writer: _SliceWriter, volume, progress: Callable[[int, int], None] | None) -> Path:
    with writer:
        for z in range(writer.shape[0]):
            writer.write(np.asarray(volume[z]))
            if progress is not None:
                progress(z + 1, writer.shape[0])
    return writer.target


def write_nifti(path, volume, geometry: Geometry, *, description: str = "", progress=None) -> Path:
    """Write ``volume`` (grey or colour, see the module) to the NIfTI file ``path`` where ``geometry`` says.

    ``description`` goes to the header's ``descrip`` (79 ASCII characters);
    ``progress(done, total)`` is called after each slice. Returns ``path``.
    """
    shape, rgb = _layout(volume)
    return _write_all(NiftiWriter(path, shape, rgb, geometry, description), volume, progress)


def write_dicom_series(folder, volume, geometry: Geometry, *, source: dict | None = None,
                       description: str = "LightFusion fused", modality: str = "OT",
                       series_number: int | None = None, progress=None) -> Path:
    """Write ``volume`` as a DICOM derived series into the new (or empty) ``folder`` (see the module).

    ``source``: the anatomical series' record (:class:`DicomSeriesWriter`);
    ``modality``: the series' Modality (OT: the fusion is no one modality);
    ``series_number``: default the source's + :data:`SERIES_OFFSET`.
    ``progress(done, total)`` is called after each slice. Returns ``folder``.
    """
    shape, rgb = _layout(volume)
    writer = DicomSeriesWriter(folder, shape, rgb, geometry, source=source, description=description,
                               modality=modality, series_number=series_number)
    return _write_all(writer, volume, progress)


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


def _is_dicom_input(path) -> bool:
    from .dicom import holds_dicom, is_dicom

    path = Path(path)
    return holds_dicom(path) if path.is_dir() else path.is_file() and is_dicom(path)


def fuse_volume_as(a, b, out, *, fmt: str = "auto", dicom_source=None, **options):
    """``lightfusion fuse-volume`` to any format: :func:`~napari_lightfusion.volumes.fuse_volume` for OME-Zarr.

    NIfTI and DICOM are fused into a working OME-Zarr beside ``out``
    (``.NAME.zarr``: resumed by a rerun after an interruption, as any
    output), converted slice by slice where the anatomical volume lies, and
    the working copy removed; its record goes to the sidecar ``OUT.json``.
    ``dicom_source``: a DICOM file (or folder) of the anatomical series whose
    study and patient the DICOM series joins (:func:`read_dicom_source`;
    by default the anatomical input itself, when it is a DICOM series).
    ``options`` go to ``fuse_volume``; returns its report, for ``out``.
    """
    import json

    from .volume_io import OmeZarrOutput, open_volume
    from .volumes import fuse_volume

    out = Path(out)
    kind = output_format(out, fmt)
    if dicom_source is not None and kind != "dicom":
        raise ValueError("--dicom-source is for --format dicom (a DICOM series' study and patient)")
    if kind == "ome-zarr":
        return fuse_volume(a, b, out, **options)
    if any(Path(given).resolve() == out.resolve() for given in (a, b)):
        raise ValueError(f"--out {out} would overwrite an input; choose another --out")
    if kind == "dicom":
        _check_empty(out)
    if dicom_source is None and kind == "dicom" and _is_dicom_input(a):
        dicom_source = a  # the fused series joins the anatomical series' study and patient
    source = read_dicom_source(dicom_source) if dicom_source is not None else None
    work = OmeZarrOutput(out.with_name(f".{out.name}.zarr"))
    report = fuse_volume(a, b, work.path, **options)
    record = work.read_sidecar()
    fused = open_volume(work.path)
    geometry = Geometry(record["geometry"]["affine"]) if "geometry" in record else volume_geometry(fused)
    description = f"LightFusion {Path(record['settings']['preset']).stem}"[:64]
    if kind == "nifti":
        write_nifti(out, fused.data, geometry, description=description)
    else:
        write_dicom_series(out, fused.data, geometry, source=source, description=description)
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps({**record, "format": kind, "output": str(out.resolve())}, indent=2) + "\n")
    shutil.rmtree(work.path)
    work.sidecar.unlink(missing_ok=True)
    report.out = out
    return report
