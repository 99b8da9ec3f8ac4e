"""Matrix products of the model API, on the BLAS the kernels use.

NumPy and SciPy each ship their own OpenBLAS with its own thread pool. The kernels call
SciPy's (Cython through ``scipy.linalg.cython_blas``, Numba through the same functions), so
when the model API's products ran on NumPy's ``@`` the two pools' spinning workers fought over
the cores (DESIGN.md: capping NumPy's pool alone took a char-LM LSTM step from 83.9 to
47.6 ms). :func:`matmul` runs every product of the model API through SciPy's BLAS: one
library, one pool, for everything fastrnn runs.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

_GEMM = {np.dtype(np.float32): blas.sgemm, np.dtype(np.float64): blas.dgemm}


def matmul(a: np.ndarray, b: np.ndarray, trans_a: bool = False,
           trans_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) for 2-d arrays of one float dtype (op: transpose when trans_*), as a
    new C-contiguous array; other dtypes fall back to NumPy."""
    gemm = _GEMM.get(a.dtype)
    if gemm is None or b.dtype != a.dtype or a.ndim != 2 or b.ndim != 2:
        return (a.T if trans_a else a) @ (b.T if trans_b else b)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    # Row-major C = op(a) op(b) is column-major C^T = op(b)^T op(a)^T, and a C-contiguous
    # array's transpose is a Fortran-contiguous view: no copies on either side.
    return gemm(1.0, b.T, a.T, trans_a=trans_b, trans_b=trans_a).T
