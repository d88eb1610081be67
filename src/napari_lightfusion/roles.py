"""Which image is anatomical, which is functional, and which preset fits them.

The widget guesses its two pickers and its preset from the images a user
opened; this module makes those guesses from plain descriptions
(:class:`~napari_lightfusion.modalities.LayerInfo`), with no Qt and no napari
import, so they are tested on their own. What each image is comes from
:func:`~napari_lightfusion.modalities.modality`: its DICOM Modality, then
its names, its colour, then its values.

Ranking: every image gets an *anatomy score*: MRI and transmitted-light
microscopy 3, CT 2 (the anatomy beside PET, the functional side beside MRI,
as in the CT-MRI preset), PET, SPECT and fluorescence 1; an unnamed grey
image 2.5 and an unnamed colour image 0.5. The highest score is anatomical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .modalities import LayerInfo, Modality, layer_info, modality, name_ids

#: Presets this module can propose (the bundled ones, see weights.PRESETS).
CLINICAL_PRESETS = ("CT-MRI", "PET-MRI", "SPECT-MRI")

#: Score of an image whose names say nothing: grey leans anatomical, colour functional.
_UNNAMED_GREY, _UNNAMED_COLOUR = 2.5, 0.5


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
    infos = [layer_info(c) for c in items]
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
            not (name_ids(other) & name_ids(anat)),
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
    said = next(
        f"the {m.source} of '{i.name}' says {m.word}"
        for i in infos
        if (m := modality(i)) is not None and m.domain == "microscopy"
    )
    return (
        f"{names}: a microscopy pair ({said}), and no preset was trained for microscopy pairs; "
        "fine-tune one on your own pairs"
    )


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
    a = None if anatomical is None else layer_info(anatomical)
    f = None if functional is None else layer_info(functional)
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
    a = None if anatomical is None else layer_info(anatomical)
    f = layer_info(functional)
    if any(m is not None and m.domain == "microscopy" for m in (modality(i) for i in (a, f) if i is not None)):
        return _microscopy_message((a, f))
    colour = next((i for i in (f, a) if i is not None and i.colour), None)
    if preset in ("PET-MRI", "SPECT-MRI") and colour is None:
        return f"'{f.name}' is grey but {preset} expects a colour {preset[:-4]} image: CT-MRI fits grey pairs"
    if preset == "CT-MRI" and colour is not None:
        return (
            f"'{colour.name}' is in colour but CT-MRI expects a grey CT image: PET-MRI or SPECT-MRI fits colour images"
        )
    if a is None:
        return None
    if same := _same_kind(a, f):
        return (
            f"'{a.name}' and '{f.name}' are both {same}: no preset was trained on {same} + {same} pairs; "
            f"{preset} fuses '{f.name}' as its {preset[:-4]} (fine-tune a preset on such pairs)"
        )
    ma = modality(a)
    if preset == "CT-MRI" and ma is not None and ma.label == "CT":
        return (
            f"{_said(ma, a)}, but it is the anatomical image: CT-MRI expects the MRI there and "
            f"the CT as the functional image; swap the two"
        )
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
    infos = (layer_info(anatomical), layer_info(functional))
    mods = [modality(i) for i in infos]
    seen = [_said(m, i) for m, i in zip(mods, infos) if m is not None and m.source == "image"]
    if seen:
        return "Roles guessed from the images: " + "; ".join(seen)
    if mods == [None, None] and not any(i.colour for i in infos):
        return (
            f"Roles from the opening order: nothing in the names or values of '{infos[0].name}' and "
            f"'{infos[1].name}' says which is the anatomy; check them"
        )
    return None


def is_microscopy(*items) -> bool:
    """Whether the names of any of ``items`` (layers or :class:`LayerInfo`) say microscope channels."""
    return any((found := modality(item)) is not None and found.domain == "microscopy" for item in items)


def short_name(item) -> str:
    """What to call an image in a one-line message: its modality ("PET", "MRI") when known, else its name."""
    found = modality(item)
    return found.label if found is not None else layer_info(item).name
