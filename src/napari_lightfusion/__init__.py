"""napari-lightfusion: LightFusionNet image fusion for napari, with the reasons shown."""

__version__ = "0.1.0"
