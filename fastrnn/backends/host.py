"""The products table of the CPU backends: NumPy arrays, and each backend's compiled GEMMs.

Every product of one backend goes through one BLAS library (SciPy's OpenBLAS, which its time
loops call too): two libraries mean two thread pools whose spinning workers fight over the
cores (measured 2.7x slower).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class HostProducts:
    """:class:`~fastrnn.backends.driver.Products` on NumPy arrays, over a backend's compiled
    ``project(x, w, bias)``, ``matmul_nn``, ``matmul_tn``, ``column_sums``, and the input
    side's LayerNorm: ``layer_norm(a, gain, shifts)``, ``layer_norm_backward`` and
    ``column_dots`` (a row's statistics and its backward in one pass over the row, the gain's
    gradient in the same pass). `blas_free_rows`: the products of at most this many rows run
    on the backend's own kernels, not BLAS (:class:`~fastrnn.backends.driver.Products`)."""

    splits_batch = True

    def __init__(self, project: Callable, matmul_nn: Callable, matmul_tn: Callable,
                 column_sums: Callable, layer_norm: Callable, layer_norm_backward: Callable,
                 column_dots: Callable, blas_free_rows: int = 0):
        self.blas_free_rows = blas_free_rows
        self._project = project
        self.matmul_nn = matmul_nn
        self.matmul_tn = matmul_tn
        self.column_sums = column_sums
        self.layer_norm = layer_norm
        self.layer_norm_backward = layer_norm_backward
        self.column_dots = column_dots
        self._absent: dict[tuple[np.dtype, int], np.ndarray] = {}

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

    def project(self, x: np.ndarray, w: np.ndarray, biases: tuple) -> np.ndarray:
        bias = sum(biases[1:], biases[0]) if biases else self.absent(x.dtype, 1)
        return self._project(x, w, bias)

    def multiply(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b
