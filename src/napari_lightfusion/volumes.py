"""Fusing whole volumes to OME-Zarr on any dask scheduler.

:func:`fuse_volume` is ``lightfusion fuse-volume``: it opens both inputs
lazily (:func:`napari_lightfusion.volume_reader.open_volume`), builds the lazy
fusion (:func:`napari_lightfusion.lazy.fuse_lazy`, without maps) and writes
each slice that is not on disk yet as one chunk, one dask task per slice
(so reading, fusing and writing of different slices overlap on the
scheduler's threads or workers).
Memory therefore stays at a few slices per worker whatever the volume's
depth, and a rerun after an interruption fuses only the missing slices (the
output records the contrast limits, so the rerun does not rescan).

Cohorts of them (``lightfusion batch``) are :mod:`napari_lightfusion.batch`.

Schedulers (:func:`scheduler`): ``threads`` (default), ``processes``,
``synchronous`` or the address of a dask.distributed scheduler
(``tcp://HOST:PORT``; the ``DASK_SCHEDULER_ADDRESS`` environment variable or
the dask config ``scheduler-address`` give the default). Every task runs the
network on one thread, so the output does not depend on the scheduler.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .balance_search import BalanceChoice
from .fusion import FusionOptions
from .inputs import views_of
from .lazy import fuse_pair_lazy, volume_limits
from .ome_zarr_output import OmeZarrOutput
from .volume_pairing import place_pair
from .volume_reader import Volume, open_volume

#: Schedulers of dask itself; anything with "://" is a dask.distributed address.
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")

#: How often the progress of a volume is looked up on disk, seconds.
PROGRESS_SECONDS = 0.5


@dataclass
class Runner:
    """Computes dask collections on one scheduler: a local one by name, or a distributed client."""

    name: str
    client: object = None

    def compute(self, parts: list) -> list:
        """Compute ``parts`` and return their values; an interruption cancels what is left."""
        import dask

        if self.client is None:
            return list(dask.compute(*parts, scheduler=self.name))
        from distributed import KilledWorker

        futures = self.client.compute(parts)
        try:
            return self.client.gather(futures)
        except KilledWorker:
            raise ValueError("a dask worker died while fusing; rerun to fuse the slices still missing") from None
        finally:
            self.client.cancel(futures)


@contextmanager
def scheduler(name: str | None = None) -> Iterator[Runner]:
    """A :class:`Runner` for ``name`` (see the module docstring), connected while in use."""
    import dask

    if name is None:
        name = os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None) or "threads"
    name = str(name).strip()
    if name == "sync":
        name = "synchronous"
    if "://" not in name:
        if name not in LOCAL_SCHEDULERS:
            raise ValueError(f"unknown scheduler {name!r}; use threads, processes, synchronous or tcp://HOST:PORT")
        yield Runner(name)
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(
            f"--scheduler {name} needs dask.distributed: pip install 'napari-lightfusion[cluster]'"
        ) from None
    try:
        client = Client(name, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the dask scheduler at {name}: {exc}") from None
    with client:
        yield Runner(name, client)


@dataclass
class VolumeReport:
    """What :func:`fuse_volume` did: slices in the output, fused by this run, already there."""

    out: Path
    slices: int
    fused: int
    skipped: int
    seconds: float
    limits: tuple[tuple[float, float], tuple[float, float]]
    balance_choice: BalanceChoice | None = None  #: how b was chosen, for ``balance="auto"``


def _write_slice(z, block, path: str) -> np.ndarray:
    """Dask task: write fused slice ``z`` (its ``(1, Y, X[, 3])`` block) to the output; returns ``z``."""
    OmeZarrOutput(path).write(int(z[0]), block[0])
    return z


def _window(window, name: str) -> tuple[float, float] | None:
    if window is None:
        return None
    low, high = (float(v) for v in window)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"{name} must be two finite numbers LO,HI with LO < HI, got {window}")
    return low, high


def _check_paths(a: Path, b: Path, out: Path) -> None:
    out = out.resolve()
    for given in (a, b):
        path = given.resolve()
        if out == path or path in out.parents or out in path.parents:
            raise ValueError(f"the output {out} is (or holds, or is inside) the input {given}; choose another --out")


def _weights_of(preset: str | None, weights) -> tuple[str, str]:
    """(a name, the sha256) of the network used: the preset or the weight file."""
    from .weights import preset_path, sha256

    path = Path(weights) if weights is not None else preset_path(preset)
    if not path.is_file():
        raise ValueError(f"weight file {path} is missing")
    return (str(path) if weights is not None else preset), sha256(path)


def _input(volume: Volume) -> dict:
    """An input as the settings name it (a NIfTI one with the orientation it is read from)."""
    data = volume.data
    entry = {"path": str(Path(volume.path).resolve()), "shape": list(data.shape), "dtype": str(data.dtype)}
    if volume.space is not None:
        entry["axcodes"] = volume.space.input_axcodes
    return entry


def _settings(a: Volume, b: Volume, network: str, digest: str, windows, balance) -> dict:
    """What makes two runs write the same output: a rerun with other settings must not resume."""
    return {
        "anatomical": _input(a),
        "functional": _input(b),
        "preset": network,
        "sha256": digest,
        "windows": [None if w is None else list(w) for w in windows],
        "balance": balance,
    }


def fuse_volume(
    a,
    b,
    out,
    *,
    preset: str | None = "PET-MRI",
    weights=None,
    a_window: tuple[float, float] | None = None,
    b_window: tuple[float, float] | None = None,
    balance: float | str | None = None,
    device: str = "auto",
    scheduler_name: str | None = None,
    runner: Runner | None = None,
    progress: Callable[[int, int], None] | None = None,
    command: str | None = None,
    colormap: str = "auto",
    align: bool = False,
    say: Callable[[str], None] | None = None,
) -> VolumeReport:
    """Fuse volume files ``a`` (anatomical) and ``b`` (functional) into the OME-Zarr ``out``.

    Normalisation as :func:`napari_lightfusion.fuse` does it on the whole
    volume (each input's range over all its slices), or the contrast window
    ``a_window`` / ``b_window`` ``(LO, HI)``. The output carries the voxel
    size of ``a`` (else ``b``). NIfTI inputs are read in canonical
    orientation, DICOM series in their unit (SUV, HU); two volumes placed
    in the patient (NIfTI, DICOM) are fused on the grid of ``a``, and are
    checked for misregistration (registered when ``align``), and a grey PET
    or SPECT volume goes through a colour table (``colormap``; see
    :func:`~napari_lightfusion.volume_pairing.place_pair`, whose notes go to
    ``say``); the sidecar records the orientation and the input affine. An existing ``out``
    written with the same settings is resumed (only missing slices are
    fused); one with other settings, or a folder that is not a fusion
    output, is refused.
    ``progress(done, total)`` is called as slices are written. ``runner``
    (from :func:`scheduler`) or ``scheduler_name`` chooses where it runs.
    Raises ``ValueError`` with one line for bad inputs.
    """
    start = time.perf_counter()
    a_path, b_path, out = Path(a), Path(b), Path(out)
    _check_paths(a_path, b_path, out)
    windows = (_window(a_window, "the anatomical window"), _window(b_window, "the functional window"))
    va, vb = open_volume(a_path), open_volume(b_path)
    placement = place_pair(va, vb, preset=preset, colormap=colormap, align=align, say=say)
    network, digest = _weights_of(preset, weights)
    settings = {
        **_settings(va, vb, network, digest, windows, balance),
        "colormap": placement.colormap,
        "resampled": placement.resampled,
        "aligned": align,
    }

    output = OmeZarrOutput(out)
    previous = output.read_sidecar() if out.exists() else None
    if out.exists() and previous is None:
        raise ValueError(f"{out} exists and is not a lightfusion output; remove it or choose another --out")
    if previous is not None and previous.get("settings") != settings:
        raise ValueError(f"{out} holds a fusion with other inputs or settings; remove it or choose another --out")

    options = FusionOptions(preset, weights=weights, device=device, balance=balance)
    opened = (va, vb, placement, output, settings, previous, options)
    if runner is None:
        with scheduler(scheduler_name) as fresh:
            return _fuse_opened(*opened, fresh, progress, command, start)
    return _fuse_opened(*opened, runner, progress, command, start)


def _fuse_opened(
    va, vb, placement, output, settings, previous, options: FusionOptions, runner, progress, command, start
) -> VolumeReport:
    """The part of :func:`fuse_volume` that runs on the scheduler, once everything is checked."""
    out, shape_a = output.path, va.data.shape[:3]
    windows = [None if w is None else tuple(w) for w in settings["windows"]]
    if previous is not None:
        limits = tuple(tuple(v) for v in previous["limits"])
    else:
        limits = tuple(
            window if window is not None else _scan(runner, volume, name)
            for window, volume, name in (
                (windows[0], va, "the anatomical volume"),
                (windows[1], vb, "the functional volume"),
            )
        )
    inputs = placement.inputs(va, vb, limits)
    options = replace(options, threads=None if runner.name == "synchronous" else 1)
    result = fuse_pair_lazy(inputs["a"], inputs["b"], options, *views_of(inputs))
    fused, choice = result.fused, result.balance_choice
    space = va.space or vb.space
    geometry = va.geometry  # the output lies on the anatomical grid
    if previous is None:
        voxel = va.voxel_size or vb.voxel_size
        unit = va.unit if va.voxel_size else vb.unit
        OmeZarrOutput.create(
            out, shape_a, fused.ndim == 4, voxel, unit, name=out.stem, translation=geometry.origin if geometry else None
        )
    output.write_sidecar(
        {
            "settings": settings,
            "limits": [list(v) for v in limits],
            "command": command,
            "status": "running",
            "voxel_size": list(va.voxel_size or vb.voxel_size or (1.0, 1.0, 1.0)),
            **(
                {"orientation": {**space.record(), "from": "anatomical" if va.space else "functional"}} if space else {}
            ),
            **({"geometry": {"affine": geometry.affine.tolist()}} if geometry else {}),
            **({"alignment": placement.record()["alignment"]} if placement.registration is not None else {}),
            **({"balance_chosen": choice.record()} if choice is not None else {}),
        }
    )
    missing = output.missing()
    slices = shape_a[0]
    written = _write_graph(fused, out)
    with _watch(output, slices, progress):
        if missing:
            runner.compute([written.blocks[z] for z in missing])
    report = VolumeReport(out, slices, len(missing), slices - len(missing), time.perf_counter() - start, limits, choice)
    side = output.read_sidecar()
    output.write_sidecar({**side, "status": "complete", "seconds_last_run": round(report.seconds, 3)})
    return report


@contextmanager
def _watch(output: OmeZarrOutput, slices: int, progress: Callable[[int, int], None] | None):
    """Call ``progress(done, total)`` as slices reach the disk (polled), whatever runs the tasks."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    last = [-1]

    def report():
        done = slices - len(output.missing(clean=False))
        if done != last[0]:
            progress(done, slices)
            last[0] = done

    def poll():
        report()
        while not stop.wait(PROGRESS_SECONDS):
            report()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        report()


def _scan(runner: Runner, volume: Volume, name: str) -> tuple[float, float]:
    """A volume's exact range as ``fuse`` would take it, one slice at a time on ``runner``."""
    import dask

    x = volume.data[..., :3] if volume.rgb else volume.data[..., None]
    if runner.client is not None:
        with dask.config.set(scheduler=runner.client.get):
            return volume_limits(x, None, name)
    with dask.config.set(scheduler=runner.name):
        return volume_limits(x, None, name)


def _write_graph(fused, out: Path):
    """One task per slice that writes it: ``(Z,)`` int64 dask array of the slice numbers."""
    import dask.array as da
    from dask.base import tokenize

    zs = da.arange(fused.shape[0], chunks=1)
    index = "zyxc" if fused.ndim == 4 else "zyx"
    return da.blockwise(
        _write_slice,
        "z",
        zs,
        "z",
        fused,
        index,
        path=str(out),
        dtype=np.int64,
        meta=np.empty((0,), np.int64),
        concatenate=True,
        name=f"lightfusion-write-{tokenize(fused.name, str(out.resolve()))}",
    )
