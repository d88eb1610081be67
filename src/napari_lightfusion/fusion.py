"""``fuse``: the one entry point that turns two images into a fused image and its reasons.

The widget, the command line, the evaluation and the benchmarks all call
this. No Qt here: it runs (and is tested) without a display.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .balance_search import AUTO, BalanceChoice, choose_balance
from .engine import cpu_threads, resolve_device, run_stack
from .inputs import ImageView, PreparedPair, prepare_pair
from .model import LightFusionNet, check_balance
from .threads import run_jobs
from .tiling import DEFAULT_TILE, check_tile
from .weights import model_for


@dataclass
class FusionResult:
    """What a fusion produced, in the caller's layout.

    ``fused`` is float32 in [0, 1]: ``(..., H, W)`` for a grey pair,
    ``(..., H, W, 3)`` when either input was colour. ``surprise`` and
    ``attention`` are ``(2, ..., H, W)`` float32, one map per input *in the
    order the inputs were given* (mean over the network's channels, or the
    chosen channel); ``surprise`` is ``None`` for networks without
    Predictive Context Attention, and both are ``None`` unless the fusion
    was asked for maps (``maps=True``). ``seconds`` is the wall time of the
    network and the colour handling, ``device`` where it ran. ``weight``
    is ``(..., H, W)`` float32 in [0, 1], the per-pixel mix weight of a
    network with a "blend" or "mix" head: 1 where the fused value comes
    from the first input given, 0 where it comes from the second (the
    network's own ``w``, or ``1 - w`` when the inputs reached it swapped,
    like the maps' order); ``None`` without maps or for a network without
    such a head. ``balance_choice``: the b chosen for these images and
    why, when the fusion was asked for ``balance="auto"``
    (:mod:`napari_lightfusion.balance_search`; None otherwise).
    """

    fused: np.ndarray
    surprise: np.ndarray | None
    attention: np.ndarray | None
    seconds: float
    device: str
    preset: str | None
    weight: np.ndarray | None = None
    balance_choice: BalanceChoice | None = None


@dataclass(frozen=True)
class FusionOptions:
    """What runs a fusion, whatever the two images: the network, where it runs and what it computes.

    ``preset`` names the network (``weights``, a weight file, takes its
    place); ``device``, ``channel``, ``tile``, ``maps`` and ``balance`` are
    as :func:`fuse` says; ``threads``: CPU threads of the fast path (None:
    torch's count; a dask task fusing one slice beside others asks for 1).
    How each image is read is its :class:`~napari_lightfusion.inputs.ImageView`.
    Plain, picklable values: lazy fusion sends them to dask's workers.
    """

    preset: str | None = "PET-MRI"
    weights: Path | None = None
    device: str = "auto"
    channel: int | None = None
    tile: int = DEFAULT_TILE
    maps: bool = False
    balance: float | str | None = None
    threads: int | None = None

    def checked(self) -> tuple[FusionOptions, torch.device]:
        """These options with ``tile`` an int, ``balance`` a float in [0, 1] or ``"auto"``, and the device they name.

        Raises ``ValueError`` (one line) when the device is not on this
        machine or a value is out of range; needs neither the images nor the
        network (:func:`plan_pair` checks the channel against it).
        """
        tile = check_tile(self.tile)
        balance = self.balance if self.balance in (None, AUTO) else check_balance(self.balance, auto=True)
        device = resolve_device(self.device)
        return replace(self, tile=tile, balance=balance, maps=bool(self.maps)), device


#: Fewest pixels of a lone slice's part that the colour step gives another thread: waking one costs
#: about what the colour step does on 50,000 pixels (a 256 x 256 slice is coloured faster on one thread).
COLOUR_PART_PIXELS = 131072


def _given_order(weight: np.ndarray, swapped: bool, stacked: bool) -> np.ndarray:
    """The network's mix weight ``(Z, H, W)`` as the first given input's weight (a slice when not ``stacked``)."""
    weight = 1.0 - weight if swapped else weight
    return weight if stacked else weight[0]


@dataclass
class FusionPlan:
    """A checked, normalised pair with its network and device, ready to run.

    Made by :func:`plan_pair`; :meth:`run_slice` fuses one slice (the
    widget calls it slice by slice from a worker thread so it can report
    progress and stop between slices), :meth:`run` all of them.
    ``threads``: CPU threads of the fast path (None: torch's count); a
    dask task fusing one slice beside others asks for 1. ``choice``: how
    ``balance`` was chosen when it was asked for ``"auto"``.
    """

    pair: PreparedPair
    model: LightFusionNet
    device: torch.device
    preset: str | None
    channel: int | None = None
    tile: int = DEFAULT_TILE
    maps: bool = False
    balance: float | None = None
    threads: int | None = None
    choice: BalanceChoice | None = None

    def __len__(self) -> int:
        return self.pair.anatomical.shape[0]

    def run_slice(self, index: int) -> FusionResult:
        """Fuse slice ``index``; the result is 2D (``fused`` ``(H, W)`` or ``(H, W, 3)``)."""
        return self._run(slice(index, index + 1), stacked=False)

    def run(self) -> FusionResult:
        """Fuse every slice; a stack comes back as a stack.

        All slices go to the engine at once, so that the CPU fast path keeps
        every thread busy across slices (:func:`napari_lightfusion.engine.run_stack`).
        """
        return self._run(slice(None), stacked=self.pair.stacked)

    def _run(self, slices: slice, stacked: bool) -> FusionResult:
        """Fuse ``slices`` of the pair, colour and stream order restored."""
        start = time.perf_counter()
        pair = self.pair
        out = run_stack(
            self.model,
            pair.anatomical[slices],
            pair.functional[slices],
            self.device,
            self.channel,
            self.tile,
            maps=self.maps,
            balance=self.balance,
            threads=self.threads,
        )
        fused = self.coloured(out.fused, slices, stacked)
        order = slice(None, None, -1) if pair.swapped else slice(None)
        pick = lambda m: None if m is None else (m[order] if stacked else m[order, 0])  # noqa: E731
        return FusionResult(
            fused=fused,
            surprise=pick(out.surprise),
            attention=pick(out.attention),
            seconds=time.perf_counter() - start,
            device=str(self.device),
            preset=self.preset,
            weight=None if out.weight is None else _given_order(out.weight, pair.swapped, stacked),
            balance_choice=self.choice,
        )

    def coloured(self, fused_y: np.ndarray, slices: slice, stacked: bool) -> np.ndarray:
        """The fused luma ``(Z, H, W)`` of ``slices`` in the caller's shape and colour (:meth:`PreparedPair.finish`):
        the last step of :meth:`run` and :meth:`run_slice` (``lightfusion-research bench`` times it apart).

        A colour pair's colour step runs after the network, in parts (a slice
        each, or bands of rows of at least :data:`COLOUR_PART_PIXELS` of a
        lone slice) on ``threads`` threads: on
        whole rows it costs less than half the CPU time it did tile by tile as
        each tile came out of the network (short strided rows, caches the
        network had just filled).
        """
        pair = self.pair
        colour = None if pair.colour is None else pair.colour[slices]
        part = PreparedPair(pair.anatomical[slices], pair.functional[slices], colour, pair.swapped, stacked)
        if colour is None:
            return part.finish(fused_y)
        coloured = np.empty((*fused_y.shape, 3), np.float32)
        workers = cpu_threads(self.threads)
        z, h, w = fused_y.shape
        bands = max(1, min(-(-workers // z), h * w // COLOUR_PART_PIXELS))
        rows = -(-h // bands)
        parts = [(slice(i, i + 1), slice(r, r + rows)) for i in range(z) for r in range(0, h, rows)]
        run_jobs(lambda where: part.colour_part(coloured, fused_y, where), parts, workers)
        return part.finish(fused_y, coloured)

    def join(self, results: list[FusionResult]) -> FusionResult:
        """The :meth:`run_slice` results of every slice, in order, as one result (a stack for a stack)."""
        if not self.pair.stacked:
            return results[0]
        first = results[0]
        return FusionResult(
            fused=np.stack([r.fused for r in results]),
            surprise=None if first.surprise is None else np.stack([r.surprise for r in results], axis=1),
            attention=None if first.attention is None else np.stack([r.attention for r in results], axis=1),
            seconds=sum(r.seconds for r in results),
            device=first.device,
            preset=first.preset,
            weight=None if first.weight is None else np.stack([r.weight for r in results]),
            balance_choice=first.balance_choice,
        )


def plan_pair(a: np.ndarray, b: np.ndarray, options: FusionOptions, a_view: ImageView, b_view: ImageView) -> FusionPlan:
    """Check everything a fusion of ``a`` and ``b`` needs and prepare it (``ValueError``, one line, as :func:`fuse`)."""
    pair = prepare_pair(a, b, a_view.limits, b_view.limits, a_view.rgb, b_view.rgb)
    model = model_for(options.preset, options.weights)
    if options.channel is not None and not 0 <= options.channel < model.config.width:
        raise ValueError(f"channel {options.channel} does not exist; the network has {model.config.width}")
    options, device = options.checked()
    preset = None if options.weights is not None else options.preset
    auto = options.balance == AUTO
    plan = FusionPlan(
        pair,
        model,
        device,
        preset,
        options.channel,
        options.tile,
        options.maps,
        None if auto else options.balance,
        options.threads,
    )
    if auto:
        plan.choice = choose_balance(plan)
        plan.balance = plan.choice.balance
    return plan


def keyword_options(
    preset: str | None = "PET-MRI",
    device: str = "auto",
    *,
    a_limits: tuple[float, float] | None = None,
    b_limits: tuple[float, float] | None = None,
    a_rgb: bool | None = None,
    b_rgb: bool | None = None,
    **options,
) -> tuple[FusionOptions, ImageView, ImageView]:
    """:func:`fuse`'s arguments after the images as the options and the two images' views they stand for.

    ``options`` are :class:`FusionOptions`' fields; an unknown keyword is a
    ``TypeError``, as in any call.
    """
    return FusionOptions(preset, device=device, **options), ImageView(a_limits, a_rgb), ImageView(b_limits, b_rgb)


def plan_fusion(
    a: np.ndarray, b: np.ndarray, preset: str | None = "PET-MRI", device: str = "auto", **kwargs
) -> FusionPlan:
    """Check everything a fusion needs and prepare it; arguments as for :func:`fuse`."""
    return plan_pair(a, b, *keyword_options(preset, device, **kwargs))


def fuse(a: np.ndarray, b: np.ndarray, preset: str | None = "PET-MRI", device: str = "auto", **kwargs) -> FusionResult:
    """Fuse two registered images (or stacks) with a LightFusionNet preset.

    ``a`` and ``b``: numpy arrays of the same spatial shape, ``(Y, X)`` or a
    stack ``(Z, Y, X)``, grey or with RGB(A) on the last axis, of any
    integer, bool or float type (see :mod:`napari_lightfusion.inputs` for how
    intensities are normalised; ``a_limits``/``b_limits`` override it,
    ``a_rgb``/``b_rgb`` say whether the last axis is colour).
    The colour image is the functional one: its luminance is fused with the
    grey image and its colour kept. ``preset``: "CT-MRI", "PET-MRI" or
    "SPECT-MRI" (or ``weights=`` a weight file). ``device``: "auto" (CUDA,
    then MPS, then CPU), "cpu", "cuda" or "mps". ``channel``: show one
    network channel in the maps instead of their mean. ``tile``: largest
    tile edge before the image is fused in overlapping tiles (at least 16).
    ``maps=True``: compute the surprise, attention and mix weight maps too
    (the default, ``False``, leaves them ``None``: the fused image alone is
    what most callers need, and the maps cost 10-25 % more time). ``balance``: b in [0, 1], from anatomy first
    (0) to function first (1), for a network trained with a balance (None:
    its default; the paper's networks ignore it), or ``"auto"``: the b that
    keeps the hot spot's anatomy and function best against pixel average
    on these images (:mod:`napari_lightfusion.balance_search`; the result's
    ``balance_choice`` says which and why). ``threads``: CPU threads
    of the fast path (None: torch's count).

    Raises ``ValueError`` (one line, saying what is wrong) for inputs it
    cannot take, unknown presets or devices, and unusable weight files.
    Inputs are never modified.
    """
    return plan_fusion(a, b, preset, device, **kwargs).run()
