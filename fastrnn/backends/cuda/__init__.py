"""CUDA backend (numba.cuda): fused GPU kernels, tested in numba's CUDA simulator.

Takes NumPy arrays (copied to the GPU and back) or device arrays (numba's, or any object with
``__cuda_array_interface__``, such as a CUDA torch tensor), which stay on the GPU: results
then come back as numba device arrays. The shared :class:`~fastrnn.backends.driver.Driver`
runs it like every compiled backend, over :class:`DeviceProducts` (tiled GEMMs with the biases
folded into the input projection's epilogue, column sums) and the per-cell time loops of
:mod:`.loops` (persistent kernels when w_hh fits on chip, fused per-step kernels otherwise;
the LayerNorm cells per-step kernels only); the kernels themselves live in :mod:`.kernels`
and :mod:`.ln_kernels`.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ..driver import Driver, TimeLoop
from . import loops
from .loops import MAX_THREADS, SHARED_BYTES, Steps, persistent_launch

__all__ = ["DEVICE_ARRAYS", "MAX_THREADS", "SHARED_BYTES", "DeviceProducts", "available",
           "backward", "driver", "forward", "persistent_launch", "supports"]

#: Accepts device arrays (the kernel contract checks them by their interface, no copy).
DEVICE_ARRAYS = True


def available() -> tuple[bool, str]:
    try:
        from numba import config, cuda
    except ImportError as exc:  # pragma: no cover (numba ships numba.cuda or numba-cuda does)
        return False, f"numba.cuda is missing ({exc}): pip install 'fastrnn[cuda]'"
    if config.ENABLE_CUDASIM:
        return True, "numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): exact but slow"
    try:
        if not cuda.is_available():
            return False, "no CUDA GPU or driver found (numba.cuda.is_available() is False)"
        name = cuda.get_current_device().name  # bytes in numba's own cuda, str in numba-cuda
    except Exception as exc:  # a broken driver install
        return False, f"CUDA unavailable: {exc}"
    problem = _compiler_problem()
    if problem:
        return False, problem
    return True, f"GPU {name.decode() if isinstance(name, bytes) else name}"


def _compiler_problem() -> str | None:
    """Why numba-cuda could not compile a kernel here, found before the first call fails:
    numba-cuda 0.30.4 registers ``np.row_stack`` when it compiles (its array module), and
    numpy 2.5 has none (seen on an H100 machine). None where nothing is known to be wrong."""
    try:
        importlib.import_module("numba.cuda.np.arrayobj")
    except ImportError:  # another numba's layout: nothing to tell in advance
        return None
    except AttributeError as exc:
        return (f"numba-cuda cannot compile kernels with numpy {np.__version__} ({exc}): "
                "install a numpy release it supports")
    return None


def _cuda():
    from numba import cuda

    from . import kernels

    return cuda, kernels


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """The byte strides of a C-ordered array of `shape`."""
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _c_strided(a):
    """`a` with C strides on every axis, as a view of the same memory. NumPy and torch give
    an axis of length 1 any stride (``x[None]``: 0); numba's device arrays then call the
    array non-contiguous and refuse to reshape it (seen on an H100 with numba-cuda 0.30.4; the
    simulator reshapes it like NumPy). Arrays strided along longer axes are returned as
    they are."""
    want = _c_strides(a.shape, a.dtype.itemsize)
    have = tuple(a.strides)
    if have == want or any(n > 1 and s != w for n, s, w in zip(a.shape, have, want, strict=True)):
        return a
    if isinstance(a, np.ndarray):
        return np.lib.stride_tricks.as_strided(a, a.shape, want)
    from numba import config

    if config.ENABLE_CUDASIM:  # the simulator's arrays reshape as NumPy does
        return a
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(a.shape, want, a.dtype, stream=a.stream, gpu_data=a.gpu_data)


def _flat(a):
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


class DeviceProducts:
    """:class:`~fastrnn.backends.driver.Products` on numba device arrays: the batch stays in
    the caller's order in one part (the kernels follow each sequence's own length)."""

    splits_batch = False
    blas_free_rows = 0  # (the device runs no host BLAS)

    def is_host(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def asarray(self, a: Any):
        """A device view of `a` (NumPy arrays are copied to the GPU); None stays None."""
        cuda, _ = _cuda()
        if a is None:
            return None
        if isinstance(a, np.ndarray):
            return cuda.to_device(_c_strided(np.ascontiguousarray(a)))
        if not hasattr(a, "__cuda_ndarray__"):  # any other __cuda_array_interface__ object
            a = cuda.as_cuda_array(a)  # zero-copy
        return _c_strided(a)

    def output(self, a: Any, host: bool):
        return a.copy_to_host() if host and a is not None else a

    def zeros(self, shape: tuple[int, ...], dtype):
        """A zero-filled device array, filled on the GPU (no host buffer, no transfer)."""
        cuda, k = _cuda()
        out = cuda.device_array(shape, dtype)
        if out.size:
            flat = out.reshape(out.size)
            k.fill_zero[(out.size + 255) // 256, 256](flat, flat.dtype.type(0))
        return out

    def empty(self, shape: tuple[int, ...], dtype):
        """Zero-filled as well: the whole-grid products that follow a ragged batch's loops
        (dx, dw_ih, the LayerNorm gains' gradients) read the padding pairs, which no loop
        writes, so they must hold zeros (left unfilled, dx came out wrong on an H100 and NaN
        when poisoned in the simulator)."""
        return self.zeros(shape, dtype)

    def copy(self, a: Any):
        """A new device array holding `a`'s values: a state the loops may overwrite without
        touching the caller's array."""
        cuda, _ = _cuda()
        out = cuda.device_array(a.shape, a.dtype)
        out.copy_to_device(a)
        return out

    def absent(self, dtype, ndim: int) -> None:
        return None

    def steps(self, active: np.ndarray, lengths: np.ndarray) -> Steps:
        return Steps(self.asarray(np.ascontiguousarray(lengths, np.int64)),
                     int(lengths.max(initial=0)))

    def _matmul(self, a, b, trans_a: bool, trans_b: bool, biases: tuple = ()):
        """op(a) @ op(b) (+ up to two biases per column) for 2-d device arrays."""
        cuda, k = _cuda()
        M = a.shape[1] if trans_a else a.shape[0]
        N = b.shape[0] if trans_b else b.shape[1]
        c = cuda.device_array((M, N), a.dtype)
        if c.size:
            placeholder = loops._unused(a.dtype, 1)
            b1, b2 = (*biases, placeholder, placeholder)[:2]
            loops._tiled(k.gemm, N, M)(a, trans_a, b, trans_b, c, b1, len(biases) > 0, b2,
                                       len(biases) > 1, a.dtype.type(0))
        return c

    def scratch(self, name: str, shape: tuple[int, ...], dtype):
        return self.empty(shape, dtype)

    def project(self, x, w, biases: tuple, temporary: bool = False):
        T, B, _ = x.shape
        return self._matmul(_flat(x), w, False, True, biases).reshape(T, B, w.shape[0])

    def matmul_nn(self, a, w):
        T, B, _ = a.shape
        return self._matmul(_flat(a), w, False, False).reshape(T, B, w.shape[1])

    def matmul_tn(self, a, b):
        return self._matmul(_flat(a), _flat(b), True, False)

    def column_sums(self, a):
        cuda, k = _cuda()
        flat = _flat(a)
        out = cuda.device_array(flat.shape[1], flat.dtype)
        k.column_sums[(flat.shape[1] + 127) // 128, 128](flat, out, flat.dtype.type(0))
        return out

    def layer_norm(self, a, gain, shifts: tuple):
        cuda, _ = _cuda()
        from . import ln_kernels

        out, hat = cuda.device_array(a.shape, a.dtype), cuda.device_array(a.shape, a.dtype)
        rstd = cuda.device_array((a.shape[0], a.shape[1], 1), a.dtype)
        rows, width = a.shape[0] * a.shape[1], a.shape[2]
        if rows:
            placeholder = loops._unused(a.dtype, 1)
            s1, s2 = (*shifts, placeholder, placeholder)[:2]
            ln_kernels.row_norm[rows, ln_kernels.threads_for(width)](
                _flat(a), gain, s1, len(shifts) > 0, s2, len(shifts) > 1, a.dtype.type(1),
                _flat(out), _flat(hat), _flat(rstd))
        return out, hat, rstd

    def layer_norm_backward(self, d_out, gain, hat, rstd):
        cuda, _ = _cuda()
        from . import ln_kernels

        d_in = cuda.device_array(d_out.shape, d_out.dtype)
        rows, width = d_out.shape[0] * d_out.shape[1], d_out.shape[2]
        if rows:
            ln_kernels.row_norm_backward[rows, ln_kernels.threads_for(width)](
                _flat(d_out), gain, _flat(hat), _flat(rstd), d_out.dtype.type(1), _flat(d_in))
        return d_in, self.column_dots(d_out, hat)

    def column_dots(self, a, b):
        return self.column_sums(self.multiply(a, b))

    def multiply(self, a, b):
        cuda, k = _cuda()
        T, B, N = b.shape
        out = cuda.device_array((T, B, N), b.dtype)
        k.multiply[(T, B, (N + 31) // 32), (1, 1, 32)](a, b, out)
        return out


driver = Driver({name: TimeLoop(getattr(loops, f"{name}_forward"),
                                getattr(loops, f"{name}_backward"))
                 for name in ("rnn", "lstm", "gru", "ln_lstm", "ln_gru")}, DeviceProducts())
forward, backward, supports = driver.forward, driver.backward, driver.supports
