"""The balanced b: the balance chosen for the user's own two images, at fusion time.

A balance-conditioned network (:mod:`napari_lightfusion.model`) keeps more
anatomy at b = 0 and more function at b = 1. Which b keeps *both* better
than blending depends on the images: on the Harvard test pairs a T1 and a
T2 MRI under the same PET need opposite b (``docs/balance.md``). So instead
of one b for every pair, ``balance="auto"`` tries b on the pair itself (every
:data:`COARSE` from 0 to 1, then every :data:`FINE` around the best) and keeps
the one whose worse lead over pixel average, in the hot spot, is largest:

    lead_anatomy(b)  = anatomy kept(fused_b)  - anatomy kept(average)
    lead_function(b) = function kept(fused_b) - function kept(average)
    b*               = argmax_b  min(lead_anatomy(b), lead_function(b))

with the two hot-spot measures of :mod:`napari_lightfusion.metrics`
(``hot_spot``, SSIM maps against the MRI and the functional luma), computed
on the fused luma the network returns, from the inputs alone: no reference
image, no training. A stack gets one b for all its slices, chosen on the
:data:`SAMPLE_SLICES` slices with the largest hot spots (the leads are their
means), so that the volume does not change balance from slice to slice.

The b is chosen by the same measures the balance is scored with in
``docs/balance.md``; that is what it is for (keep the hot spot's anatomy
and function at once, as well as this network can on these images), and
why its figures there are not a held-out score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import run_stack
from .metrics import hot_spot, ssim_map

#: What ``balance=`` takes, besides a number, to choose b this way.
AUTO = "auto"
#: Step of the first search, from 0 to 1.
COARSE = 0.1
#: Step of the second search, between the best coarse b's neighbours. On the first 30 PET-MRI
#: test pairs it ends where a search of every 0.02 from 0 to 1 does, at a third of the cost.
FINE = 0.02
#: Most slices of a stack the choice fuses at every candidate b.
SAMPLE_SLICES = 5


@dataclass(frozen=True)
class BalanceChoice:
    """The b chosen for a pair and why: its leads over pixel average in the hot spot.

    ``balance``: the chosen b (None when the network takes no balance);
    ``anatomy_lead``, ``function_lead``: the chosen b's hot-spot leads over
    pixel average (mean over ``slices``; nan when there is no hot spot);
    ``slices``: the slices the choice looked at; ``reason``: one line for
    the user when the choice fell back to the network's default b.
    """

    balance: float | None
    anatomy_lead: float = float("nan")
    function_lead: float = float("nan")
    slices: tuple[int, ...] = ()
    reason: str | None = None

    def record(self) -> dict:
        """The choice as plain values, for an output's sidecar."""
        return {
            "balance": self.balance,
            "anatomy_lead": None if np.isnan(self.anatomy_lead) else round(self.anatomy_lead, 4),
            "function_lead": None if np.isnan(self.function_lead) else round(self.function_lead, 4),
            "slices": list(self.slices),
            "reason": self.reason,
        }

    def describe(self) -> str:
        """One line for a status bar or the command line: the b and its leads, or why it is the default."""
        if self.balance is None:
            return "balance: the network takes none"
        if self.reason:
            return f"balance {self.balance:.2f} ({self.reason})"
        return (
            f"balance {self.balance:.2f} (auto: hot spot vs pixel average, "
            f"anatomy {self.anatomy_lead:+.3f}, function {self.function_lead:+.3f})"
        )


class _Slice:
    """One slice's hot spot and pixel average's scores, computed once for every candidate b."""

    def __init__(self, mri: np.ndarray, functional: np.ndarray):
        self.mri, self.functional = mri * 255.0, functional * 255.0
        self.mask = hot_spot(self.functional, self.mri)
        average = 0.5 * (self.mri + self.functional)
        self.average = self.scores(average)

    def scores(self, fused: np.ndarray) -> np.ndarray:
        """``(anatomy kept, function kept)`` of ``fused`` (0..255) in this slice's hot spot."""
        return np.array([ssim_map(fused, ref)[self.mask].mean() for ref in (self.mri, self.functional)])

    def leads(self, fused_y: np.ndarray) -> np.ndarray:
        """``fused_y``'s (0..1) two leads over pixel average."""
        return self.scores(np.asarray(fused_y, np.float64) * 255.0) - self.average


def sample_slices(mri: np.ndarray, functional: np.ndarray, count: int = SAMPLE_SLICES) -> list[int]:
    """Up to ``count`` slices of a ``(Z, H, W)`` pair in [0, 1] with the largest hot spots, in slice order.

    Slices without a hot spot, or smaller than the 7 x 7 SSIM window, are
    never chosen.
    """
    if min(mri.shape[1:]) < 7:
        return []
    sizes = [(int(hot_spot(f * 255.0, m * 255.0).sum()), k) for k, (m, f) in enumerate(zip(mri, functional))]
    return sorted(k for size, k in sorted(sizes, reverse=True)[:count] if size)


def choose_balance(plan) -> BalanceChoice:
    """The balanced b of a :class:`~napari_lightfusion.fusion.FusionPlan`'s pair (see the module).

    Ties go to the b nearest the network's default. Falls back to the
    network's default b, saying why, when no slice has a hot spot (nothing
    lit inside the anatomy, e.g. two anatomical images).
    """
    model = plan.model
    if not model.conditioned:
        return BalanceChoice(None, reason="the network takes no balance")
    default = float(model.config.balance)
    pair = plan.pair
    picked = sample_slices(pair.anatomical, pair.functional)
    if not picked:
        return BalanceChoice(default, reason="no hot spot to balance: the preset's default")
    slices = [_Slice(pair.anatomical[k].astype(np.float64), pair.functional[k].astype(np.float64)) for k in picked]
    mri, functional = pair.anatomical[picked], pair.functional[picked]
    tried: dict[float, np.ndarray] = {}

    def leads(b: float) -> np.ndarray:
        if b not in tried:
            fused = run_stack(
                model, mri, functional, plan.device, tile=plan.tile, maps=False, balance=b, threads=plan.threads
            ).fused
            tried[b] = np.mean([s.leads(f) for s, f in zip(slices, fused)], axis=0)
        return tried[b]

    def best(grid) -> float:  # the worse lead largest; a tie goes to the b nearest the default
        return max(grid, key=lambda b: (round(float(leads(b).min()), 6), -abs(b - default)))

    coarse = best(_steps(0.0, 1.0, COARSE))
    b = best(_steps(max(0.0, coarse - COARSE), min(1.0, coarse + COARSE), FINE))
    return BalanceChoice(b, float(tried[b][0]), float(tried[b][1]), tuple(picked))


def _steps(start: float, stop: float, step: float) -> list[float]:
    """``start``, ``start + step``, ... up to ``stop`` (included), rounded to the step's decimals."""
    count = int(round((stop - start) / step))
    return [round(start + i * step, 4) for i in range(count + 1)]
