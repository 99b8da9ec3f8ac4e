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
    hang (it did before regions restarted afresh after a fork, and where a cell step's
    products split over the team: src_kernels/packed.h), and computes what the parent did."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    script = textwrap.dedent(f"""
        import os, threading
        import numpy as np
        import fastrnn
        from fastrnn import parallel
        if {runner == "pool"!r}:
            parallel._team = None
        task = lambda: threading.get_ident()
        parallel.run([task, task])
        cell = fastrnn.LSTMCell(256, 256, seed=0)  # its step's products split over the team
        cell.eval()
        x = np.ones((8, 256), np.float32)
        h = cell(x)[0]
        pid = os.fork()
        if pid == 0:
            ids = parallel.run([task, task])
            same = np.array_equal(cell(x)[0], h)
            os._exit(0 if len(ids) == 2 and same else 3)
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


def test_a_single_threaded_call_may_open_regions_with_blas_kept_at_one():
    before = [c.num_threads for c in parallel._blas_controllers()]
    seen = []

    def task():
        seen.append([c.num_threads for c in parallel._blas_controllers()])
        return threading.get_ident()

    def call():
        return parallel.run([task, task])  # the lock is re-entrant: no deadlock

    ids = parallel.single_threaded(call)
    assert all(n == 1 for threads in seen for n in threads)
    if parallel.cores() > 1:
        assert ids[0] != ids[1]
    assert [c.num_threads for c in parallel._blas_controllers()] == before


def _beside_openmp_with_blas_at_one(task):
    """task() as the torch adapter's kernel calls run it."""
    return parallel.beside_openmp(lambda: parallel.single_threaded(task))


def test_products_split_only_where_they_would_run_on_one_core():
    """Beside torch's OpenMP pool, in a call with BLAS at one thread, and nowhere else (a
    NumPy program's calls keep BLAS's own threads)."""
    big, rows = parallel.KERNEL_SPLIT_MACS, 1000
    assert parallel.product_shards(rows, big) is None
    assert parallel.single_threaded(lambda: parallel.product_shards(rows, big)) is None
    assert parallel.beside_openmp(lambda: parallel.product_shards(rows, big)) is None
    inside = _beside_openmp_with_blas_at_one(lambda: (parallel.product_shards(rows, big),
                                                      parallel.product_shards(rows, big - 1),
                                                      parallel.product_shards(8, big)))
    if parallel.cores() > 1:
        assert inside[0] == parallel.shards(rows, parallel.cores(), parallel.MIN_SHARD_ROWS)
    else:
        assert inside[0] is None
    assert inside[1] is None and inside[2] is None  # too little work, too few rows
    in_region = _beside_openmp_with_blas_at_one(
        lambda: parallel.run([lambda: parallel.product_shards(rows, big)] * 2))
    assert in_region == [None, None]  # every core is busy in a region


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_products_equal_whole_ones(backend, dtype):
    """The host products split over the cores (rows in shards; matmul_tn's partial sums
    added) give the products computed whole, odd row counts and sizes included."""
    import numpy as np

    from fastrnn import backends

    be = backends.get(backend)
    P = be.module.driver.products
    rng = np.random.default_rng(0)
    for T, B, K, N in ((37, 13, 161, 257), (1, 1001, 130, 131)):
        x = rng.standard_normal((T, B, K)).astype(dtype)
        g = rng.standard_normal((T, B, N)).astype(dtype)
        w = rng.standard_normal((N, K)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype)

        def products(x=x, g=g, w=w, bias=bias):
            return P.project(x, w, (bias,)), P.matmul_nn(g, w), P.matmul_tn(g, x)

        if parallel.cores() > 1:  # (split: else the test would prove nothing)
            assert _beside_openmp_with_blas_at_one(
                lambda n=T * B, work=T * B * K * N: parallel.product_shards(n, work))
        whole, split = products(), _beside_openmp_with_blas_at_one(products)
        tol = 1e-4 if dtype == "float32" else 1e-11
        for a, b in zip(whole, split, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol * np.abs(a).max())
