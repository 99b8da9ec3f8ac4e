"""The products table of the CPU backends: NumPy arrays, and each backend's compiled GEMMs.

Every product of one backend goes through one BLAS library (SciPy's OpenBLAS, which its time
loops call too): two libraries mean two thread pools whose spinning workers fight over the
cores (measured 2.7x slower).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np

from .. import parallel


def _rows(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of the T*B rows of a [T,B,F] array, as a C-contiguous [1,hi-lo,F] view."""
    return a.reshape(1, -1, a.shape[-1])[:, lo:hi]


class HostProducts:
    """:class:`~fastrnn.backends.driver.Products` on NumPy arrays, over a backend's compiled
    ``project(x, w, bias, out)``, ``matmul_nn(a, w, out)``, ``matmul_tn``, ``column_sums``,
    and the input side's LayerNorm: ``layer_norm(a, gain, shifts)``, ``layer_norm_backward``
    and ``column_dots`` (a row's statistics and its backward in one pass over the row, the
    gain's gradient in the same pass). `blas_free_rows`: the products of at most this many
    rows run on the backend's own kernels, not BLAS
    (:class:`~fastrnn.backends.driver.Products`).

    Inside a torch program a large whole-sequence product of a one-part call is split over
    the cores (:func:`fastrnn.parallel.product_shards`: its rows in shards, one region on the
    OpenMP team, torch's pool), where BLAS's own threads would spin against torch's
    workers."""

    splits_batch = True

    def __init__(self, project: Callable, matmul_nn: Callable, matmul_tn: Callable,
                 column_sums: Callable, layer_norm: Callable, layer_norm_backward: Callable,
                 column_dots: Callable, blas_free_rows: int = 0):
        self.blas_free_rows = blas_free_rows
        self._project = project
        self._matmul_nn = matmul_nn
        self._matmul_tn = matmul_tn
        self.column_sums = column_sums
        self.layer_norm = layer_norm
        self.layer_norm_backward = layer_norm_backward
        self.column_dots = column_dots
        self._absent: dict[tuple[np.dtype, int], np.ndarray] = {}
        self._scratch = threading.local()

    def is_host(self, a) -> bool:
        return True

    def asarray(self, a):
        return a

    def output(self, a, host: bool):
        return a

    def zeros(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def empty(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def copy(self, a: np.ndarray) -> np.ndarray:
        return np.array(a)

    def absent(self, dtype, ndim: int) -> np.ndarray:
        """A 0-size array (the loops test a missing w_hr by its 0 rows), made once per kind:
        nothing is ever written to it."""
        key = (np.dtype(dtype), ndim)
        if key not in self._absent:
            self._absent[key] = np.empty((0,) * ndim, dtype)
        return self._absent[key]

    def steps(self, active: np.ndarray, lengths: None) -> np.ndarray:
        return active

    def scratch(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An unfilled array for a temporary of one kernel call: this thread's buffer `name`,
        which the next scratch(name) on this thread overwrites (it grows to the largest shape
        asked and is kept). A fresh array per call costs page faults on every call once the
        caller keeps its results (glibc then hands out new pages: a ragged LSTM inference call,
        T=100 B=32 I=H=128, took 602 in its input projection)."""
        size, dtype = math.prod(shape), np.dtype(dtype)
        buffers = self._scratch.__dict__
        buffer = buffers.get((name, dtype))
        if buffer is None or buffer.size < size:
            buffer = buffers[name, dtype] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)

    def project(self, x: np.ndarray, w: np.ndarray, biases: tuple,
                temporary: bool = False) -> np.ndarray:
        """x [T,B,I] @ w [G,I]^T + the biases' sum: [T,B,G] (`temporary`: in this thread's
        scratch buffer "project", see :meth:`scratch`)."""
        bias = sum(biases[1:], biases[0]) if biases else self.absent(x.dtype, 1)
        out = self.scratch("project", x.shape[:2] + w.shape[:1], x.dtype) if temporary \
            else None
        return self._by_rows(lambda a, o: self._project(a, w, bias, o), x, w.shape[0],
                             x.shape[2], out)

    def matmul_nn(self, a: np.ndarray, w: np.ndarray) -> np.ndarray:
        """a [T,B,G] @ w [G,I]: [T,B,I]."""
        return self._by_rows(lambda rows, out: self._matmul_nn(rows, w, out), a, w.shape[1],
                             w.shape[0])

    @staticmethod
    def _by_rows(product: Callable, a: np.ndarray, width: int, depth: int,
                 out: np.ndarray | None = None) -> np.ndarray:
        """product(a, out) into `out` (None: a new [T,B,width] array), `depth` multiply-adds
        per result; split by rows over the cores where
        :func:`~fastrnn.parallel.product_shards` says."""
        T, B, _ = a.shape
        if out is None:
            out = np.empty((T, B, width), a.dtype)
        shards = parallel.product_shards(T * B, T * B * width * depth)
        if shards is None:
            product(a, out)
        else:
            parallel.run([lambda lo=lo, hi=hi: product(_rows(a, lo, hi), _rows(out, lo, hi))
                          for lo, hi in shards])
        return out

    def matmul_tn(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a [T,B,M]^T @ b [T,B,N] over all T*B rows: [M,N] (split: the shards' partial
        sums, added)."""
        rows = a.shape[0] * a.shape[1]
        shards = parallel.product_shards(rows, rows * a.shape[2] * b.shape[2])
        if shards is None:
            return self._matmul_tn(a, b)
        parts = parallel.run([lambda lo=lo, hi=hi: self._matmul_tn(_rows(a, lo, hi),
                                                                   _rows(b, lo, hi))
                              for lo, hi in shards])
        total = parts[0]
        for part in parts[1:]:
            total += part
        return total

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b
