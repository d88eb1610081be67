"""How far ahead of pixel average any fused image can be in the hot spots: the ceiling of issue 20's target.

Issue 20 asks that some balance b put the PET-MRI and SPECT-MRI presets
ahead of pixel average on both hot-spot measures (anatomy kept, function
kept: :func:`napari_lightfusion.metrics.hot_spot_scores`) by at least 0.01,
on the first 30 test pairs. How much room is there? This module answers
for *any* fused image, not only the network's: for each pair it starts
from the pixel average's luma and moves every pixel freely (Adam on a
logit per pixel) to raise the smaller of the two mean leads over the
pairs (a smooth ``min(mean lead_anatomy, mean lead_function)`` plus a
tenth of their sum), with the measures' own 7 x 7 SSIM (:func:`..losses.ssim7_map`)
inside the measures' own hot spot (:func:`..metrics.hot_spot`). The images
it ends with are then scored with the evaluator's measures (scikit-image),
like every method of ``docs/results.md``. No network of any size can do
better on those pairs than these images do, to the optimiser's tolerance:
the result is a ceiling on the leads, and the bundled preset's points on
the 0.1 grid of b are printed beside it.

``lightfusion-research hot-spot-ceiling --data ROOT --dataset PET-MRI``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .balance import FUNCTIONAL

#: The b values of issue 20's sweep.
GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
#: Weight of the sum of the two leads beside the smaller one (keeps the larger one from falling freely).
SUM_WEIGHT = 0.1
#: Temperature of the smooth minimum of the two leads (a hard minimum swaps from step to step).
SOFTNESS = 0.002


def _both_leads(lead_a, lead_b):
    """What the optimiser raises: a smooth minimum of the two leads (:data:`SOFTNESS`) + :data:`SUM_WEIGHT` x the sum.

    Shared by the set-level ceiling and the per-pair one.
    """
    import torch

    smaller = -SOFTNESS * torch.logsumexp(torch.stack([lead_a, lead_b]) / -SOFTNESS, dim=0)
    return smaller + SUM_WEIGHT * (lead_a + lead_b)


def ceiling_images(pairs_luma, steps: int = 300, lr: float = 0.01) -> list[np.ndarray]:
    """Fused lumas in [0, 1] that lead pixel average by as much as they can on both hot-spot measures at once.

    ``pairs_luma`` holds ``(mri, functional luma)`` pairs of 2-D float
    arrays in [0, 1]. Pairs without a hot spot keep the pixel average. The
    objective is over the means across the pairs, as the issue's measures
    are, so a pair may give up a little where another gains more. The
    smaller lead is a smooth minimum (:data:`SOFTNESS`): with a hard one,
    or a larger ``lr``, the smaller lead swaps from step to step and the
    images end unbalanced (``lr`` 0.05: +0.030 and +0.023 after 300 steps,
    +0.011 and +0.040 after 1,000, on five PET-MRI test pairs; 0.01: +0.026
    and +0.026 after either).
    """
    import torch

    from ..losses import hot_spot_kept
    from ..metrics import hot_spot

    def tensor(x):
        return torch.as_tensor(x, dtype=torch.float32)[None, None]

    pairs_luma = list(pairs_luma)
    best = [0.5 * (a + b) for a, b in pairs_luma]
    # per pair with a hot spot: index, MRI, functional, mask, and the average's anatomy and function kept
    hot = []
    for k, (a, b) in enumerate(pairs_luma):
        mask = hot_spot(b * 255.0, a * 255.0)
        if mask.any():
            a_t, b_t, m_t, average = tensor(a), tensor(b), tensor(mask), tensor(best[k])
            hot.append((k, a_t, b_t, m_t, hot_spot_kept(average, a_t, m_t), hot_spot_kept(average, b_t, m_t)))
    if not hot:
        return best
    logits = [torch.logit(tensor(best[k]).clamp(1e-3, 1.0 - 1e-3)).requires_grad_() for k, *_ in hot]
    optimiser = torch.optim.Adam(logits, lr=lr)
    for _ in range(steps):
        fused = [torch.sigmoid(z) for z in logits]
        lead_a = torch.cat([hot_spot_kept(f, a, m) - ref_a for f, (_, a, _, m, ref_a, _) in zip(fused, hot)]).mean()
        lead_b = torch.cat([hot_spot_kept(f, b, m) - ref_b for f, (_, _, b, m, _, ref_b) in zip(fused, hot)]).mean()
        optimiser.zero_grad()
        (-_both_leads(lead_a, lead_b)).backward()
        optimiser.step()
    for z, (k, *_) in zip(logits, hot):
        best[k] = torch.sigmoid(z).detach()[0, 0].numpy().astype(np.float64)
    return best


def pair_ceilings(parts, steps: int = 100, lr: float = 0.01, chunk: int = 64, done=None) -> list[np.ndarray]:
    """For each training array ``(K >= 2, h, w)`` (MRI, functional luma): the fused image that leads average most.

    Like :func:`ceiling_images`, but each pair on its own (a smooth minimum
    of *its* two leads): the per-image optimum, the target of the training
    recipe's ceiling term (:func:`napari_lightfusion.losses.ceiling_loss`),
    which asks the middle of the balance range for it. Pairs of the same
    size are optimised ``chunk`` at a time (one batch); a pair without a
    hot spot keeps the pixel average. 100 steps reach about +0.03 on both
    leads on a PET-MRI training pair (the set-level ceiling's 300 steps
    add little per image); about 0.03 s per pair and step on one CPU thread.
    ``done(n)``, if given, is called after each batch of ``n`` pairs.
    """
    import torch

    from ..losses import hot_spot_kept
    from ..metrics import hot_spot

    out: list[np.ndarray | None] = [None] * len(parts)
    by_shape: dict[tuple, list[int]] = {}
    for i, part in enumerate(parts):
        by_shape.setdefault(part.shape[1:], []).append(i)
    for indices in by_shape.values():
        for start in range(0, len(indices), chunk):
            some = indices[start : start + chunk]
            a = torch.as_tensor(np.stack([parts[i][0] for i in some]), dtype=torch.float32)[:, None]
            b = torch.as_tensor(np.stack([parts[i][1] for i in some]), dtype=torch.float32)[:, None]
            masks = [hot_spot(parts[i][1] * 255.0, parts[i][0] * 255.0) for i in some]
            m = torch.as_tensor(np.stack(masks), dtype=torch.float32)[:, None]
            average = 0.5 * (a + b)
            with torch.no_grad():
                ref_a, ref_b = hot_spot_kept(average, a, m), hot_spot_kept(average, b, m)
            logit = torch.logit(average.clamp(1e-3, 1.0 - 1e-3)).requires_grad_()
            optimiser = torch.optim.Adam([logit], lr=lr)
            for _ in range(steps):
                fused = torch.sigmoid(logit)
                optimiser.zero_grad()
                (-_both_leads(hot_spot_kept(fused, a, m) - ref_a, hot_spot_kept(fused, b, m) - ref_b).sum()).backward()
                optimiser.step()
            has_hot = (m.sum(dim=(1, 2, 3)) > 0).view(-1, 1, 1, 1)
            fused = torch.where(has_hot, torch.sigmoid(logit).detach(), average)
            for k, i in enumerate(some):
                out[i] = fused[k, 0].numpy().astype(np.float32)
            if done is not None:
                done(len(some))
    return out


def ceiling(data_root: Path, dataset: str, split: str = "test", limit: int | None = 30, steps: int = 300) -> dict:
    """Pixel average's hot-spot means and those of :func:`ceiling_images` on the first ``limit`` pairs of a split.

    Returns ``{"pairs": n, "average": means, "ceiling": means}``, the means
    as :func:`.balance.hot_spot_means` gives them (the evaluator's
    measures, 0..255 grey).
    """
    from ..colour import grey
    from ..pair_data import load_pairs, split_names
    from .balance import hot_spot_means

    if steps < 1 or (limit is not None and limit < 1):
        raise ValueError(f"steps and limit must be at least 1, not {steps} and {limit}")
    folder, names = split_names(data_root, split, dataset)
    pairs = load_pairs(data_root, folder, dataset, names[:limit])
    lumas = [(np.asarray(p.anatomical, np.float64), grey(p.other)) for p in pairs]
    best = ceiling_images(lumas, steps=steps)
    return {
        "pairs": len(pairs),
        "average": hot_spot_means((0.5 * (a + b), a, b) for a, b in lumas),
        "ceiling": hot_spot_means((f, a, b) for f, (a, b) in zip(best, lumas)),
    }


def leads(means: dict, average: dict) -> tuple[float, float]:
    """(anatomy kept, function kept) of ``means`` minus pixel average's."""
    return means["anatomy kept"] - average["anatomy kept"], means["function kept"] - average["function kept"]


def add_hot_spot_ceiling(sub):
    p = sub.add_parser(
        "hot-spot-ceiling",
        help="how far ahead of pixel average any fused image can be on both hot-spot measures, beside the preset",
    )
    p.add_argument("--data", type=Path, required=True, help="harvard data root (holds train/ and test/)")
    p.add_argument("--dataset", required=True, choices=FUNCTIONAL, help="PET-MRI or SPECT-MRI")
    p.add_argument("--split", default="test", choices=("test", "validation"), help="test (default) or validation")
    p.add_argument("--limit", type=int, default=30, help="the first N pairs (default 30, as issue 20)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.set_defaults(run=run_hot_spot_ceiling)


def run_hot_spot_ceiling(args):
    import torch

    from .balance import balance_curve

    if args.threads:
        torch.set_num_threads(args.threads)
    result = ceiling(args.data, args.dataset, split=args.split, limit=args.limit, steps=args.steps)
    average = result["average"]
    print(
        f"{args.dataset}, first {result['pairs']} {args.split} pairs: pixel average anatomy / function kept "
        f"{average['anatomy kept']:.3f} / {average['function kept']:.3f}"
    )
    da, df = leads(result["ceiling"], average)
    print(f"ceiling (any fused image, {args.steps} steps): leads {da:+.3f}, {df:+.3f}")
    curve = balance_curve(args.data, args.dataset, GRID, limit=args.limit, split=args.split)
    for b, means in curve["network"].items():
        da, df = leads(means, curve["baselines"]["average"])
        print(f"bundled preset b = {b:.1f}: leads {da:+.3f}, {df:+.3f}")
