# cython: language_level=3
"""Run Python tasks on the OpenMP thread team: libgomp's pool, the one torch's CPU operations
run on (one libgomp per process), so that fastrnn's batch parts inside a torch program take the
workers torch leaves spinning instead of fighting them for the cores (fastrnn/parallel.py)."""

from cython.parallel cimport prange


def run(list tasks) -> None:
    """Call every task once, task i on team thread i, and return when all have returned.

    Each task must catch its own exceptions (the caller's wrapper does) and release the GIL
    while it computes (fastrnn's kernels do), or the team runs one task at a time.
    """
    cdef Py_ssize_t n = len(tasks), i
    for i in prange(n, nogil=True, num_threads=n, schedule="static", chunksize=1):
        with gil:
            tasks[i]()
