"""A fused volume as a NIfTI file (``.nii`` / ``.nii.gz``), written slice by slice where it lies in the patient.

:func:`write_nifti` (:class:`NiftiWriter`): voxels in NIfTI's usual
``(i, j, k) = (x, y, z)`` order, sform and qform (scanner) from
:meth:`Geometry.to_ras <napari_lightfusion.geometry.Geometry.to_ras>`,
millimetres. Grey is float32: the fused values unchanged
(``cal_min``/``cal_max`` 0..1 for the window), so a round trip gives the same
voxels. Colour is RGB24, NIfTI's RGB voxel type, which ITK (under ITK-SNAP
and 3D Slicer) reads as a three-component 8-bit voxel, shown in colour. The
file is written beside the target and renamed at the end
(:class:`~napari_lightfusion.slice_writer.SliceWriter`).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .geometry import Geometry
from .slice_writer import SliceWriter, fused_layout, to_uint8, write_all

#: NIfTI's RGB24 voxel, as nibabel names it.
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])

#: NIfTI voxel ``(i, j, k, 1)`` = ``(x, y, z, 1)`` -> the layer's index ``(z, y, x, 1)``.
IJK_TO_ZYX = np.array([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


class NiftiWriter(SliceWriter):
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
            self._file = (
                gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=1, mtime=0, filename="") if gz else self._raw
            )
            header.write_to(self._file)

    def _write(self, z: int, image: np.ndarray) -> None:
        data = to_uint8(image) if self.rgb else image.astype("<f4")
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


def write_nifti(path, volume, geometry: Geometry, *, description: str = "", progress=None) -> Path:
    """Write ``volume`` (grey or colour, see the module) to the NIfTI file ``path`` where ``geometry`` says.

    ``description`` goes to the header's ``descrip`` (79 ASCII characters);
    ``progress(done, total)`` is called after each slice. Returns ``path``.
    """
    shape, rgb = fused_layout(volume)
    return write_all(NiftiWriter(path, shape, rgb, geometry, description), volume, progress)
