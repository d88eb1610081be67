"""The CPU threads a fusion runs on: one shared pool, and a list of jobs shared out over it.

The fast path runs the network tile by tile, one tile a thread
(:func:`napari_lightfusion.engine.run_stack`), and puts the colour back
slice by slice (:func:`napari_lightfusion.fuse`); both go through
:func:`run_jobs`, in which the calling thread takes jobs like the pool's
threads do instead of waiting for them (one thread fewer to wake and hand
results back from: a quarter of a millisecond on a 256 x 256 fusion).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

_pools: dict = {}
_pools_lock = threading.Lock()

_DONE = object()


def pool(size: int) -> ThreadPoolExecutor:
    """The shared pool of ``size`` threads (made on first use, kept for the process)."""
    with _pools_lock:
        if size not in _pools:
            _pools[size] = ThreadPoolExecutor(size, thread_name_prefix="lightfusion-cpu")
        return _pools[size]


def run_jobs(fn, jobs, workers: int) -> None:
    """Call ``fn(job)`` for every job, on ``workers`` threads at once: the calling thread and the pool's.

    Each thread takes the next job as soon as it is free, so uneven jobs
    still keep every thread busy. Returns when every job is done; the
    first exception a job raises is raised here, once the jobs already
    running have ended, and no new job starts after it. A helper thread
    that had not started when the calling thread ran out of jobs is not
    waited for (so a call from inside the pool cannot wait on itself).
    """
    jobs = list(jobs)
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        for job in jobs:
            fn(job)
        return
    queue, lock, failed = iter(jobs), threading.Lock(), []

    def drain() -> None:
        while not failed:
            with lock:
                job = next(queue, _DONE)
            if job is _DONE:
                return
            try:
                fn(job)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                failed.append(exc)

    helpers = [pool(workers - 1).submit(drain) for _ in range(workers - 1)]
    drain()
    wait([helper for helper in helpers if not helper.cancel()])
    if failed:
        raise failed[0]
