"""The pair as the viewer shows it, ready to fuse: the functional image on the anatomical grid, in its colours.

Two layers opened from a study rarely share a voxel grid: a PET of 2-4 mm
voxels and 128-200 pixels lies over an MR of 1 mm and 256-512 pixels, each
placed in the patient by its own scale, translate and affine (see
:mod:`~napari_lightfusion.geometry`). And a PET volume holds SUV, a scalar
that the viewer shows through a colormap. What is fused is what is seen:

* the functional image is resampled onto the anatomical image's grid in
  world coordinates (:mod:`~napari_lightfusion.resample`), so the fused
  image lies on the anatomical grid and carries its placement;
* a scalar functional image shown with a colour table is fused as that
  colour image (:func:`~napari_lightfusion.colour.colourise` with the
  layer's contrast limits), so the network fuses its luma and the
  chrominance carries the uptake.

:func:`as_displayed` does both on the inputs the widget captures
(``layer_io.fusion_inputs``): in the worker, never on the GUI thread, and
lazily (one slice at a time) for dask inputs. No Qt, no napari here.
"""

from __future__ import annotations

import numpy as np

from .colour import colourise
from .lazy import is_lazy
from .resample import ResampledView, resample

#: Two grids are the same when their voxel centres lie this close at the grid's corners (a fraction of the
#: smallest voxel side): float noise in a header is not a misplacement.
GRID_TOLERANCE = 0.01


def same_grid(shape_a, matrix_a, shape_b, matrix_b) -> bool:
    """Whether two images' voxels lie at the same world positions (same shape, same place at every corner)."""
    if tuple(shape_a) != tuple(shape_b):
        return False
    a, b = np.asarray(matrix_a, float), np.asarray(matrix_b, float)
    if a.shape != b.shape:
        return False
    n = len(shape_a)
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in shape_a], indexing="ij")).reshape(n, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    apart = float(np.linalg.norm((a @ corners - b @ corners)[:n], axis=0).max())
    voxel = float(np.linalg.norm(a[:n, :n], axis=0).min())
    return apart <= GRID_TOLERANCE * voxel


def _spatial(array, rgb: bool) -> tuple[int, ...]:
    return tuple(array.shape[:-1] if rgb else array.shape)


def needs_resampling(inputs: dict) -> bool:
    """Whether the functional image lies on another grid than the anatomical one."""
    if inputs.get("a_matrix") is None or inputs.get("b_matrix") is None:
        return False
    sa, sb = _spatial(inputs["a"], inputs["a_rgb"]), _spatial(inputs["b"], inputs["b_rgb"])
    return len(sa) == len(sb) and not same_grid(sa, inputs["a_matrix"], sb, inputs["b_matrix"])


def as_displayed(inputs: dict) -> dict:
    """``plan_fusion``/``fuse_lazy`` keyword arguments for a pair captured from two layers.

    ``inputs``: ``a``, ``b`` (data), ``a_limits``, ``b_limits``, ``a_rgb``,
    ``b_rgb``, and optionally ``a_matrix``/``b_matrix`` (each layer's
    data-to-world matrix) and ``b_lut`` (the functional layer's colour
    table, for a scalar image shown in colour). The functional image is
    resampled onto the anatomical grid when the matrices or shapes differ,
    then put through its colour table; a lazy input stays lazy. The input
    arrays are never modified.
    """
    out = {key: inputs[key] for key in ("a", "b", "a_limits", "b_limits", "a_rgb", "b_rgb")}
    b = inputs["b"]
    lazy = is_lazy(b) or is_lazy(inputs["a"])
    if needs_resampling(inputs):
        shape = _spatial(inputs["a"], inputs["a_rgb"])
        args = (inputs["b_matrix"], shape, inputs["a_matrix"])
        if lazy:
            import dask.array as da

            view = ResampledView(b, *args, rgb=bool(inputs["b_rgb"]))
            b = da.from_array(view, chunks=(1, *view.shape[1:]), asarray=True, fancy=False)
        else:
            b = resample(np.asarray(b), *args, rgb=bool(inputs["b_rgb"]))
    lut = inputs.get("b_lut")
    if lut is not None and not inputs["b_rgb"]:
        limits = inputs["b_limits"]
        if is_lazy(b):
            import dask.array as da

            b = da.asarray(b).map_blocks(
                colourise, limits, lut, dtype=np.float32, new_axis=b.ndim, chunks=(*da.asarray(b).chunks, (3,))
            )
        else:
            b = colourise(b, limits, lut)
        out.update(b_limits=None, b_rgb=True)
    out["b"] = b
    return out
