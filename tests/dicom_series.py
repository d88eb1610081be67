"""The DICOM series writers of :mod:`napari_lightfusion.research.dicom_writer`, under the name tests import."""

from napari_lightfusion.research.dicom_writer import *  # noqa: F403
