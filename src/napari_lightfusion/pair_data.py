"""Registered pairs on disk and in memory: reading them, holding part out, the arrays training sees.

One place for the file-pair I/O that training (``lightfusion train``, the
presets) and fine-tuning (the API, ``lightfusion finetune``, the widget)
share (the training loop itself is :mod:`napari_lightfusion.training`).

* **Folders of pairs** in the layout of the Harvard Whole Brain Atlas:
  ``DIR/MRI/NAME`` with ``DIR/CT|PET|SPECT/NAME`` (:func:`folder_pairs`);
  the atlas itself is ``ROOT/{train,test}/<dataset>/<modality>/<file>.png``
  (:func:`pair_names`, :func:`load_pairs`). Every atlas image goes through
  :func:`read_image`, which normalises its mix of 8-bit grey files and RGB
  files with three equal channels. The validation pairs of ``train/`` are
  chosen by a hash of the file name (:func:`is_validation`).
* **The user's files** (``ANATOMICAL:FUNCTIONAL``, :func:`parse_pair`) are
  read as they are (:func:`read_image_file`) and normalised by
  :func:`napari_lightfusion.inputs.prepare_pair`, exactly as ``fuse`` does,
  so that what is learned is what is fused (:func:`read_pairs`).
* **Held out** (:func:`split_prepared`): when the pairs hold at least
  ``round(1 / holdout)`` slices (2D pairs and stack slices together), every
  that-many-th slice is held out whole; otherwise every slice gives up an
  edge band. Training arrays are ``(2, h, w)`` float32: anatomical, then the
  functional luminance (:func:`planes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colour import grey
from .inputs import PreparedPair, prepare_pair
from .messages import first_line

#: Atlas dataset name -> (anatomical modality, other modality): the bundled presets' pairs.
DATASETS = {"CT-MRI": ("MRI", "CT"), "PET-MRI": ("MRI", "PET"), "SPECT-MRI": ("MRI", "SPECT")}

#: Functional folders of the atlas layout, next to ``MRI/``.
FUNCTIONAL_FOLDERS = ("CT", "PET", "SPECT")

#: Image files a folder of pairs may hold.
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

#: Smallest edge (pixels) of a slice that can be split into training and held-out parts.
MIN_EDGE = 32

#: What an evaluation scores: the test pairs, or the validation pairs carved out of ``train/``.
SPLITS = ("test", "validation")


# --------------------------------------------------------------------------
# the atlas


@dataclass(frozen=True)
class Pair:
    """One registered atlas pair: float images in [0, 1], the second grey or RGB."""

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
        if np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]):
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


def _common_names(first: Path, second: Path, suffixes: Sequence[str]) -> list[str]:
    """Sorted names of the image files present in both folders."""

    def images(folder: Path) -> set[str]:
        if not folder.is_dir():
            return set()
        return {p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes}

    return sorted(images(first) & images(second))


def pair_names(root: Path, split: str, dataset: str) -> list[str]:
    """File names present in both modality folders, sorted."""
    folder = dataset_dir(root, split, dataset)
    first, second = DATASETS[dataset]
    names = _common_names(folder / first, folder / second, (".png",))
    if not names:
        raise FileNotFoundError(f"no image pairs under {folder}")
    return names


def load_pairs(root: Path, split: str, dataset: str, names: list[str] | None = None) -> list[Pair]:
    """Load the pairs of one split of one dataset (all of them, or ``names``)."""
    folder = dataset_dir(root, split, dataset)
    first, second = DATASETS[dataset]
    names = pair_names(root, split, dataset) if names is None else names
    return [Pair(n, read_image(folder / first / n), read_image(folder / second / n)) for n in names]


def is_validation(name: str, fraction: float = 0.1) -> bool:
    """Deterministic validation membership by file name (a hash, not the order)."""
    digest = hashlib.sha1(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


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


def planes(pairs: Sequence[Pair]) -> list[np.ndarray]:
    """Atlas pairs as training arrays ``(2, H, W)`` float32: anatomical, then the luminance of the other."""
    return [np.stack([p.anatomical, grey(p.other)]).astype(np.float32) for p in pairs]


# --------------------------------------------------------------------------
# the user's files


def read_image_file(path) -> np.ndarray:
    """An image or stack from a PNG/TIFF/... file as stored, or a one-line ``ValueError``."""
    from skimage.io import imread

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no image file {path}")
    try:
        return np.asarray(imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault: say so in one line
        raise ValueError(f"cannot read {path} as an image: {first_line(exc)}") from None


def parse_pair(text: str) -> tuple[str, str]:
    """``"ANATOMICAL:FUNCTIONAL"`` -> the two paths (a Windows drive letter's colon is kept)."""
    cuts = [i for i, ch in enumerate(text) if ch == ":" and 0 < i < len(text) - 1]
    cuts = [i for i in cuts if not (text[i - 1].isalpha() and (i == 1 or text[i - 2] == ":") and text[i + 1] in "\\/")]
    existing = [i for i in cuts if Path(text[:i]).is_file() and Path(text[i + 1 :]).is_file()]
    chosen = existing or cuts
    if len(chosen) != 1:
        raise ValueError(f"give a pair as ANATOMICAL:FUNCTIONAL (two image files), not {text!r}")
    return text[: chosen[0]], text[chosen[0] + 1 :]


def folder_pairs(folder) -> list[tuple[str, str]]:
    """Pairs of a folder in the atlas layout: ``MRI/NAME`` with ``CT|PET|SPECT/NAME``.

    Raises a one-line ``ValueError`` when the folder is missing, has no or
    several functional folders, or no file names in common.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"no folder {folder}")
    layout = f"expected {folder}/MRI/* with {folder}/CT, PET or SPECT/* of the same names"
    functional = [folder / name for name in FUNCTIONAL_FOLDERS if (folder / name).is_dir()]
    if not (folder / "MRI").is_dir() or len(functional) != 1:
        raise ValueError(f"{folder} is not a folder of pairs: {layout}")
    names = _common_names(folder / "MRI", functional[0], IMAGE_SUFFIXES)
    if not names:
        raise ValueError(f"no image pairs in {folder}: {layout}")
    return [(str(folder / "MRI" / n), str(functional[0] / n)) for n in names]


def read_pairs(paths: Sequence[tuple[str, str]]) -> list[PreparedPair]:
    """Read and prepare pairs of files; a pair that ``fuse`` would refuse is a one-line error naming it."""
    prepared = []
    for anatomical, functional in paths:
        a, b = read_image_file(anatomical), read_image_file(functional)
        try:
            prepared.append(prepare_pair(a, b))
        except ValueError as exc:
            raise ValueError(f"{anatomical} and {functional}: {exc}") from None
    return prepared


def as_prepared(pair) -> PreparedPair:
    """A :class:`PreparedPair` as it is, or ``(a, b)`` arrays prepared as ``fuse`` prepares them."""
    if isinstance(pair, PreparedPair):
        return pair
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise ValueError("each pair must be two images (anatomical, functional)") from None
    return prepare_pair(a, b)


# --------------------------------------------------------------------------
# holding part out


def _band_edge(anatomical: np.ndarray, functional: np.ndarray, axis: int, size: int) -> str:
    """Which end ("start" or "end") of ``axis`` has more edges in a band of ``size``: the one to hold out."""
    energy = sum(np.abs(np.diff(image, axis=axis)) for image in (anatomical, functional))
    index = [slice(None), slice(None)]
    index[axis] = slice(0, size)
    start = float(energy[tuple(index)].sum())
    index[axis] = slice(-size, None)
    end = float(energy[tuple(index)].sum())
    return "start" if start > end else "end"


def _band(image: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)`` parts of one ``(2, h, w)`` slice: a band of its longer side held out."""
    h, w = image.shape[1:]
    axis = 0 if h >= w else 1
    length = (h, w)[axis]
    size = min(length // 2, max(round(holdout * length), 16))
    keep, held = [slice(None)] * 3, [slice(None)] * 3
    if _band_edge(image[0], image[1], axis, size) == "start":
        held[axis + 1], keep[axis + 1] = slice(0, size), slice(size, None)
    else:
        held[axis + 1], keep[axis + 1] = slice(length - size, None), slice(0, length - size)
    return image[tuple(keep)], image[tuple(held)]


def split_prepared(pairs: Sequence[PreparedPair], holdout: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training and held-out parts of prepared pairs, each a list of ``(2, h, w)`` float32 arrays.

    The slices of all pairs, in order (a 2D pair is one slice): with at least
    ``round(1 / holdout)`` of them, the middle slice of every group of that
    many is held out whole. Fewer: every slice gives up a band of ``holdout``
    of its longer side (at least 16 pixels, at most half), at the end with
    more edges in it. Raises ``ValueError`` for slices under ``MIN_EDGE`` pixels.
    """
    slices = []
    for pair in pairs:
        h, w = pair.anatomical.shape[1:]
        if min(h, w) < MIN_EDGE:
            raise ValueError(
                f"a {h} x {w} image is too small to fine-tune on; it needs at least {MIN_EDGE} x {MIN_EDGE}"
            )
        slices += list(np.stack([pair.anatomical, pair.functional], axis=1).astype(np.float32, copy=False))
    period = max(2, round(1.0 / holdout))
    if len(slices) >= period:
        held = {i for i in range(len(slices)) if i % period == period // 2}
        return [s for i, s in enumerate(slices) if i not in held], [slices[i] for i in sorted(held)]
    parts = [_band(image, holdout) for image in slices]
    return [kept for kept, _ in parts], [held for _, held in parts]


def split_pair(pair: PreparedPair, holdout: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """:func:`split_prepared` of one pair."""
    return split_prepared([pair], holdout)
