"""The Qt edge: the dock widget and its parts, and the napari workers that run the session's jobs.

Holds widgets only; what they show and do without Qt is in
:mod:`napari_lightfusion.session` (and the runtime at the package top),
which this package imports. Never imports :mod:`napari_lightfusion.research`.
"""
