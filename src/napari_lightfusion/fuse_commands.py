"""The fusing subcommands of ``lightfusion``: ``fuse``, ``fuse-volume`` and ``batch`` (parsers and runners).

Each names the preset it used and why (``--preset auto``, the default,
guesses it from the files as the widget does:
:func:`napari_lightfusion.image_files.choose_preset`), checks its options
and its output before reading much, and prints its notes (the preset,
misregistration, resampling, colour) on stderr once the work starts, so
that a command that fails prints one line: its error. The work itself is
:func:`~napari_lightfusion.image_files.fuse_files`,
:func:`~napari_lightfusion.clinical_export.fuse_volume_as` and
:func:`~napari_lightfusion.batch.fuse_batch`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a command runs, not to build the parser
    from .fusion import FusionOptions

PRESET_HELP = (
    "auto (default): guessed from the two files as the widget guesses it (DICOM Modality, file and folder "
    "names, then colour or grey) and printed; or CT-MRI, PET-MRI, SPECT-MRI, a custom preset "
    "(lightfusion presets) or a .pt file"
)


class Notes:
    """Lines for the user on stderr, held until :meth:`flush` (the work starts): a failure prints only its error."""

    def __init__(self):
        self.pending: list[str] = []
        self.live = False

    def __call__(self, line: str) -> None:
        if self.live:
            print(line, file=sys.stderr)
        else:
            self.pending.append(line)

    def flush(self) -> None:
        """Print the lines held so far, and every later one as it comes."""
        self.live = True
        for line in self.pending:
            print(line, file=sys.stderr)
        self.pending.clear()


def _fusion_options(args) -> FusionOptions:
    """The :class:`~napari_lightfusion.fusion.FusionOptions` a subcommand's ``args`` give, checked.

    ``--preset`` (``auto`` when the command has none), ``--weights``,
    ``--device`` and ``--balance``; a device that is not there or a balance
    out of [0, 1] is one line before any file is read.
    """
    from .fusion import FusionOptions

    preset, weights = getattr(args, "preset", "auto"), getattr(args, "weights", None)
    return FusionOptions(preset, weights=weights, device=args.device, balance=getattr(args, "balance", None)).checked()[
        0
    ]


BALANCE_HELP = (
    "b in [0, 1] for a balance-conditioned preset: anatomy first (0) to function first (1), or auto: the b "
    "that keeps the hot spot's anatomy and function best against pixel average on these images "
    "(it says which); default: the preset's own"
)


def balance_argument(text: str) -> float | str:
    """``--balance``: ``auto`` or a number (its range is checked with the other options, in one line)."""
    from .balance_search import AUTO

    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a number in [0, 1] or auto, not {text!r}") from None


def command_line(args) -> str:
    """The command as it was run (recorded in the outputs it writes)."""
    import shlex

    return shlex.join(["lightfusion", *args.argv])


def add_fuse(sub) -> None:
    """Register ``lightfusion fuse``."""
    p = sub.add_parser("fuse", help="fuse two registered 2D images (PNG, TIFF, JPEG, one DICOM image) into one")
    p.add_argument(
        "anatomical",
        type=Path,
        help="grey image (MRI, or the first channel): PNG, TIFF (a stack too), JPEG, BMP or a DICOM image",
    )
    p.add_argument(
        "functional",
        type=Path,
        help="PET/SPECT (colour, or a grey DICOM PET: fused through the PET colour table) or CT image",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="fused image to write: .png, .tif/.tiff (a stack needs .tif), .jpg/.jpeg or .bmp",
    )
    p.add_argument("--preset", default="auto", help=PRESET_HELP)
    p.add_argument("--weights", type=Path, default=None, help="a weight file instead of a preset")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument(
        "--maps",
        type=Path,
        default=None,
        help="folder for surprise/attention TIFFs (and the mix weight, for a mix network)",
    )
    p.add_argument("--balance", type=balance_argument, default=None, help=BALANCE_HELP)
    p.add_argument(
        "--align",
        action="store_true",
        help="two DICOM images: register the functional one to the anatomical one in its plane first "
        "(rigid, mutual information); without it a misregistration is only reported. Images not "
        "placed in the patient (PNG, TIFF) are fused as they are",
    )
    p.set_defaults(run=_run_fuse)


def _run_fuse(args):
    from .image_files import fuse_files

    options = _fusion_options(args)
    notes = Notes()
    report = fuse_files(
        args.anatomical, args.functional, args.out, options, maps=args.maps, align=args.align, say=notes
    )
    print(report.choice.line, file=sys.stderr)
    notes.flush()
    print(f"wrote {report.out} ({report.seconds * 1000:.0f} ms on {report.device})")


def add_fuse_volume(sub) -> None:
    """Register ``lightfusion fuse-volume``."""
    p = sub.add_parser(
        "fuse-volume",
        help="fuse two registered volumes (DICOM series, NIfTI, TIFF, zarr/OME-Zarr, PNG folder) "
        "into OME-Zarr, NIfTI or a DICOM series",
    )
    p.add_argument(
        "anatomical",
        type=Path,
        help="grey volume (MRI; a DICOM series folder, NIfTI, ...); the output lies on its grid",
    )
    p.add_argument(
        "functional",
        type=Path,
        help="PET/SPECT/CT volume: grey (PET in SUV, CT in HU; a grey PET or SPECT goes through the PET "
        "colour table, see --colormap) or colour (an RGB TIFF stack or PNG folder, zarr with the "
        "colour last, OME-Zarr with a c axis, an RGB24 NIfTI, a colour DICOM series; a 4D NIfTI of "
        "three volumes is not read as colour); resampled onto the anatomical grid when both are "
        "placed in the patient (DICOM, NIfTI)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="OME-Zarr folder to write (NAME.zarr or a name without extension; an interrupted one is "
        "resumed); a name ending in .nii or .nii.gz writes NIfTI; with --format dicom, a new folder "
        "for a DICOM series",
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=("auto", "ome-zarr", "nifti", "dicom"),
        help="auto (default): NIfTI for .nii/.nii.gz, else OME-Zarr; dicom: one Secondary Capture "
        "image per slice (IM00001.dcm, ...), the study and patient of --dicom-source",
    )
    p.add_argument(
        "--dicom-source",
        type=Path,
        default=None,
        metavar="FILE_OR_FOLDER",
        help="with --format dicom: a DICOM file (or folder) of the series whose study and patient the fused "
        "series joins (default: the anatomical input when it is a DICOM series, else a new study of "
        "patient ANONYMOUS)",
    )
    p.add_argument("--preset", default="auto", help=PRESET_HELP)
    p.add_argument("--weights", type=Path, default=None, help="a weight file instead of a preset")
    p.add_argument(
        "--a-window",
        default=None,
        metavar="LO,HI",
        help="contrast window of the anatomical volume (default: its full range); --a-window=-100,400",
    )
    p.add_argument("--b-window", default=None, metavar="LO,HI", help="contrast window of the functional volume")
    p.add_argument("--balance", type=balance_argument, default=None, help=BALANCE_HELP)
    p.add_argument(
        "--colormap",
        default="auto",
        choices=("auto", "pet", "none"),
        help="a grey functional volume (PET in SUV) is fused through this colour table, so the uptake "
        "shows in colour; auto (default): the PET table (black, red, yellow) with PET-MRI/SPECT-MRI "
        "or a PET/SPECT DICOM series; none: fuse it grey",
    )
    p.add_argument(
        "--align",
        action="store_true",
        help="register the functional volume to the anatomical one first (rigid, mutual information; "
        "volumes placed in the patient: DICOM, NIfTI); the transform goes into the output's record",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        help="threads (default), processes, synchronous or tcp://HOST:PORT of a dask.distributed "
        "scheduler (default: $DASK_SCHEDULER_ADDRESS when set)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(run=_run_fuse_volume)


def _parse_window(text: str | None, option: str):
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} must be LO,HI (two numbers), not {text!r}") from None
    return low, high


def check_volume_output(out: Path, fmt: str) -> None:
    """One line when ``fuse-volume`` cannot write ``out``: an image file's name, a clash of name and format."""
    from .clinical_export import output_format
    from .image_files import IMAGE_SUFFIXES
    from .output_errors import check_output_place

    if out.name.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(
            f"{out} names an image file: fuse-volume writes OME-Zarr (NAME.zarr, or a name without "
            "an extension), NIfTI (.nii, .nii.gz) or a DICOM series (--format dicom); "
            "fuse 2D images with lightfusion fuse"
        )
    output_format(out, fmt)
    check_output_place(out)


def _run_fuse_volume(args):
    from tqdm import tqdm

    from .clinical_export import fuse_volume_as
    from .image_files import check_network, volume_preset
    from .output_errors import SliceCount, output_errors

    windows = _parse_window(args.a_window, "--a-window"), _parse_window(args.b_window, "--b-window")
    options = _fusion_options(args)
    check_volume_output(args.out, args.format)
    choice, placed = volume_preset(args.anatomical, args.functional, options.preset, options.weights)
    check_network(choice.preset, options.weights)
    notes = Notes()
    notes(choice.line)
    if choice.warning:
        notes(f"warning: {choice.warning}")
    if args.align and not placed:
        notes(
            "--align does not apply: the volumes are not both placed in the patient (DICOM, NIfTI); "
            "fused voxel by voxel"
        )
    slices, bars = SliceCount(), []  # the bar is made when the first slice is due, so that an error is one line

    def progress(done, total):
        notes.flush()
        slices(done, total)
        if not bars:
            bars.append(tqdm(total=total, unit="slice", desc="fusing", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        with output_errors(args.out, slices, resumable=True):
            report = fuse_volume_as(
                args.anatomical,
                args.functional,
                args.out,
                fmt=args.format,
                dicom_source=args.dicom_source,
                preset=choice.preset,
                weights=options.weights,
                a_window=windows[0],
                b_window=windows[1],
                balance=options.balance,
                device=options.device,
                scheduler_name=args.scheduler,
                colormap=args.colormap,
                align=args.align and placed,
                progress=progress,
                command=command_line(args),
                say=notes,
            )
    finally:
        for bar in bars:
            bar.close()
    notes.flush()
    if report.balance_choice is not None:
        print(report.balance_choice.describe(), file=sys.stderr)
    print(f"wrote {report.out}: {report.fused} slices fused, {report.skipped} already there, {report.seconds:.1f} s")


def add_batch(sub) -> None:
    """Register ``lightfusion batch``."""
    p = sub.add_parser("batch", help="fuse a cohort: one pair (2D images or volumes) per row of a CSV manifest")
    p.add_argument(
        "manifest",
        type=Path,
        help="CSV with the columns anatomical,functional,preset,output (and optionally format: dicom), "
        "paths relative to it; an empty preset is guessed as fuse guesses it; the output's name says "
        "what is written: .png/.tif/.jpg an image (fused as fuse does), .nii/.nii.gz NIfTI, "
        "else OME-Zarr (NAME.zarr)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs and summary.csv")
    p.add_argument(
        "--align",
        action="store_true",
        help="register each pair placed in the patient (DICOM, NIfTI) as fuse-volume --align does",
    )
    p.add_argument("--scheduler", default=None, help="as for fuse-volume")
    p.add_argument("--balance", type=balance_argument, default=None, help=f"every pair's; {BALANCE_HELP}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(run=_run_batch)


def _run_batch(args):
    from .batch import fuse_batch

    options = _fusion_options(args)

    def report(row):
        detail = f"{row['slices_fused']} slices" if row["status"] == "done" else row["error"]
        preset = f"  preset {row['preset']} ({row['preset_reason']})" if row["preset_reason"] else ""
        print(f"{row['status']:7} {row['output']}  {row['seconds']:.1f} s  {detail}{preset}", flush=True)
        for note in filter(None, row["notes"].split(" | ")):
            print(f"        {note}", flush=True)

    rows = fuse_batch(
        args.manifest,
        args.out,
        scheduler_name=args.scheduler,
        device=options.device,
        align=args.align,
        balance=options.balance,
        command=command_line(args),
        on_pair=report,
    )
    failed = sum(row["status"] != "done" for row in rows)
    if failed:
        raise ValueError(f"{failed} of {len(rows)} pairs failed; see {args.out / 'summary.csv'}")
    print(f"fused {len(rows)} pairs; summary in {args.out / 'summary.csv'}")
