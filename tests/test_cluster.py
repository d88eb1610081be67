"""fuse-volume and batch on a real dask.distributed LocalCluster (2 worker processes, loopback only)."""

import csv
import os
import signal
import threading
import time

import dask
import numpy as np
import pytest
import tifffile
import zarr

from napari_lightfusion.cli import main
from napari_lightfusion.ome_zarr_output import OmeZarrOutput
from napari_lightfusion.volumes import fuse_volume

distributed = pytest.importorskip("distributed", reason="dask.distributed is the [cluster] extra")


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes; a task on a worker that dies fails the run (no retry)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A grey TIFF stack and an RGB one, 24 x 256 x 256, and the threaded scheduler's fusion of them."""
    folder = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:24, :256, :256]
    grey = 2000 + 1500 * np.sin(xx / 9.0 + zz / 3.0) * np.cos(yy / 7.0) + rng.normal(0, 50, xx.shape)
    colour = np.stack([(xx + zz) % 256, (2 * yy) % 256, (xx * yy // 64) % 256], -1)
    tifffile.imwrite(folder / "a.tif", grey.astype(np.uint16), photometric="minisblack")
    tifffile.imwrite(folder / "b.tif", colour.astype(np.uint8), photometric="rgb")
    fuse_volume(folder / "a.tif", folder / "b.tif", folder / "threads.zarr", device="cpu", scheduler_name="threads")
    return folder


def volume(path) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")["0"][:]


def test_the_cluster_writes_the_threaded_result_bit_for_bit(cluster, pair, capsys):
    local, client = cluster
    out = pair / "cluster.zarr"
    assert (
        main(
            [
                "fuse-volume",
                str(pair / "a.tif"),
                str(pair / "b.tif"),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--scheduler",
                local.scheduler_address,
            ]
        )
        == 0
    )
    assert "24 slices fused" in capsys.readouterr().out
    np.testing.assert_array_equal(volume(out), volume(pair / "threads.zarr"))
    threads = client.run(lambda: __import__("torch").get_num_threads())
    assert set(threads.values()) == {1}, "each worker runs the network on one thread"


def _slow_writes(seconds: float) -> None:
    """Run on each worker: every slice write waits ``seconds`` first (0 restores the plain write)."""
    from napari_lightfusion.ome_zarr_output import OmeZarrOutput as Output

    plain = getattr(Output, "_plain_write", Output.write)
    Output._plain_write = plain
    Output.write = plain if not seconds else (lambda self, *a, **k: (time.sleep(seconds), plain(self, *a, **k))[1])


def _settled(read, deadline: float, pause: float = 0.5):
    """``read()`` once two readings ``pause`` seconds apart agree (a write still landing changes it).

    Fails at ``deadline`` (a ``time.monotonic()`` value) if it never settles.
    """
    last = read()
    while time.monotonic() < deadline:
        time.sleep(pause)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"still changing after the deadline: {last}")


def test_a_killed_worker_loses_nothing_and_a_rerun_fuses_only_the_rest(cluster, pair):
    local, client = cluster
    out = pair / "killed.zarr"
    pids = client.run(os.getpid)  # worker address -> process id
    client.run(_slow_writes, 0.25)  # so that the kill lands mid-run however fast the machine is
    killed = []

    def slices_written() -> int:
        """Slices on disk so far; 0 until the writer has put the array's metadata down whole."""
        try:
            return 24 - len(OmeZarrOutput(out).missing(clean=False))
        except (OSError, ValueError):  # no .zarray yet, or caught mid-write (not yet valid JSON)
            return 0

    def kill_once_slices_land():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if slices_written() > 2:
                # a worker with a task in hand: its death must fail the run (allowed-failures 0)
                busy = [address for address, keys in client.processing().items() if keys and address in pids]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(True)
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_once_slices_land)
    watcher.start()
    with pytest.raises(ValueError, match="worker died"):
        fuse_volume(pair / "a.tif", pair / "b.tif", out, device="cpu", scheduler_name=local.scheduler_address)
    watcher.join()
    # a task already running on the surviving worker still finishes its slice (dask cannot
    # interrupt it): count what is missing once the workers are idle
    deadline = time.monotonic() + 30
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    missing = _settled(lambda: OmeZarrOutput(out).missing(), deadline)
    assert killed and 0 < len(missing) < 24
    client.wait_for_workers(2, timeout=60)
    client.run(_slow_writes, 0)
    again = fuse_volume(pair / "a.tif", pair / "b.tif", out, device="cpu", scheduler_name=local.scheduler_address)
    assert again.fused == len(missing) and again.skipped == 24 - len(missing)
    np.testing.assert_array_equal(volume(out), volume(pair / "threads.zarr"))


def test_batch_on_the_cluster_reports_each_pair(cluster, pair, monkeypatch, capsys):
    local, _ = cluster
    tifffile.imwrite(pair / "small.tif", np.zeros((24, 64, 64), np.uint16), photometric="minisblack")
    manifest = pair / "cohort.csv"
    manifest.write_text("anatomical,functional,preset,output\na.tif,small.tif,CT-MRI,bad\na.tif,b.tif,PET-MRI,good\n")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", local.scheduler_address)  # no --scheduler: the variable is used
    assert main(["batch", str(manifest), "--out", str(pair / "cohort"), "--device", "cpu"]) == 2
    with (pair / "cohort" / "summary.csv").open() as f:
        rows = {row["output"]: row for row in csv.DictReader(f)}
    assert rows["bad.zarr"]["status"] == "failed" and "differ in shape" in rows["bad.zarr"]["error"]
    assert rows["good.zarr"]["status"] == "done" and rows["good.zarr"]["slices_fused"] == "24"
    np.testing.assert_array_equal(volume(pair / "cohort" / "good.zarr"), volume(pair / "threads.zarr"))
    assert "1 of 2 pairs failed" in capsys.readouterr().err
