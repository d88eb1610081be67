"""The networks of the paper's ablations (Tables 3, 4A, 4B and 5, and this project's Table D).

Every variant is LightFusionNet with one thing changed from the reference
``pca/dsc/16/4/eq5`` (attention / convolution / width C / reduction R /
loss weighting):

* Table 3: attention PCA -> conv / channel / spatial, and depthwise-separable
  (dsc) -> standard convolutions.
* Table 4A: width 8 / 16 / 32. Table 4B: reduction 2 / 4 / 8.
* Table 5: the loss weightings of Eq. 5 and of Table 5.
* Table D (not in the paper): the decoder output (the paper's
  ``intensity`` against a per-pixel ``blend`` of the inputs) and the
  learning rate (the run's against the paper's 1e-4).

The reference is shared by all tables: twelve networks in all (eleven
when the run itself uses the paper's learning rate).
:mod:`.ablation` trains and scores them; :mod:`.report_ablations` writes
their document.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..losses import WEIGHTINGS, LossWeights
from ..model import OUTPUTS, ModelConfig
from .train import TrainConfig

#: The dataset the paper's ablations use.
DATASET = "PET-MRI"

#: The learning rate the paper gives (Adam 1e-4).
PAPER_LR = 1e-4

#: The decoder output the paper describes: the sigmoid is the fused image.
PAPER_OUTPUT = "intensity"


@dataclass(frozen=True)
class Variant:
    """One network of the ablations.

    ``output`` is the decoder's output (:data:`napari_lightfusion.model.OUTPUTS`;
    default the model's default); ``lr`` a learning rate of its own, or
    ``None`` for the run's.
    """

    attention: str = "pca"
    conv: str = "dsc"
    width: int = 16
    reduction: int = 4
    weighting: str = "eq5"
    output: str = ModelConfig().output
    lr: float | None = None

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {self.weighting!r}; choose {', '.join(WEIGHTINGS)}")
        self.model_config()  # checks the rest

    @property
    def name(self) -> str:
        """``attention/conv/width/reduction/weighting``, then ``/output`` and ``/lr...`` when not the defaults."""
        name = f"{self.attention}/{self.conv}/{self.width}/{self.reduction}/{self.weighting}"
        if self.output != ModelConfig().output:
            name += f"/{self.output}"
        if self.lr is not None:
            name += f"/lr{self.lr:g}"
        return name

    @property
    def slug(self) -> str:
        """The folder name under ``out_dir``."""
        return self.name.replace("/", "-")

    def model_config(self) -> ModelConfig:
        """The network's configuration."""
        return ModelConfig(self.width, self.reduction, self.attention, self.conv, self.output)

    def loss_weights(self) -> LossWeights:
        """The loss weights it is trained with."""
        return WEIGHTINGS[self.weighting]


#: The shared reference: the paper's network and Eq. 5 weights.
REFERENCE = Variant()

#: table key -> (title, [(row label, variant)]), in the paper's row order.
TABLES: dict[str, tuple[str, list[tuple[str, Variant]]]] = {
    "Table 3": (
        "attention module and convolution type",
        [
            ("PCA → Conv", Variant(attention="conv")),
            ("PCA → CA (channel)", Variant(attention="channel")),
            ("PCA → SA (spatial)", Variant(attention="spatial")),
            ("D/W → Conv (standard)", Variant(conv="standard")),
            ("Ours (PCA, D/W)", REFERENCE),
        ],
    ),
    "Table 4A": (
        "embedding width C",
        [("C = 8", Variant(width=8)), ("C = 16", REFERENCE), ("C = 32", Variant(width=32))],
    ),
    "Table 4B": (
        "attention reduction ratio R",
        [("R = 2", Variant(reduction=2)), ("R = 4", REFERENCE), ("R = 8", Variant(reduction=8))],
    ),
    "Table 5": (
        "loss weighting",
        [
            ("Eq. 5: intensity 20, gradient 100, SSIM 50", REFERENCE),
            ("Table 5: intensity 100, gradient 50, SSIM 20", Variant(weighting="table5")),
        ],
    ),
}

#: Key of the table of this project's departures from the paper (not in the paper).
DEPARTURES = "Table D"


def all_tables(lr: float | None = None) -> dict[str, tuple[str, list[tuple[str, Variant]]]]:
    """:data:`TABLES` plus Table D, the decoder output and learning rate, for a run at ``lr``.

    Table D sets the reference (the model's default decoder output, the
    run's learning rate) against the other decoder output (``intensity``:
    the sigmoid is the image, as in the paper; ``blend``: a per-pixel weight
    of the two inputs; ``mix``: that weight with a contrast gain and offset)
    and against the paper's learning rate 1e-4 (left out when the run
    already uses it).
    """
    run_lr = train_config(REFERENCE, 1, lr).lr

    def named(output: str) -> str:
        return f"{output} (the paper's)" if output == PAPER_OUTPUT else output

    rows = [(f"reference: output {named(REFERENCE.output)}, lr {run_lr:g}", REFERENCE)]
    for output in OUTPUTS:
        if output != REFERENCE.output:
            rows.append((f"output {named(output)}, lr {run_lr:g}", Variant(output=output)))
    if run_lr != PAPER_LR:
        label = "the paper as written" if REFERENCE.output == PAPER_OUTPUT else f"output {REFERENCE.output}"
        rows.append((f"{label}: output {named(REFERENCE.output)}, lr {PAPER_LR:g}", Variant(lr=PAPER_LR)))
    tables = dict(TABLES)
    tables[DEPARTURES] = ("decoder output and learning rate (not in the paper)", rows)
    return tables


def variants(lr: float | None = None) -> list[Variant]:
    """Every distinct variant of :func:`all_tables`, the reference first."""
    seen = [REFERENCE]
    for _, rows in all_tables(lr).values():
        seen += [v for _, v in rows if v not in seen]
    return seen


def train_config(variant: Variant, epochs: int, lr: float | None = None) -> TrainConfig:
    """The recipe for ``variant``: the training defaults with ``epochs``.

    The learning rate is the variant's own if it has one, else ``lr`` if
    given, else the recipe's default.
    """
    config = TrainConfig(epochs=int(epochs), weights=variant.loss_weights(), model=variant.model_config())
    if variant.lr is not None:
        config.lr = float(variant.lr)
    elif lr is not None:
        config.lr = float(lr)
    return config
