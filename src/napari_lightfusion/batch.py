"""``lightfusion batch``: a cohort fused from a CSV manifest, one pair per row, with a summary CSV.

Each row names an anatomical and a functional input, a preset (empty or
``auto``: guessed from the files as ``fuse`` guesses it) and an output,
whose name says what is written:

* ``NAME.png``, ``.tif``, ``.jpg`` ... (:data:`~napari_lightfusion.image_files.IMAGE_SUFFIXES`):
  a 2D pair (or TIFF stacks) fused in memory, as ``lightfusion fuse`` does
  (:func:`~napari_lightfusion.image_files.fuse_files`);
* ``NAME.nii`` / ``NAME.nii.gz``: NIfTI, ``NAME.zarr`` or a name without
  one of these endings: OME-Zarr (``NAME.zarr``), and a ``format`` column
  of ``dicom``: a DICOM series in the folder ``NAME``, all as
  ``fuse-volume`` writes them (:func:`~napari_lightfusion.clinical_export.fuse_volume_as`).

A failing pair is recorded and the batch goes on; a full disk stops it
(the rows not reached are marked so) since every later row would fail too,
and a rerun resumes the volumes that were interrupted.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path

from .image_files import IMAGE_SUFFIXES, check_network, fuse_files, volume_preset
from .messages import described, first_line
from .output_errors import DiskFull, SliceCount, check_output_place, output_errors

#: Columns of a batch manifest (``preset`` may be left out or empty: guessed; ``format`` is optional).
MANIFEST_COLUMNS = ("anatomical", "functional", "preset", "output")

#: Columns of the summary a batch writes.
SUMMARY_COLUMNS = (
    "output",
    "anatomical",
    "functional",
    "preset",
    "preset_reason",
    "status",
    "seconds",
    "slices_fused",
    "notes",
    "error",
)


def read_manifest(path) -> list[dict]:
    """The rows of a batch manifest; ``ValueError`` for a missing file or column, or repeated outputs."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lacking = [c for c in ("anatomical", "functional", "output") if c not in columns]
    if lacking:
        raise ValueError(
            f"the manifest {path} lacks the column(s) {', '.join(lacking)}; "
            f"its columns must be {','.join(MANIFEST_COLUMNS)} (and optionally format)"
        )
    outputs = [row["output"] for row in rows]
    repeated = sorted({o for o in outputs if outputs.count(o) > 1})
    if repeated:
        raise ValueError(f"the manifest {path} names the output {repeated[0]} more than once")
    base = path.parent
    for row in rows:
        for key in ("anatomical", "functional"):
            if row[key] and not Path(row[key]).is_absolute():
                row[key] = str(base / row[key])
        row["preset"] = row.get("preset") or "auto"
        row["format"] = row.get("format") or "auto"
    return rows


def output_name(entry: str, fmt: str = "auto") -> tuple[str, str]:
    """``(kind, file name)`` of a row's output: ``image``, ``nifti``, ``dicom`` or ``ome-zarr`` (see the module)."""
    name = entry.lower()
    if fmt == "dicom":
        return "dicom", entry
    if name.endswith(IMAGE_SUFFIXES):
        if fmt != "auto":
            raise ValueError(f"{entry} names an image file; the format {fmt!r} does not apply to it")
        return "image", entry
    if name.endswith((".nii", ".nii.gz")):
        return "nifti", entry
    return "ome-zarr", entry if name.endswith(".zarr") else entry + ".zarr"


def _two_dimensional(path: str) -> bool:
    return path.lower().endswith((".png", ".jpg", ".jpeg", ".bmp"))


def _fuse_one(
    row: dict, out_dir: Path, runner, device: str, align: bool, command, entry: dict, notes: list[str], balance=None
) -> None:
    """Fuse one manifest row into ``out_dir``, filling in ``entry`` (output name, preset, slices fused)."""
    from .clinical_export import fuse_volume_as
    from .fusion import FusionOptions

    if not row["anatomical"] or not row["functional"] or not row["output"]:
        raise ValueError("the row lacks an anatomical, functional or output entry")
    kind, entry["output"] = output_name(row["output"], row["format"])
    target = out_dir / entry["output"]
    if kind == "image":
        options = FusionOptions(row["preset"], device=device, balance=balance)
        report = fuse_files(row["anatomical"], row["functional"], target, options, align=align, say=notes.append)
        entry.update(preset=report.choice.preset, preset_reason=report.choice.reason, slices_fused=report.slices)
        return
    flat = [p for p in (row["anatomical"], row["functional"]) if _two_dimensional(p)]
    if flat:
        raise ValueError(f"{Path(flat[0]).name} is a 2D image: name the output .png or .tif to fuse it as an image")
    choice, placed = volume_preset(row["anatomical"], row["functional"], row["preset"])
    check_network(choice.preset)
    entry.update(preset=choice.preset, preset_reason=choice.reason)
    if choice.warning:
        notes.append(f"warning: {choice.warning}")
    if align and not placed:
        notes.append(
            "--align does not apply: the volumes are not both placed in the patient (DICOM, NIfTI); "
            "fused voxel by voxel"
        )
    slices = SliceCount()
    with output_errors(target, slices, resumable=True):
        report = fuse_volume_as(
            row["anatomical"],
            row["functional"],
            target,
            fmt=kind,
            preset=choice.preset,
            device=device,
            runner=runner,
            command=command,
            align=align and placed,
            balance=balance,
            progress=slices,
            say=notes.append,
        )
    if report.balance_choice is not None:
        notes.append(report.balance_choice.describe())
    entry["slices_fused"] = report.fused


def fuse_batch(
    manifest,
    out_dir,
    *,
    scheduler_name: str | None = None,
    device: str = "auto",
    align: bool = False,
    balance: float | str | None = None,
    command: str | None = None,
    on_pair: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Fuse every pair of ``manifest`` into ``out_dir``; write ``out_dir/summary.csv``; return its rows.

    Each pair's row in the summary has the preset used and why, its status
    (``done``, ``failed``, or ``not run`` after a full disk), seconds, the
    slices fused by this run, the notes (misregistration, resampling,
    colour) and the error (one line). A failing pair is reported and the
    batch goes on; rerunning resumes the volumes that were interrupted.
    ``align`` registers each pair of volumes placed in the patient;
    ``balance`` (a b, or ``"auto"``: chosen for each pair, said in its notes)
    is every pair's.
    ``on_pair(row)`` is called after each pair. A full disk raises
    :class:`~napari_lightfusion.output_errors.DiskFull` once the summary is
    written.
    """
    from .volumes import scheduler

    rows = read_manifest(manifest)
    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.csv"
    check_output_place(summary_path)
    with output_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    summary, full = [], None
    with scheduler(scheduler_name) as runner:
        for row in rows:
            start, notes = time.perf_counter(), []
            entry = {
                "output": row["output"],
                "anatomical": row["anatomical"],
                "functional": row["functional"],
                "preset": row["preset"],
                "preset_reason": "",
                "status": "done",
                "slices_fused": 0,
                "notes": "",
                "error": "",
            }
            if full is not None:  # every later row would fail the same way
                entry.update(status="not run", error="the disk was full")
            else:
                try:
                    _fuse_one(row, out_dir, runner, device, align, command, entry, notes, balance)
                except Exception as exc:  # noqa: BLE001 - one pair's failure is recorded, the batch goes on
                    entry.update(
                        status="failed", error=first_line(exc) if isinstance(exc, ValueError) else described(exc)
                    )
                    full = first_line(exc) if isinstance(exc, DiskFull) else None
            entry.update(seconds=round(time.perf_counter() - start, 3), notes=" | ".join(notes))
            summary.append(entry)
            if on_pair is not None:
                on_pair(entry)
    with output_errors(summary_path), summary_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary)
    if full is not None:
        raise DiskFull(full)
    return summary
