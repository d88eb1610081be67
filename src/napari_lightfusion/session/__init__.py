"""The dock's session without Qt: its evented model, its jobs, and the napari-layer side of inputs and results.

Between the runtime (the package top: no napari, no Qt) and the widgets
(:mod:`napari_lightfusion._qt`): modules here may use napari's models
(layers, the viewer, its dims) and the runtime, never Qt, so that they
import and are tested without a display (``napari.components.ViewerModel``).

* :mod:`.model`: :class:`~.model.FusionSession`, the dock's state as evented
  fields (pair, preset, balance, device, map, job, result, status), the job
  queue, :class:`~.model.JobKind` and :class:`~.model.ResultSet`;
* :mod:`.requests` and :mod:`.jobs`: a job captured on the GUI thread, and what
  it computes off it (:mod:`.warm_up`: the network's warm-up);
* :mod:`.results`: an outcome written into the viewer as the session's result;
* :mod:`.layer_io`, :mod:`.outputs`, :mod:`.compare`, :mod:`.map_view`,
  :mod:`.lazy_compare`: reading input layers, naming and tracking output
  layers, the Compare grid, how maps are shown, lazy volumes;
* :mod:`.pair_notes`, :mod:`.readouts`, :mod:`.table_text`: what the dock says
  about a pair, values in words, the metric table as text.
"""
