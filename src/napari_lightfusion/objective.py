"""The training objective: the loss, its weights and how the balance b shapes it, for every recipe.

:class:`Objective` is what a network is trained with and what its sidecar
records (:func:`objective_of` reads it back): the loss weights
(:class:`napari_lightfusion.losses.LossWeights`), the default b of a
balance-conditioned network, how often a batch is trained there (the rest
draw b uniformly in [0, 1]), the balance loss (a
:func:`napari_lightfusion.losses.fusion_loss` mode), the weight of its
hot-spot term and the learning-rate factor of the balance layer. The
training core (:mod:`napari_lightfusion.training`) draws b and computes
the loss through it; fine-tuning picks one for the user's pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from . import metrics
from .losses import BALANCE_MODES, HOT_SPOT_MODES, LossWeights, ceiling_loss, fusion_loss, middle_loss
from .model import LightFusionNet

#: With a middle term: the share of batches drawn in its band first (the rest are drawn as without it).
MIDDLE_SHARE = 0.25


@dataclass(frozen=True)
class Objective:
    """The loss a network is trained with: weights, and how the balance b shapes it.

    ``balance`` is the network's default b (None: the paper's unconditioned
    loss, b = 0 throughout). A batch is trained at the default b with
    probability ``default_share``, else at b uniform in [0, 1];
    ``balance_loss`` is the :func:`fusion_loss` mode, ``hot_spot_weight``
    the weight of its hot-spot term ("hotspot", "split"), ``film_lr_scale``
    the learning-rate factor of the balance layer.

    ``middle_weight`` (in units of the SSIM weight; 0: off) adds
    :func:`~napari_lightfusion.losses.middle_loss` with ``middle_margin`` at
    every b within ``middle_band`` of 0.5, and then :data:`MIDDLE_SHARE` of
    the batches are drawn uniformly in that band (unless every batch is at
    the default b).

    ``ceiling_weight`` (in units of the SSIM weight; 0: off) adds, in the
    same band, :func:`~napari_lightfusion.losses.ceiling_loss`: the distance
    to each training pair's own hot-spot ceiling, a target image computed
    before training (:func:`napari_lightfusion.research.hot_spot_ceiling.pair_ceilings`,
    the fourth plane of the training arrays). Batches without that plane
    (validation, fine-tuning) skip the term.
    """

    weights: LossWeights = field(default_factory=LossWeights)
    balance: float | None = None
    balance_loss: str = "targets"
    default_share: float = 0.25
    hot_spot_weight: float = 1.0
    film_lr_scale: float = 10.0
    middle_weight: float = 0.0
    middle_margin: float = 0.03
    middle_band: float = 0.05
    ceiling_weight: float = 0.0

    def __post_init__(self):
        if self.balance_loss not in BALANCE_MODES:
            raise ValueError(f"balance loss must be one of {', '.join(BALANCE_MODES)}, not {self.balance_loss!r}")
        if not 0.0 <= self.default_share <= 1.0:
            raise ValueError(f"default share must be in [0, 1], not {self.default_share}")
        if min(self.middle_weight, self.ceiling_weight) < 0 or not 0.0 <= self.middle_band <= 0.5:
            raise ValueError(
                f"the middle and ceiling terms need weights >= 0 and a band in [0, 0.5], "
                f"not {self.middle_weight}, {self.ceiling_weight} and {self.middle_band}"
            )

    @property
    def has_middle(self) -> bool:
        """Whether the loss has the middle term (a conditioned network's, weighted)."""
        return self.balance is not None and self.middle_weight > 0

    @property
    def draws_band(self) -> bool:
        """Whether some batches are drawn in the middle band: a middle or ceiling term, not all at the default b."""
        return (self.has_middle or self.needs_ceilings) and self.default_share < 1.0

    @property
    def needs_ceilings(self) -> bool:
        """Whether the loss has the ceiling term (the training arrays then carry each pair's ceiling)."""
        return self.balance is not None and self.ceiling_weight > 0

    @property
    def needs_hot_spots(self) -> bool:
        """Whether the loss looks at the functional hot spot (the crops then carry its mask)."""
        if self.balance is None:
            return False
        return self.balance_loss in HOT_SPOT_MODES or self.has_middle or self.needs_ceilings

    def draw(self, rng: np.random.Generator) -> float | None:
        """The balance of one batch (None for the paper's loss)."""
        if self.balance is None:
            return None
        if self.draws_band and rng.random() < MIDDLE_SHARE:
            return float(rng.uniform(0.5 - self.middle_band, 0.5 + self.middle_band))
        return float(self.balance) if rng.random() < self.default_share else float(rng.random())

    def loss(self, fused, a, b, balance: float | None, hot=None, ceiling=None):
        """``(total, terms)`` of :func:`fusion_loss` at ``balance`` (None: the paper's loss).

        ``ceiling``: the batch's hot-spot ceilings, for the ceiling term (None: skipped).
        """
        if balance is None:
            return fusion_loss(fused, a, b, self.weights)
        total, terms = fusion_loss(
            fused,
            a,
            b,
            self.weights,
            balance,
            self.balance_loss,
            hot if self.needs_hot_spots else None,
            hot_weight=self.hot_spot_weight,
        )
        if abs(balance - 0.5) <= self.middle_band:
            if self.has_middle:
                terms["middle"] = middle_loss(fused, a, b, hot, self.middle_margin)
                total = total + self.weights.ssim * self.middle_weight * terms["middle"]
            if self.needs_ceilings and ceiling is not None:
                terms["ceiling"] = ceiling_loss(fused, ceiling, hot)
                total = total + self.weights.ssim * self.ceiling_weight * terms["ceiling"]
        return total, terms

    def for_model(self, model: LightFusionNet) -> Objective:
        """This objective as ``model`` can take it.

        An unconditioned network cannot take b: it is trained at the default
        b only. A conditioned network under the paper's loss keeps its own
        default b, trained there only with the "targets" loss.
        """
        if not model.conditioned and self.balance is not None:
            return replace(self, default_share=1.0)
        if model.conditioned and self.balance is None:
            return replace(self, balance=float(model.config.balance), balance_loss="targets", default_share=1.0)
        return self

    def describe(self) -> str:
        """One phrase: ``"split loss (hot-spot weight 2), default b 0.35, 25 % of batches there, Eq. 5 weights"``."""
        w = self.weights
        weights = "Eq. 5 weights" if w == LossWeights() else f"weights {w.intensity:g}/{w.gradient:g}/{w.ssim:g}"
        if self.balance is None:
            return f"the paper's loss, {weights}"
        hot = f" (hot-spot weight {self.hot_spot_weight:g})" if self.balance_loss in HOT_SPOT_MODES else ""
        other = "the other " if self.draws_band else ""
        share = (
            "every batch there"
            if self.default_share >= 1.0
            else f"{self.default_share:.0%} of {other}batches there, the rest b uniform"
        )
        middle = (
            f", middle term {self.middle_weight:g} (margin {self.middle_margin:g} at b 0.5 +- {self.middle_band:g}, "
            f"{MIDDLE_SHARE:.0%} of batches there)"
            if self.draws_band and self.has_middle
            else ""
        )
        if self.draws_band and self.needs_ceilings:
            middle += f", ceiling term {self.ceiling_weight:g} at b 0.5 +- {self.middle_band:g}"
        return f"{self.balance_loss} balance loss{hot}{middle}, default b {self.balance:g} ({share}), {weights}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> Objective:
        values = dict(values)
        values["weights"] = LossWeights(**values.get("weights") or {})
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values and values[k] is not None}
        if "balance" in values:
            known["balance"] = values["balance"]
        return cls(**known)


#: The middle and ceiling terms' settings, as a training recipe and its sidecar name them.
MIDDLE_KEYS = ("middle_weight", "middle_margin", "middle_band", "ceiling_weight")


def objective_of(sidecar: Mapping) -> Objective:
    """The objective a weight file was trained with, from its sidecar.

    Fine-tuned files record it (``"objective"``); trained ones give the loss
    weights, the model's default b and the balance settings of ``"train"``.
    Missing settings take the defaults (Eq. 5, the "targets" loss).
    """
    if sidecar.get("objective"):
        return Objective.from_dict(sidecar["objective"])
    balance = (sidecar.get("model") or {}).get("balance")
    train = sidecar.get("train") or {}
    keys = ("balance_loss", "default_share", "hot_spot_weight", "film_lr_scale", *MIDDLE_KEYS)
    settings = {k: train[k] for k in keys if train.get(k) is not None} if balance is not None else {}
    weights = LossWeights(**sidecar["loss_weights"]) if sidecar.get("loss_weights") else LossWeights()
    return Objective(weights=weights, balance=balance, **settings)


def with_hot_spots(parts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``(2, h, w)`` arrays with a third plane: the functional hot spot (:func:`metrics.hot_spot`), 1 inside."""
    return [
        np.concatenate([part[:2], metrics.hot_spot(part[1] * 255.0, part[0] * 255.0)[None].astype(np.float32)])
        for part in parts
    ]
