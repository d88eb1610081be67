"""A synthetic DICOM study of one "patient": an MR and a PET on their own grids, the PET a few mm out of register.

No real PET DICOM can be shipped or fetched here, so the DICOM screenshot
(``lightfusion-research screenshot --dicom``) writes one the way scanners do
(:mod:`.dicom_writer`): an MR at 1.5 x 1 x 1 mm from scikit-image's
Shepp-Logan phantom stacked into a head (the anatomy of the plugin's sample
stack), and an FDG-like PET in Bq/ml (a slope per slice, decay and weight
tags, so the reader shows SUV) of the same head at 3 x 2 x 2 mm, block-
averaged from the MR grid as a scanner's coarse voxels would be. The PET
series is placed ``moved_mm`` from the MR (the patient moved between the
scans), under the MR's frame of reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .._sample_data import phantom_stack
from .dicom_writer import write_mr_series, write_pet_series

#: The MR grid: (slices, rows, columns) and voxel size (S, P, L mm).
MR_SHAPE, MR_SPACING = (48, 192, 192), (1.5, 1.0, 1.0)  # square slices: the phantom's
#: How many MR voxels one PET voxel covers along each axis (3 x 2 x 2 mm).
PET_BLOCK = (2, 2, 2)
#: Where the patient lies in the moved PET, relative to the MR (S, P, L mm).
MOVED_MM = (0.0, 3.0, 6.0)


def _uptake(mri: np.ndarray) -> np.ndarray:
    """FDG-like activity (Bq/ml) on the MR grid: brain tissue warm, the phantom's small structures warmer,
    skull and the dark (fluid-filled) ellipses cold, two hot lesions; blurred to a PET's resolution."""
    brain = (mri >= 40) & (mri < 200)
    structures = brain & (mri >= 60)
    z, y, x = np.indices(mri.shape, dtype=np.float64)
    activity = 5000.0 * brain + 9000.0 * structures
    for centre, sigma, peak in (((0.5, 0.3, 0.5), 4.0, 40000.0), ((0.45, 0.66, 0.6), 5.0, 24000.0)):
        cz, cy, cx = (c * n for c, n in zip(centre, mri.shape))
        activity += peak * brain * np.exp(-((z - cz) ** 2 * 2.25 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
    return ndimage.gaussian_filter(activity, 2.0)


def _blocks(volume: np.ndarray, block: tuple[int, int, int]) -> np.ndarray:
    """The mean over blocks of ``block`` voxels (what a coarser scanner grid records)."""
    shape = tuple(n // b for n, b in zip(volume.shape, block))
    trimmed = volume[: shape[0] * block[0], : shape[1] * block[1], : shape[2] * block[2]]
    return trimmed.reshape(shape[0], block[0], shape[1], block[1], shape[2], block[2]).mean(axis=(1, 3, 5))


def write_study(root, moved_mm=MOVED_MM) -> dict[str, Path]:
    """Write the study under ``root``: folders ``MR`` and ``PET`` (moved by ``moved_mm``); returns them."""
    root = Path(root)
    mri = phantom_stack(MR_SHAPE[0], MR_SHAPE[1])[0].astype(np.float64)
    pet = _blocks(_uptake(mri), PET_BLOCK)
    # ImagePositionPatient (x=L, y=P, z=S) of each first voxel: the head centred on the scanner's axis
    mr_origin = np.array([-(MR_SHAPE[2] - 1) / 2, -(MR_SHAPE[1] - 1) / 2, -(MR_SHAPE[0] - 1) / 2 * MR_SPACING[0]])
    pet_spacing = tuple(b * s for b, s in zip(PET_BLOCK, MR_SPACING))
    # a PET voxel's centre is the centre of the MR block it covers
    pet_origin = mr_origin + (np.array(PET_BLOCK[::-1]) - 1) / 2 * np.array(MR_SPACING[::-1])
    pet_origin = pet_origin + np.asarray(moved_mm, float)[::-1]
    frame, study = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.1002"
    mr = write_mr_series(
        root / "MR",
        mri * 4.0,
        spacing=MR_SPACING,
        origin=tuple(mr_origin),
        series_number=2,
        frame_of_reference_uid=frame,
        study_uid=study,
    )
    pt = write_pet_series(
        root / "PET",
        pet,
        spacing=pet_spacing,
        origin=tuple(pet_origin),
        series_number=3,
        frame_of_reference_uid=frame,
        study_uid=study,
        description="PET AC FDG brain",
    )
    return {"MR": mr.folder, "PET": pt.folder}
