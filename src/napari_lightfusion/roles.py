"""Which image is anatomical, which is functional, and which preset fits them.

The widget guesses its two pickers and its preset from the images a user
opened; this module makes those guesses from plain descriptions
(:class:`LayerInfo`), with no Qt and no napari import, so they are tested on
their own.

Evidence, strongest first:

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
   anatomy. :func:`role_note` says when roles were guessed this way, or
   from the opening order alone.

Ranking: every image gets an *anatomy score*: MRI and transmitted-light
microscopy 3, CT 2 (the anatomy beside PET, the functional side beside MRI,
as in the CT-MRI preset), PET, SPECT and fluorescence 1; an unnamed grey
image 2.5 and an unnamed colour image 0.5. The highest score is anatomical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Any

import numpy as np

from .image_evidence import ct_evidence, is_grey_rgb

#: Presets this module can propose (the bundled ones, see weights.PRESETS).
CLINICAL_PRESETS = ("CT-MRI", "PET-MRI", "SPECT-MRI")

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
    **dict.fromkeys(("gfp", "egfp", "yfp", "cfp", "rfp", "mcherry", "tdtomato", "dapi", "hoechst", "fitc", "tritc",
                     "cy3", "cy5", "fluorescence", "fluorescent", "fluo"), _FLUO),
}

#: DICOM Modality (0008,0060) -> what it says, the strongest evidence when a reader recorded it.
_DICOM_MODALITIES = {"MR": _MRI, "CT": _CT, "PT": _PET, "NM": _SPECT}

#: Score of an image whose names say nothing: grey leans anatomical, colour functional.
_UNNAMED_GREY, _UNNAMED_COLOUR = 2.5, 0.5


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
    def from_array(cls, name: str, data, path: str | None = None, rgb: bool | None = None,
                   layer: Any = None) -> LayerInfo:
        """Describe ``data`` (numpy, dask or zarr; never materialised) named ``name``."""
        if rgb is None:
            rgb = len(data.shape) >= 3 and data.shape[-1] in (3, 4)
        grey_rgb = bool(rgb) and is_grey_rgb(data)
        return cls(
            name=str(name), path=None if path is None else str(path), shape=tuple(data.shape),
            dtype=str(data.dtype), rgb=bool(rgb), grey_rgb=grey_rgb,
            looks=ct_evidence(data, bool(rgb)) if grey_rgb or not rgb else "", layer=layer,
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
            info = replace(info, shape=tuple(layer.data[0].shape))
        clinical = (getattr(layer, "metadata", None) or {}).get("clinical") or {}
        tinted = not info.rgb and _tinted(layer)
        return replace(info, tinted=tinted, looks="" if tinted else info.looks,
                       dicom_modality=str(clinical.get("modality", "")))

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


def _info(item) -> LayerInfo:
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
    info = _info(item)
    if info.dicom_modality in _DICOM_MODALITIES:
        label, score, domain = _DICOM_MODALITIES[info.dicom_modality]
        return Modality(label, info.dicom_modality, score, domain, "DICOM Modality")
    for text, source in _sources(info):
        found = _modality_in(text, source)
        if found is not None:
            return found
    return Modality("CT", info.looks, _CT[1], "clinical", "image") if info.looks else None


def _said(found: Modality, info: LayerInfo, why: bool = True) -> str:
    """Where ``found`` was read, for a message: "file name says CT", "'b' looks like CT (air at ...)".

    ``why=False`` leaves out what in the values looks like it (for the status line).
    """
    if found.source == "image":
        return f"'{info.name}' looks like {found.label}" + (f" ({found.word})" if why else "")
    return f"{found.source} says {found.word}"


def _score(info: LayerInfo) -> float:
    mod = modality(info)
    if mod is not None:
        return mod.score
    return _UNNAMED_COLOUR if info.colour else _UNNAMED_GREY


def _ids(info: LayerInfo) -> set[str]:
    """Words of the names that are not modalities ("MRI 23" -> {"23"}), to match pairs."""
    texts = [info.name] + ([PurePath(info.path).stem] if info.path else [])
    return {w for t in texts for w in re.split(r"[^a-z0-9]+", t.lower()) if w and w not in _WORDS}


# --------------------------------------------------------------------------
# guesses


def guess_roles(candidates) -> tuple[Any, Any]:
    """``(anatomical, functional)`` among ``candidates`` (LayerInfo objects or napari layers).

    Anatomical: the highest anatomy score (see the module docstring; names
    first, then grey before colour), earliest on ties. Functional, among the
    others: the same number of spatial dimensions first, then the lowest
    anatomy score, then the same shape, then a shared name word ("MRI 23"
    with "PET 23"), then the earliest. Returns the candidates as given
    (``None`` where there are too few).
    """
    items = list(candidates)
    infos = [_info(c) for c in items]
    if not infos:
        return None, None
    scores = [_score(i) for i in infos]
    a = max(range(len(infos)), key=lambda k: (scores[k], not infos[k].colour, -k))
    anat = infos[a]

    def rank(k):
        other = infos[k]
        return (
            len(other.spatial_shape) != len(anat.spatial_shape),
            scores[k],
            other.spatial_shape != anat.spatial_shape,
            not (_ids(other) & _ids(anat)),
            k,
        )

    others = sorted((k for k in range(len(infos)) if k != a), key=rank)
    return items[a], (items[others[0]] if others else None)


@dataclass(frozen=True)
class PresetGuess:
    """A preset guess: ``preset`` (None when no bundled preset fits), one line of
    ``reason`` for the status line, and a one-line ``warning`` or None."""

    preset: str | None
    reason: str
    warning: str | None


def _microscopy_message(infos) -> str:
    """The warning for a microscopy pair, naming its layers and what said microscopy."""
    infos = [i for i in infos if i is not None]
    names = " + ".join(repr(i.name) for i in infos)
    said = next(f"the {m.source} of '{i.name}' says {m.word}" for i in infos
                if (m := modality(i)) is not None and m.domain == "microscopy")
    return (f"{names}: a microscopy pair ({said}), and no preset was trained for microscopy pairs; "
            "fine-tune one on your own pairs")


def _same_kind(a: LayerInfo, f: LayerInfo) -> str | None:
    """The modality both images of a pair are (MRI + MRI, CT + CT), which no preset was trained on, or None."""
    ma, mf = modality(a), modality(f)
    if ma is not None and mf is not None and ma.label == mf.label and ma.domain == "clinical":
        return ma.label
    return None


def guess_preset(anatomical, functional) -> PresetGuess:
    """The preset that fits a pair (LayerInfo objects or napari layers; either may be None).

    By names (or values that look like CT): SPECT -> "SPECT-MRI", PET ->
    "PET-MRI", a CT functional image -> "CT-MRI"; a microscopy name (GFP,
    phase, ...) -> no preset, with a warning that no preset was trained for
    microscopy and fine-tuning is available. Else by data: a colour image
    in the pair (``fuse`` takes it as the functional one) -> "PET-MRI", a
    grey pair (equal-channel RGB included) -> "CT-MRI", the grey preset,
    also for a pair of one modality (MRI + MRI), which no preset fits. The
    warning is :func:`preset_warning`'s for the preset guessed.
    """
    a = None if anatomical is None else _info(anatomical)
    f = None if functional is None else _info(functional)
    found = [(m, i) for i in (a, f) if i is not None and (m := modality(i)) is not None]
    labels = {m.label: (m, i) for m, i in found}
    colour = next((i for i in (f, a) if i is not None and i.colour), None)
    if any(m.domain == "microscopy" for m, _ in found):
        return PresetGuess(None, "a microscopy pair", _microscopy_message((a, f)))
    if "SPECT" in labels or "PET" in labels:
        preset = "SPECT-MRI" if "SPECT" in labels else "PET-MRI"
        reason = _said(*labels[preset[:-4]])
    elif f is None:
        return PresetGuess(None, "no functional image", None)
    elif a is not None and (same := _same_kind(a, f)):
        preset, reason = "CT-MRI", f"both {same}: no preset fits"
    elif found and found[-1][1] is f and found[-1][0].label == "CT":
        preset, reason = "CT-MRI", _said(*found[-1], why=False)
    elif colour is not None:
        preset, reason = "PET-MRI", f"'{colour.name}' is a colour image"
    else:
        preset, reason = "CT-MRI", f"'{f.name}' is grey ({'its colour channels are equal' if f.rgb else 'it is grey'})"
    return PresetGuess(preset, reason, preset_warning(preset, a, f))


def preset_warning(preset: str | None, anatomical, functional) -> str | None:
    """One line when ``preset`` looks wrong for the pair, else None.

    A grey pair (equal-channel RGB counts as grey) with the PET-MRI or
    SPECT-MRI preset, a pair with a colour image (the functional one, as
    ``fuse`` treats it) with CT-MRI, a clinical preset on a pair whose names
    say microscopy, a pair of one modality (MRI + MRI: no preset was trained
    on one), or CT-MRI with the CT as the anatomical image (the preset
    expects the MRI there). Custom presets are never questioned.
    """
    if preset not in CLINICAL_PRESETS or functional is None:
        return None
    a = None if anatomical is None else _info(anatomical)
    f = _info(functional)
    if any(m is not None and m.domain == "microscopy" for m in (modality(i) for i in (a, f) if i is not None)):
        return _microscopy_message((a, f))
    colour = next((i for i in (f, a) if i is not None and i.colour), None)
    if preset in ("PET-MRI", "SPECT-MRI") and colour is None:
        return f"'{f.name}' is grey but {preset} expects a colour {preset[:-4]} image: CT-MRI fits grey pairs"
    if preset == "CT-MRI" and colour is not None:
        return (f"'{colour.name}' is in colour but CT-MRI expects a grey CT image: "
                "PET-MRI or SPECT-MRI fits colour images")
    if a is None:
        return None
    if same := _same_kind(a, f):
        return (f"'{a.name}' and '{f.name}' are both {same}: no preset was trained on {same} + {same} pairs; "
                f"{preset} fuses '{f.name}' as its {preset[:-4]} (fine-tune a preset on such pairs)")
    ma = modality(a)
    if preset == "CT-MRI" and ma is not None and ma.label == "CT":
        return (f"{_said(ma, a)}, but it is the anatomical image: CT-MRI expects the MRI there and "
                f"the CT as the functional image; swap the two")
    return None


def role_note(anatomical, functional) -> str | None:
    """One line saying how the roles of a guessed pair were decided, when the names did not tell, else None.

    "Roles guessed from the images: 'b' looks like CT (...)" when values
    decided (:mod:`napari_lightfusion.image_evidence`); "Roles from the
    opening order: ..." when nothing did (two grey images whose names,
    DICOM tags and values say nothing).
    """
    if anatomical is None or functional is None:
        return None
    infos = (_info(anatomical), _info(functional))
    mods = [modality(i) for i in infos]
    seen = [_said(m, i) for m, i in zip(mods, infos) if m is not None and m.source == "image"]
    if seen:
        return "Roles guessed from the images: " + "; ".join(seen)
    if mods == [None, None] and not any(i.colour for i in infos):
        return (f"Roles from the opening order: nothing in the names or values of '{infos[0].name}' and "
                f"'{infos[1].name}' says which is the anatomy; check them")
    return None


def is_microscopy(*items) -> bool:
    """Whether the names of any of ``items`` (layers or :class:`LayerInfo`) say microscope channels."""
    return any((found := modality(item)) is not None and found.domain == "microscopy" for item in items)


def short_name(item) -> str:
    """What to call an image in a one-line message: its modality ("PET", "MRI") when known, else its name."""
    found = modality(item)
    return found.label if found is not None else _info(item).name
