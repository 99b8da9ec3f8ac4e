"""Matrix products of the model API, on the BLAS the kernels use.

NumPy and SciPy each ship their own OpenBLAS with its own thread pool. The kernels call
SciPy's (Cython through ``scipy.linalg.cython_blas``, Numba through the same functions), so
when the model API's products ran on NumPy's ``@`` the two pools' spinning workers fought over
the cores (DESIGN.md: capping NumPy's pool alone took a char-LM LSTM step from 83.9 to
47.6 ms). :func:`matmul` runs every product of the model API through SciPy's BLAS: one
library for everything fastrnn runs. A large product is split by rows over the cores as a
:func:`fastrnn.parallel.run` region (single-threaded BLAS on the OpenMP team, like the
kernels' batch parts): OpenBLAS's own workers, which spin for milliseconds after each call,
then never wake to fight the team's (char-LM LSTM step, 2 cores: 104 -> 56 ms).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from . import parallel

_GEMM = {np.dtype(np.float32): blas.sgemm, np.dtype(np.float64): blas.dgemm}
#: a product is split over the cores from this many multiply-adds on, in shards of at least
#: MIN_SHARD_ROWS rows of the result
MIN_SPLIT_MACS = 1 << 20
MIN_SHARD_ROWS = 16


def matmul(a: np.ndarray, b: np.ndarray, trans_a: bool = False,
           trans_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) for 2-d arrays of one float dtype (op: transpose when trans_*), as a
    new C-contiguous array; other dtypes fall back to NumPy."""
    gemm = _GEMM.get(a.dtype)
    if gemm is None or b.dtype != a.dtype or a.ndim != 2 or b.ndim != 2:
        return (a.T if trans_a else a) @ (b.T if trans_b else b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    M, K = a.shape[::-1] if trans_a else a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    shards = parallel.shards(M, parallel.cores(), MIN_SHARD_ROWS) \
        if M * N * K >= MIN_SPLIT_MACS else [(0, M)]
    if len(shards) == 1:
        return _gemm(gemm, a, b, trans_a, trans_b)
    out = np.empty((M, N), a.dtype)

    def shard(lo: int, hi: int) -> None:
        rows = a[:, lo:hi] if trans_a else a[lo:hi]
        out[lo:hi] = _gemm(gemm, rows, b, trans_a, trans_b)

    parallel.run([lambda lo=lo, hi=hi: shard(lo, hi) for lo, hi in shards])
    return out


def _gemm(gemm, a: np.ndarray, b: np.ndarray, trans_a: bool, trans_b: bool) -> np.ndarray:
    # Row-major C = op(a) op(b) is column-major C^T = op(b)^T op(a)^T, and a C-contiguous
    # array's transpose is a Fortran-contiguous view: no copies on either side (a column
    # slice of `a`, a shard of a transposed product, is copied by SciPy).
    return gemm(1.0, b.T, a.T, trans_a=trans_b, trans_b=trans_a).T
