"""Reading the Harvard Whole Brain Atlas fusion pairs.

The data root (``.../harvard``) holds ``{train,test}/<dataset>/<modality>/<file>.png``;
a pair is the two files of the same name in the two modality folders of a
dataset. Every image goes through :func:`read_image`, which normalises the
atlas's mix of 8-bit grey files and RGB files with three equal channels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: dataset name -> (anatomical modality, other modality)
DATASETS = {
    "CT-MRI": ("MRI", "CT"),
    "PET-MRI": ("MRI", "PET"),
    "SPECT-MRI": ("MRI", "SPECT"),
}


@dataclass(frozen=True)
class Pair:
    """One registered pair: float images in [0, 1], the second grey or RGB."""

    name: str
    anatomical: np.ndarray  # (H, W)
    other: np.ndarray  # (H, W) or (H, W, 3)


def read_image(path: Path) -> np.ndarray:
    """Read a PNG as float in [0, 1]: ``(H, W)`` when grey, ``(H, W, 3)`` when colour.

    RGB files whose three channels are equal are grey images and come back
    as ``(H, W)``; an alpha channel is dropped.
    """
    from skimage.io import imread

    image = np.asarray(imread(path))
    if image.ndim == 3:
        image = image[..., :3]
        if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
            image[..., 0], image[..., 2]
        ):
            image = image[..., 0]
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return image.astype(np.float32) / scale


def dataset_dir(root: Path, split: str, dataset: str) -> Path:
    """The folder of one split of one dataset, with a clear error when absent."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    folder = Path(root) / split / dataset
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} (is {root} the harvard data root?)")
    return folder


def pair_names(root: Path, split: str, dataset: str) -> list[str]:
    """File names present in both modality folders, sorted."""
    folder = dataset_dir(root, split, dataset)
    first, second = DATASETS[dataset]
    names = {p.name for p in (folder / first).glob("*.png")}
    names &= {p.name for p in (folder / second).glob("*.png")}
    if not names:
        raise FileNotFoundError(f"no image pairs under {folder}")
    return sorted(names)


def load_pairs(root: Path, split: str, dataset: str, names: list[str] | None = None) -> list[Pair]:
    """Load the pairs of one split of one dataset (all of them, or ``names``)."""
    folder = dataset_dir(root, split, dataset)
    first, second = DATASETS[dataset]
    names = pair_names(root, split, dataset) if names is None else names
    return [
        Pair(n, read_image(folder / first / n), read_image(folder / second / n)) for n in names
    ]


#: What an evaluation scores: the test pairs, or the validation pairs carved out of ``train/``.
SPLITS = ("test", "validation")


def split_names(root: Path, split: str, dataset: str) -> tuple[str, list[str]]:
    """``(folder, names)`` of a split's pairs: ``("test", all test pairs)`` or ``("train", the validation ones)``.

    The validation pairs (:func:`is_validation`) are never trained on, so
    choices between runs are made on them without looking at the test set.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if split == "test":
        return "test", pair_names(root, "test", dataset)
    return "train", [n for n in pair_names(root, "train", dataset) if is_validation(n)]


def is_validation(name: str, fraction: float = 0.1) -> bool:
    """Deterministic validation membership by file name (a hash, not the order)."""
    digest = hashlib.sha1(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32
