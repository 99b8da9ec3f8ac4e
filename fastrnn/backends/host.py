"""The products table of the CPU backends: NumPy arrays, and each backend's compiled GEMMs.

Every product of one backend goes through one BLAS library (SciPy's OpenBLAS, which its time
loops call too): two libraries mean two thread pools whose spinning workers fight over the
cores (measured 2.7x slower).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..cells import LAYER_NORM_EPS


class HostProducts:
    """:class:`~fastrnn.backends.driver.Products` on NumPy arrays, over a backend's compiled
    ``project(x, w, bias)``, ``matmul_nn``, ``matmul_tn`` and ``column_sums``."""

    splits_batch = True

    def __init__(self, project: Callable, matmul_nn: Callable, matmul_tn: Callable,
                 column_sums: Callable):
        self._project = project
        self.matmul_nn = matmul_nn
        self.matmul_tn = matmul_tn
        self.column_sums = column_sums
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

    def layer_norm(self, a: np.ndarray, gain: np.ndarray, shifts: tuple):
        """(gain * hat + sum(shifts), hat, 1/std) of each row of a [T,B,N]; hat overwrites
        `a` (the projection it normalises is not needed again)."""
        a -= a.mean(axis=2, keepdims=True, dtype=a.dtype)
        rstd = np.mean(a * a, axis=2, keepdims=True, dtype=a.dtype)
        rstd += a.dtype.type(LAYER_NORM_EPS)
        np.sqrt(rstd, out=rstd)
        np.reciprocal(rstd, out=rstd)
        a *= rstd
        out = a * gain
        for shift in shifts:
            out += shift
        return out, a, rstd

    def layer_norm_backward(self, d_out: np.ndarray, gain: np.ndarray, hat: np.ndarray,
                            rstd: np.ndarray) -> np.ndarray:
        d_hat = d_out * gain
        mean_d = d_hat.mean(axis=2, keepdims=True, dtype=d_hat.dtype)
        mean_dh = np.mean(d_hat * hat, axis=2, keepdims=True, dtype=d_hat.dtype)
        d_hat -= mean_d
        d_hat -= hat * mean_dh
        d_hat *= rstd
        return d_hat
