"""The Qt edge: the dock widget, reading and writing napari layers, and the worker jobs.

Imports the Qt-free runtime (the package top), never :mod:`napari_lightfusion.research`.
"""
