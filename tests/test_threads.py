"""The fast path's job runner: every job once, the calling thread taking part, errors raised, no self-wait."""

import threading

import pytest

from napari_lightfusion.threads import pool, run_jobs


def test_every_job_runs_once_on_the_calling_thread_and_the_pool():
    seen, lock, release = [], threading.Lock(), threading.Barrier(2, timeout=10)

    def job(i):
        if i < 2:
            release.wait()  # the first two jobs end only when both run at once: two threads took part
        with lock:
            seen.append((i, threading.current_thread().name))

    run_jobs(job, range(50), 2)
    assert sorted(i for i, _ in seen) == list(range(50))
    names = {name for _, name in seen}
    assert threading.current_thread().name in names
    assert any(name.startswith("lightfusion-cpu") for name in names)


def test_one_worker_runs_everything_here_in_order():
    seen = []
    run_jobs(lambda i: seen.append((i, threading.get_ident())), range(5), 1)
    assert seen == [(i, threading.get_ident()) for i in range(5)]


def test_the_first_error_is_raised_after_the_running_jobs_end_and_no_new_job_starts():
    started, lock = [], threading.Lock()

    def job(i):
        with lock:
            started.append(i)
        if i == 3:
            raise ValueError("slice 3 failed")

    with pytest.raises(ValueError, match="slice 3 failed"):
        run_jobs(job, range(1000), 2)
    assert len(started) < 1000


def test_a_call_from_inside_the_pool_does_not_wait_on_itself():
    # the pool of one helper is busy running this very call: its helper job can never start
    inner = []
    outer = pool(1).submit(lambda: run_jobs(inner.append, range(4), 2))
    outer.result(timeout=10)
    assert sorted(inner) == [0, 1, 2, 3]
