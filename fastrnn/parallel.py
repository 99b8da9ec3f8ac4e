"""Run independent pieces of work (batch shards, directions) on all cores without fighting.

DESIGN.md: threads fight. A region that runs several kernel calls at once gives each its own
core and limits BLAS to one thread for the region (restored afterwards); a region opened
inside another runs its tasks one after another. Switching the BLAS thread count goes through
threadpoolctl's per-library controllers directly: its context manager costs ~0.4 ms a call.

The tasks run on the OpenMP thread team (``fastrnn._kernels.team``), the pool torch's CPU
operations use: inside a torch program the workers torch leaves spinning after each operation
pick up fastrnn's parts instead of competing with them (measured on 2 cores, LSTM T=50 B=32
H=128 training through ``fastrnn.torch``: 25.4 ms with a thread pool of our own, 14.9 ms on
the team, the NumPy-level stack 14.6 ms). Without the Cython extensions a thread pool serves.
libgomp does not survive ``fork``: a forked child runs its regions on a new thread pool.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

try:
    from ._kernels import team as _team
except ImportError:  # Cython extensions not built: a thread pool of our own
    _team = None

#: OpenBLAS's own threshold for going multi-threaded (65536 x GEMM_MULTITHREAD_THRESHOLD 4),
#: in multiply-adds: below it a product runs on one thread anyway
BLAS_THREADS_MACS = 1 << 18

#: :func:`product_shards` splits a kernel call's product over the cores from this many
#: multiply-adds on, in shards of at least MIN_SHARD_ROWS rows (the model API's products,
#: :mod:`fastrnn.linalg`, use the same shards from a lower threshold). Measured through
#: fastrnn.torch on 2 cores: an Elman RNN T=100 B=8 I=64 H=128 training step, whose products
#: have 6.5M-13M, took 3.6 ms with them split and 3.1 whole; LSTM T=100 B=4 I=H=512 (419M
#: each) 54 ms split, 67-88 with BLAS's own threads beside torch's workers
KERNEL_SPLIT_MACS = 1 << 24
MIN_SHARD_ROWS = 16

_local = threading.local()
#: held by a region, and by a call with BLAS at one thread (which may open regions itself)
_lock = threading.RLock()
_pool: ThreadPoolExecutor | None = None
_blas: list | None = None


def _after_fork_in_child() -> None:
    """A forked child has neither the team's threads nor the pool's, and a lock another
    thread held at the fork stays held: start afresh on a thread pool."""
    global _team, _lock, _pool
    _team, _lock, _pool = None, threading.RLock(), None


os.register_at_fork(after_in_child=_after_fork_in_child)


def cores() -> int:
    """Cores a new region may use: 1 inside a region, else the CPUs this process may run on."""
    if getattr(_local, "inside", False):
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def _blas_controllers() -> list:
    global _blas
    if _blas is None:
        import numpy  # noqa: F401  (load NumPy's and SciPy's BLAS before looking)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _blas


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, cores() - 1),
                                   thread_name_prefix="fastrnn")
    return _pool


def _inside(task: Callable[[], Any]) -> Any:
    _local.inside = True
    try:
        return task()
    finally:
        _local.inside = False


def run(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run `tasks` concurrently (the first on the calling thread) and return their results.

    The tasks must release the GIL to gain anything (fastrnn's compiled kernels do).
    """
    if len(tasks) == 1 or cores() == 1:
        return [task() for task in tasks]
    with _lock:  # one region at a time: two would share the BLAS setting and the cores
        if getattr(_local, "blas_one", False):  # inside single_threaded: BLAS is at one
            return _run_team(tasks) if _team is not None else _run_pool(tasks)
        blas = _blas_controllers()
        saved = [c.num_threads for c in blas]
        for c in blas:
            c.set_num_threads(1)
        try:
            return _run_team(tasks) if _team is not None else _run_pool(tasks)
        finally:
            for c, n in zip(blas, saved, strict=True):
                c.set_num_threads(n)


def single_threaded(task: Callable[[], Any]) -> Any:
    """task() with every BLAS at one thread, for a call too small to gain from BLAS's own
    threads: waking a BLAS pool costs more than it saves there, and its workers keep spinning
    afterwards, taking a core from the next product of the other BLAS (NumPy's or SciPy's),
    or from torch's OpenMP workers. The task may open regions (beside torch's pool its large
    products do: :func:`product_shards`). Inside a region BLAS is at one thread already."""
    if getattr(_local, "inside", False) or getattr(_local, "blas_one", False) \
            or cores() == 1:
        return task()
    with _lock:
        blas = _blas_controllers()
        saved = [c.num_threads for c in blas]
        for c in blas:
            c.set_num_threads(1)
        _local.blas_one = True
        try:
            return task()
        finally:
            _local.blas_one = False
            for c, n in zip(blas, saved, strict=True):
                c.set_num_threads(n)


def product_shards(rows: int, work: int) -> list[tuple[int, int]] | None:
    """How to split a kernel call's product of `rows` result rows and `work` multiply-adds
    over the cores: (lo, hi) row ranges to run as one region, or None to run it whole. Split
    only beside another OpenMP pool (:func:`beside_openmp`: torch's, whose workers the region
    runs on) inside :func:`single_threaded`, where the product would otherwise run on one
    core while the others idle. Not inside a region (every core is busy already), and not in
    a NumPy program, where a one-part call lets BLAS use its own threads: team regions beside
    BLAS's spinning workers made an Elman RNN training step (T=100 B=8 H=128) 4.5x slower."""
    if work < KERNEL_SPLIT_MACS or not getattr(_local, "blas_one", False) \
            or not is_beside_openmp():
        return None
    parts = shards(rows, cores(), MIN_SHARD_ROWS)
    return parts if len(parts) > 1 else None


def beside_openmp(task: Callable[[], Any]) -> Any:
    """task(), telling the kernel calls it makes on this thread that another OpenMP pool's
    workers spin on the cores (a torch program's, after its operations): a one-part call
    keeps BLAS at one thread up to a larger size then (Driver), since BLAS workers it wakes
    fight those for the cores."""
    previous = getattr(_local, "beside_openmp", False)
    _local.beside_openmp = True
    try:
        return task()
    finally:
        _local.beside_openmp = previous


def after_team_steps(task: Callable[[], Any]) -> Any:
    """task() just after single steps whose products ran on the OpenMP team (a product of few
    rows and enough work splits over it: src_kernels/packed.h), whose workers spin now: as
    beside torch's pool, BLAS stays at one thread and the large products split over the team.
    Measured on 2 cores: a 2-thread sgemm of 105M multiply-adds took 5.1 ms right after an
    LSTM cell step (B=8 H=256) against 2.3 ms after a pause."""
    return single_threaded(lambda: beside_openmp(task))


def is_beside_openmp() -> bool:
    """Whether this thread runs inside :func:`beside_openmp`."""
    return getattr(_local, "beside_openmp", False)


def _run_team(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """The tasks on the OpenMP team, task 0 on the calling thread; the first error re-raised."""
    results: list[Any] = [None] * len(tasks)
    errors: list[BaseException | None] = [None] * len(tasks)

    def caught(i: int) -> Callable[[], None]:
        def call() -> None:
            try:
                results[i] = _inside(tasks[i])
            except BaseException as exc:  # re-raised on the caller's thread below
                errors[i] = exc
        return call

    _team.run([caught(i) for i in range(len(tasks))])
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def _run_pool(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """The tasks on a thread pool of our own, task 0 on the calling thread."""
    futures = [_executor().submit(_inside, task) for task in tasks[1:]]
    try:
        first = _inside(tasks[0])
    finally:
        wait(futures)  # never leave the region with a task still running
    return [first, *(f.result() for f in futures)]


def shards(n: int, parts: int, min_size: int) -> list[tuple[int, int]]:
    """Split range(n) into at most `parts` contiguous (lo, hi) pieces of >= min_size each."""
    parts = max(1, min(parts, n // max(1, min_size)))
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))
