"""Matrix products of the model API, split over the cores like the kernels' batch parts.

NumPy and SciPy each ship their own OpenBLAS with its own thread pool, and OpenBLAS's workers
spin for milliseconds after each multi-threaded call; torch's OpenMP workers do the same. When
the model API's products ran on a multi-threaded BLAS beside the kernels' batch parts (which
run on the OpenMP team), the pools fought over the cores (DESIGN.md). :func:`matmul` runs a
large product as a :func:`fastrnn.parallel.run` region instead: its rows split into one shard
per core, each a single-threaded NumPy product (which releases the GIL) on the OpenMP team,
so no BLAS pool wakes up (char-LM LSTM step on 2 cores: 104 ms with products on a
2-thread BLAS, 52 ms so). Smaller products run on the calling thread with BLAS at one
thread.
"""

from __future__ import annotations

import numpy as np

from . import parallel

#: a product is split over the cores from this many multiply-adds on, in shards of at least
#: parallel.MIN_SHARD_ROWS rows of the result; between parallel.BLAS_THREADS_MACS and this it runs
#: with BLAS at one thread: a region's start costs more than it saves there, and a BLAS pool
#: woken for it spins against the kernels afterwards (a seq2seq training batch, whose
#: attention makes products of 1M multiply-adds at every decoder step: 122 ms, 58 ms with
#: them on one thread)
MIN_SPLIT_MACS = 1 << 22


def matmul(a: np.ndarray, b: np.ndarray, trans_a: bool = False,
           trans_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) for 2-d arrays (op: transpose when trans_*), as a new C-contiguous
    array of NumPy's result type."""
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    M, K = a.shape
    N = b.shape[1]
    work = M * N * K
    shards = parallel.shards(M, parallel.cores(), parallel.MIN_SHARD_ROWS) \
        if work >= MIN_SPLIT_MACS else [(0, M)]
    if len(shards) == 1:
        if work >= parallel.BLAS_THREADS_MACS:
            return parallel.single_threaded(lambda: np.ascontiguousarray(a @ b))
        return np.ascontiguousarray(a @ b)
    out = np.empty((M, N), np.result_type(a, b))
    parallel.run([lambda lo=lo, hi=hi: np.matmul(a[lo:hi], b, out=out[lo:hi])
                  for lo, hi in shards])
    return out
