"""The ``lightfusion`` command: fuse images and volumes, fine-tune and list presets, open napari.

What a user runs: ``fuse``, ``fuse-volume`` and ``batch`` (their parsers and
runners are in :mod:`napari_lightfusion.fuse_commands`; ``finetune`` in
:mod:`napari_lightfusion.finetune_command`),
``presets`` and ``view``. Each subcommand parses its arguments and calls
the Qt-free function that does the work; user errors (a bad option or
value, missing files, bad shapes, unknown presets, an output that cannot
be written) end as one line on stderr and exit status 2, never a traceback.

The research tools that make the figures of docs/ (``train``,
``evaluate``, ``bench``, ...) are the ``lightfusion-research`` command
(:mod:`napari_lightfusion.research.cli`, which shares :func:`run` with
this one); ``lightfusion bench`` says so in one line. Nothing here imports
:mod:`napari_lightfusion.research`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Iterable

from .finetune_command import add_finetune
from .fuse_commands import add_batch, add_fuse, add_fuse_volume

#: The subcommands of ``lightfusion-research`` (:mod:`napari_lightfusion.research.cli`; a test keeps the two
#: lists equal): ``lightfusion NAME`` answers with the command to run instead.
RESEARCH_COMMANDS = (
    "train",
    "evaluate",
    "score",
    "ablate",
    "bench",
    "bench-live",
    "bench-train",
    "screenshot",
    "balance-figure",
    "default-balance",
    "crossfit",
    "hot-spot-ceiling",
    "balance-auto",
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors (a bad option or value) are one line and exit status 2, like the others."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_presets(sub):
    p = sub.add_parser("presets", help="list the bundled and custom presets (or remove a custom one)")
    p.add_argument("--remove", default=None, metavar="NAME", help="delete the custom preset NAME")
    p.set_defaults(run=_run_presets)


def _run_presets(args):
    from .weights import describe_presets, presets_dir, remove_custom_preset

    if args.remove is not None:
        remove_custom_preset(args.remove)
        print(f"removed custom preset {args.remove!r}")
        return
    print(describe_presets())
    print(f"custom presets folder: {presets_dir()}")


def _add_view(sub):
    p = sub.add_parser("view", help="open napari with the LightFusion widget and the sample pair")
    p.add_argument("--sample", default="phantom_pair", help="sample: phantom_pair or phantom_stack")
    p.set_defaults(run=_run_view)


def prefer_pyqt6() -> None:
    """Get Qt ready for the subcommands that open napari: a display to open it on, PyQt6 when installed.

    Without a display (a Linux server, an SSH session without X
    forwarding) Qt would abort the process with a page about platform
    plugins: refuse in one line instead (a ``ValueError``) and say how to
    run it there. PyQt6 is picked when no binding was asked for: qtpy would
    take PyQt5 first where both are installed, and napari 0.9 then shows
    its "PyQt5 backend is deprecated" notification over the canvas.
    """
    import importlib.util
    import os

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and headless:
        raise ValueError("napari needs a display and there is none here; on a server run this under `xvfb-run -a`")

    if "QT_API" not in os.environ and importlib.util.find_spec("PyQt6") is not None:
        os.environ["QT_API"] = "pyqt6"


#: The window ``lightfusion view`` opens (at most 95 % of the screen): the canvas gets the larger part.
VIEW_SIZE = (1600, 1000)


def _run_view(args):
    prefer_pyqt6()
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-lightfusion")
    viewer.open_sample("napari-lightfusion", args.sample)
    viewer.window.add_plugin_dock_widget("napari-lightfusion", "LightFusion")
    # napari's default window (~1045 x 640) leaves the canvas a strip beside the dock: take most of the screen
    screen = QApplication.primaryScreen().availableGeometry()
    viewer.window.resize(min(VIEW_SIZE[0], int(0.95 * screen.width())), min(VIEW_SIZE[1], int(0.95 * screen.height())))
    napari.run()


def make_parser(prog: str, description: str, commands: Iterable[Callable], epilog: str | None = None) -> Parser:
    """A :class:`Parser` named ``prog`` with one subcommand per function of ``commands`` (each registers one)."""
    parser = Parser(prog=prog, description=description, epilog=epilog)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in commands:
        add(sub)
    for command in sub.choices.values():
        command.set_defaults(parser=command)  # to say which subcommand an unknown argument was given to
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``lightfusion`` argument parser with every user subcommand registered."""
    return make_parser(
        "lightfusion",
        "Fuse registered MRI with PET, SPECT or CT (or two microscopy channels) with LightFusionNet.",
        [add_fuse, add_fuse_volume, add_batch, add_finetune, _add_presets, _add_view],
        epilog=f"The research tools ({', '.join(RESEARCH_COMMANDS)}) are a command of their own: "
        "lightfusion-research --help (or python -m napari_lightfusion.research --help).",
    )


def run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse ``argv`` and run its subcommand; a user error is one line on stderr and exit status 2.

    The exit status of ``lightfusion`` and ``lightfusion-research``: 0 done,
    2 a user error (a bad option exits through argparse with 2 as well),
    130 interrupted.
    """
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = list(argv)
    name = f"{parser.prog} {args.command}"
    try:
        args.run(args)
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command reads or writes: "Permission denied: out/x.png"
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{name}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightfusion`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in RESEARCH_COMMANDS:
        print(
            f"lightfusion {command}: error: {command} is a research tool, run it as "
            f"{shlex.join(['lightfusion-research', *argv])}",
            file=sys.stderr,
        )
        return 2
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
