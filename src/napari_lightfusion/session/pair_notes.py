"""What the dock says about a picked pair: the preset it guesses, and what a Fuse will not show.

:func:`preset_advice` turns the guesses of
:mod:`napari_lightfusion.roles` into what the widget does when the pair
changes (the preset to switch to, a warning, the status line), and
:func:`fuse_note` is the one line a Fuse or Compare notifies about its
inputs: an image too small for SSIM and VIF (their cells show "—"), and
NaN or infinite pixels, which are fused as 0 (black).
"""

from __future__ import annotations

from .. import lazy, roles
from ..inputs import missing_note, missing_pixels

#: Smallest edge (pixels) at which SSIM (7 x 7 window) and VIF (17 x 17 window) are defined,
#: as :mod:`napari_lightfusion.metrics` computes them (nan below; the hot-spot rows use SSIM's window).
SSIM_EDGE, VIF_EDGE = 7, 17


def preset_advice(a, b, current: str, auto: bool) -> tuple[str | None, str | None, str]:
    """``(preset to switch to or None, warning or None, status line)`` for the picked layers ``a``, ``b``.

    ``current`` is the preset shown; ``auto`` whether the user has not
    picked one (then the guess is switched to and its warning given; else
    the chosen preset is only checked, :func:`napari_lightfusion.roles.preset_warning`).
    """
    guess = roles.guess_preset(a, b)
    switch = guess.preset if auto and guess.preset is not None and guess.preset != current else None
    warning = guess.warning if auto else roles.preset_warning(current, a, b)
    return switch, warning, f"Preset {switch or current} ({guess.reason}). Press Fuse."


def size_note(shape: tuple[int, ...]) -> str | None:
    """What the metric table cannot show for images of spatial ``shape`` (too small a slice), else None."""
    h, w = shape[-2:]
    if min(h, w) < SSIM_EDGE:
        return (
            f"the images are {h} × {w} pixels, smaller than SSIM's {SSIM_EDGE} × {SSIM_EDGE} window: "
            "SSIM, VIF and the hot-spot measures are not defined and shown as —"
        )
    if min(h, w) < VIF_EDGE:
        return (
            f"the images are {h} × {w} pixels, smaller than VIF's {VIF_EDGE} × {VIF_EDGE} window: "
            "VIF is not defined and shown as —"
        )
    return None


def fuse_note(a, b, inputs: dict) -> str | None:
    """One line about the inputs of a Fuse (layers ``a``, ``b``; ``layer_io.fusion_inputs``), or None.

    Says when the slices are too small for some metrics (:func:`size_note`)
    and how many pixels of each layer are NaN or infinite (fused as 0;
    counted in memory only: a lazy volume is not read for it).
    """
    shape = inputs["a"].shape[:-1] if inputs["a_rgb"] else inputs["a"].shape
    notes = [size_note(tuple(shape))]
    for key, layer in (("a", a), ("b", b)):
        data = inputs[key]
        count = 0 if lazy.is_lazy(data) else missing_pixels(data, inputs[f"{key}_rgb"])
        notes.append(missing_note(layer.name, count) if count else None)
    return "; ".join(n for n in notes if n) or None
