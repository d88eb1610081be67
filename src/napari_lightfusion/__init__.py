"""napari-lightfusion: LightFusionNet image fusion for napari, with the reasons shown."""

__version__ = "0.1.0"

from .fusion import FusionResult, fuse, plan_fusion

__all__ = ["FusionResult", "fuse", "plan_fusion"]
