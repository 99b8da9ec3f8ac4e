"""fastrnn.parallel: regions run tasks concurrently, restore BLAS threads, nest serially, on
the OpenMP team (Cython extensions built) and on the fallback thread pool alike."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fastrnn import parallel

RUNNERS = ["team", "pool"]


@pytest.fixture(params=RUNNERS, autouse=True)
def runner(request, monkeypatch):
    """Every test here runs once on the OpenMP team and once on the thread pool."""
    if request.param == "team" and parallel._team is None:
        pytest.skip("Cython extensions not built: no OpenMP team")
    if request.param == "pool":
        monkeypatch.setattr(parallel, "_team", None)
    return request.param


def test_results_in_order_and_blas_threads_restored():
    before = [c.num_threads for c in parallel._blas_controllers()]
    seen = []

    def task(i):
        seen.append([c.num_threads for c in parallel._blas_controllers()])
        return i * i

    assert parallel.run([lambda i=i: task(i) for i in range(3)]) == [0, 1, 4]
    if parallel.cores() > 1:
        assert all(n == 1 for threads in seen for n in threads)  # single-threaded inside
    assert [c.num_threads for c in parallel._blas_controllers()] == before


def test_nested_regions_run_serially():
    inner = []

    def outer():
        inner.append(parallel.cores())
        return parallel.run([lambda: threading.get_ident(), lambda: threading.get_ident()])

    for ids in parallel.run([outer, outer]):
        assert ids[0] == ids[1]  # the nested region ran on one thread
    if parallel.cores() > 1:
        assert inner == [1, 1]


def test_an_error_waits_for_the_other_tasks_then_propagates():
    done = []

    def slow():
        time.sleep(0.2)
        done.append(True)

    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        parallel.run([fail, slow])
    if parallel.cores() > 1:
        assert done == [True]


def test_tasks_run_on_distinct_threads_the_first_on_the_caller():
    if parallel.cores() < 2:
        pytest.skip("one usable CPU: regions run serially")
    barrier = threading.Barrier(2, timeout=10)  # both tasks must be running at once

    def task():
        barrier.wait()
        return threading.get_ident()

    first, second = parallel.run([task, task])
    assert first == threading.get_ident() and second != first


def test_a_forked_child_runs_regions(runner):
    """libgomp's team and a thread pool's threads do not survive fork: the child must not
    hang (it did before regions restarted afresh after a fork)."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    script = textwrap.dedent(f"""
        import os, threading
        from fastrnn import parallel
        if {runner == "pool"!r}:
            parallel._team = None
        task = lambda: threading.get_ident()
        parallel.run([task, task])
        pid = os.fork()
        if pid == 0:
            ids = parallel.run([task, task])
            os._exit(0 if len(ids) == 2 else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("n,parts,min_size,expected", [
    (10, 2, 3, [(0, 5), (5, 10)]), (5, 4, 3, [(0, 5)]), (1, 2, 8, [(0, 1)]),
    (9, 3, 2, [(0, 3), (3, 6), (6, 9)]),
])
def test_shards(n, parts, min_size, expected):
    assert parallel.shards(n, parts, min_size) == expected
