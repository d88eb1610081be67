"""The paper's research tooling: training, evaluation, ablations, reports and benchmarks.

Imports the runtime (and, for screenshots and live-latency benchmarks, the
widget in :mod:`napari_lightfusion._qt`); neither imports it back.
"""
