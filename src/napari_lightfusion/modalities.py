"""What an image is: a plain description of it (:class:`LayerInfo`) and the modality its tags, names or values say.

:mod:`napari_lightfusion.roles` guesses roles and presets from these; no Qt
and no napari import here, so they are tested on their own. Evidence,
strongest first:

0. **DICOM Modality**, when the project's DICOM reader recorded it in the
   layer's metadata (MR, CT, PT, NM).
1. **Names.** The layer name, then the file name, then the names of the
   file's folder and the folder above it (the Harvard test set is laid out
   as ``test/CT-MRI/CT/23.png``, and napari names that layer just "23").
   Case-insensitive words: MRI, MR, T1, T2, FLAIR, DWI (MRI); phase,
   brightfield, DIC (microscopy anatomy); CT; PET, SPECT; GFP, RFP,
   mCherry, DAPI, fluorescence (microscopy channels). A name that holds two
   different modalities ("CT-MRI") says nothing about one image.
2. **Data.** A colour image is functional (PET and SPECT are pseudo-colour);
   an RGB(A) image whose colour channels are equal is grey (Harvard MRI and
   CT test PNGs load as such RGB images), see :func:`is_grey_rgb`; a grey
   image shown through a colour table (a PET volume in SUV) is colour, as
   it is fused (:mod:`napari_lightfusion.displayed`).
3. **Values**, when the names say nothing: a grey image whose values look
   like CT (air at -1000 HU, a bone peak, a flat soft-tissue band; or the
   same in a windowed 0..255 export) is CT, read from a few sampled slices
   (:func:`napari_lightfusion.image_evidence.ct_evidence`). Nothing in the
   values says MRI; an unnamed grey image beside such a CT ranks as the
   anatomy. :func:`~napari_lightfusion.roles.role_note` says when roles
   were guessed this way, or from the opening order alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

import numpy as np

from .image_evidence import ct_evidence, is_grey_rgb
from .resample import full_resolution

# word -> (modality label, anatomy score, domain)
_MRI = ("MRI", 3.0, "clinical")
_CT = ("CT", 2.0, "clinical")
_PET = ("PET", 1.0, "clinical")
_SPECT = ("SPECT", 1.0, "clinical")
_LIGHT = ("transmitted light", 3.0, "microscopy")
_FLUO = ("fluorescence", 1.0, "microscopy")
_WORDS: dict[str, tuple[str, float, str]] = {
    **dict.fromkeys(("mri", "mr", "t1", "t2", "t1w", "t2w", "t1ce", "t1gd", "flair", "dwi", "adc", "swi"), _MRI),
    **dict.fromkeys(("ct", "cect"), _CT),
    **dict.fromkeys(("pet", "fdg"), _PET),
    "spect": _SPECT,
    **dict.fromkeys(("phase", "brightfield", "dic", "transmitted"), _LIGHT),
    **dict.fromkeys(
        (
            "gfp",
            "egfp",
            "yfp",
            "cfp",
            "rfp",
            "mcherry",
            "tdtomato",
            "dapi",
            "hoechst",
            "fitc",
            "tritc",
            "cy3",
            "cy5",
            "fluorescence",
            "fluorescent",
            "fluo",
        ),
        _FLUO,
    ),
}

#: DICOM Modality (0008,0060) -> what it says, the strongest evidence when a reader recorded it.
_DICOM_MODALITIES = {"MR": _MRI, "CT": _CT, "PT": _PET, "NM": _SPECT}


@dataclass(frozen=True)
class Modality:
    """What the names say an image is: ``label`` ("MRI", "CT", "PET", "SPECT",
    "transmitted light", "fluorescence"), the word that said it, its anatomy
    score, its domain ("clinical" or "microscopy") and where it was read
    ("DICOM Modality", "layer name", "file name", "folder name", or "image":
    then ``word`` says what in the values looks like it)."""

    label: str
    word: str
    score: float
    domain: str
    source: str


@dataclass(frozen=True)
class LayerInfo:
    """A plain description of one candidate image, enough to guess roles and presets.

    ``shape`` and ``dtype`` describe the data (colour axis included),
    ``rgb`` says whether the last axis is colour, ``grey_rgb`` whether that
    colour is grey (equal channels). ``path`` is the file it came from, or
    None. ``layer`` carries the original object (e.g. a napari layer) so a
    caller can map a guess back; it takes no part in comparisons.
    """

    name: str
    path: str | None = None
    shape: tuple[int, ...] = ()
    dtype: str = ""
    rgb: bool = False
    grey_rgb: bool = False
    #: a scalar image shown through a colour table (a PET in SUV with a hot colormap): fused as colour
    tinted: bool = False
    #: the DICOM Modality a reader recorded (``metadata["clinical"]["modality"]``: "MR", "CT", "PT", "NM")
    dicom_modality: str = ""
    #: why a grey image's values look like CT (:func:`~napari_lightfusion.image_evidence.ct_evidence`), or ""
    looks: str = ""
    layer: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_array(
        cls, name: str, data, path: str | None = None, rgb: bool | None = None, layer: Any = None
    ) -> LayerInfo:
        """Describe ``data`` (numpy, dask or zarr; never materialised) named ``name``."""
        if rgb is None:
            rgb = len(data.shape) >= 3 and data.shape[-1] in (3, 4)
        grey_rgb = bool(rgb) and is_grey_rgb(data)
        return cls(
            name=str(name),
            path=None if path is None else str(path),
            shape=tuple(data.shape),
            dtype=str(data.dtype),
            rgb=bool(rgb),
            grey_rgb=grey_rgb,
            looks=ct_evidence(data, bool(rgb)) if grey_rgb or not rgb else "",
            layer=layer,
        )

    @classmethod
    def from_layer(cls, layer) -> LayerInfo:
        """Describe a napari image layer (read duck-typed: name, data, rgb, source.path, multiscale).

        A multiscale layer is described by its finest level and its values read from its coarsest.
        """
        multiscale = getattr(layer, "multiscale", False)
        path = getattr(getattr(layer, "source", None), "path", None)
        rgb = bool(getattr(layer, "rgb", False))
        info = cls.from_array(layer.name, layer.data[-1] if multiscale else layer.data, path, rgb, layer)
        if multiscale:
            info = replace(info, shape=tuple(full_resolution(layer).shape))
        clinical = (getattr(layer, "metadata", None) or {}).get("clinical") or {}
        tinted = not info.rgb and _tinted(layer)
        return replace(
            info, tinted=tinted, looks="" if tinted else info.looks, dicom_modality=str(clinical.get("modality", ""))
        )

    @property
    def colour(self) -> bool:
        """Whether the image shows colour (RGB with unequal channels, or a grey image shown in colour)."""
        return (self.rgb and not self.grey_rgb) or self.tinted

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the colour axis."""
        return self.shape[:-1] if self.rgb else self.shape


def _tinted(layer) -> bool:
    """Whether a grey layer's colormap (read duck-typed: ``colormap.map``) shows it in colour."""
    colormap = getattr(layer, "colormap", None)
    if not hasattr(colormap, "map"):
        return False
    table = np.asarray(colormap.map(np.linspace(0.0, 1.0, 32)))[:, :3]
    return bool(np.ptp(table, axis=1).max() >= 1e-3)


def layer_info(item) -> LayerInfo:
    """``item`` as a :class:`LayerInfo`: as it is, or a napari layer described (:meth:`LayerInfo.from_layer`)."""
    return item if isinstance(item, LayerInfo) else LayerInfo.from_layer(item)


# --------------------------------------------------------------------------
# names


def _words(text: str) -> list[str]:
    """The words of ``text`` as written, plus adjacent pairs joined ("bright field")."""
    raw = [t for t in re.split(r"[^A-Za-z0-9]+", text) if t]
    return raw + [a + b for a, b in zip(raw, raw[1:])]


def _modality_in(text: str, source: str) -> Modality | None:
    found: dict[str, Modality] = {}
    for word in _words(text):
        key = word.lower()
        key = key if key in _WORDS else key.rstrip("0123456789")  # "MRI23" -> "mri"
        if key in _WORDS:
            label, score, domain = _WORDS[key]
            found.setdefault(label, Modality(label, word, score, domain, source))
    return next(iter(found.values())) if len(found) == 1 else None


def _sources(info: LayerInfo) -> list[tuple[str, str]]:
    out = [(info.name, "layer name")]
    if info.path:
        p = PurePath(info.path)
        out.append((p.stem, "file name"))
        out += [(parent.name, "folder name") for parent in list(p.parents)[:2] if parent.name]
    return out


def modality(item) -> Modality | None:
    """What the names of ``item`` (a :class:`LayerInfo` or a napari layer) say it is, or None.

    Reads the DICOM Modality, then the layer name, the file name, the
    file's folder and the folder above it, in that order, and stops at the
    first that names exactly one modality (so "CT-MRI", naming two, is
    skipped); when none does, a grey image whose values look like CT is CT
    (source "image").
    """
    info = layer_info(item)
    if info.dicom_modality in _DICOM_MODALITIES:
        label, score, domain = _DICOM_MODALITIES[info.dicom_modality]
        return Modality(label, info.dicom_modality, score, domain, "DICOM Modality")
    for text, source in _sources(info):
        found = _modality_in(text, source)
        if found is not None:
            return found
    return Modality("CT", info.looks, _CT[1], "clinical", "image") if info.looks else None


def name_ids(info: LayerInfo) -> set[str]:
    """Words of the names that are not modalities ("MRI 23" -> {"23"}), to match pairs."""
    texts = [info.name] + ([PurePath(info.path).stem] if info.path else [])
    return {w for t in texts for w in re.split(r"[^a-z0-9]+", t.lower()) if w and w not in _WORDS}
