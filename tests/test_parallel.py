"""fastrnn.parallel: regions run tasks concurrently, restore BLAS threads, nest serially."""

import threading
import time

import pytest

from fastrnn import parallel


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


@pytest.mark.parametrize("n,parts,min_size,expected", [
    (10, 2, 3, [(0, 5), (5, 10)]), (5, 4, 3, [(0, 5)]), (1, 2, 8, [(0, 1)]),
    (9, 3, 2, [(0, 3), (3, 6), (6, 9)]),
])
def test_shards(n, parts, min_size, expected):
    assert parallel.shards(n, parts, min_size) == expected
