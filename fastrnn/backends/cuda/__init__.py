"""CUDA backend (numba.cuda): persistent fused kernels, tested in numba's CUDA simulator.

Takes NumPy arrays (copied to the GPU and back) or device arrays (numba's, or any object with
``__cuda_array_interface__``, such as a CUDA torch tensor), which stay on the GPU: results
then come back as numba device arrays. Kernels live in :mod:`.kernels`: a tiled GEMM for the
input projection and the weight gradients, and per cell one persistent kernel for the whole
forward time loop and one for the backward loop. Limit: hidden and projection sizes up to
1024 (one thread per unit in a block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Accepts device arrays (the kernel contract checks them by their interface, no copy).
DEVICE_ARRAYS = True
MAX_UNITS = 1024
#: Dynamic shared memory a block may use without opting in (bytes); w_hh goes there if it fits.
SHARED_BYTES = 48 * 1024


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
        return True, f"GPU {cuda.get_current_device().name.decode()}"
    except Exception as exc:  # a broken driver install
        return False, f"CUDA unavailable: {exc}"


def _cuda():
    from numba import cuda

    from . import kernels

    return cuda, kernels


def _dev(a: Any):
    """A device view of `a` (NumPy arrays are copied to the GPU); None stays None."""
    cuda, _ = _cuda()
    if a is None:
        return None
    if isinstance(a, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a))
    if hasattr(a, "__cuda_ndarray__"):  # a numba device array already (real or simulated)
        return a
    return cuda.as_cuda_array(a)  # any other __cuda_array_interface__ object, zero-copy


def _host(a: Any) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else _dev(a).copy_to_host()


@dataclass
class _Saved:
    host: bool  # inputs were NumPy arrays: return NumPy arrays
    x: Any
    w_ih: Any
    w_hh: Any
    lengths: Any
    reverse: bool
    has_bias: bool
    h_prev: Any
    buffers: tuple
    w_hr: Any = None
    relu: bool = False


def _matmul(a, b, trans_a: bool, trans_b: bool):
    """op(a) @ op(b) for 2-d device arrays, a new device array."""
    cuda, k = _cuda()
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    c = cuda.device_array((M, N), a.dtype)
    grid = ((N + k.TILE - 1) // k.TILE, (M + k.TILE - 1) // k.TILE)
    k.gemm[grid, (k.TILE, k.TILE)](a, b, c, trans_a, trans_b, a.dtype.type(0))
    return c


def _flat(a):
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


def _column_sums(a):
    cuda, k = _cuda()
    flat = _flat(a)
    out = cuda.device_array(flat.shape[1], flat.dtype)
    k.column_sums[(flat.shape[1] + 127) // 128, 128](flat, out, flat.dtype.type(0))
    return out


def _launch_shape(units: int, shared_elems: int, weights: int, dtype) -> tuple[int, bool, int]:
    """Threads per block, whether w_hh goes to shared memory, and the dynamic shared bytes."""
    if units > MAX_UNITS:
        raise ValueError(f"the CUDA backend supports hidden/projection sizes up to {MAX_UNITS}, "
                         f"got {units}")
    threads = max(32, (units + 31) // 32 * 32)
    size = np.dtype(dtype).itemsize
    w_shared = (shared_elems + weights) * size <= SHARED_BYTES
    return threads, w_shared, (shared_elems + (weights if w_shared else 0)) * size


def _start(x, w_ih, lengths, training, widths):
    """Device copies, the input projection of all steps (one GEMM), lengths on the device,
    and zeroed saved buffers [steps,B,width] for each width (one step slot in inference)."""
    cuda, _ = _cuda()
    T, B, I = x.shape
    xd, wd = _dev(x), _dev(w_ih)
    xw = _matmul(_flat(xd), wd, False, True).reshape(T, B, wd.shape[0])
    lens = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
    steps = T if training else 1
    buffers = [cuda.to_device(np.zeros((steps, B, w), xd.dtype)) for w in widths]
    return xd, wd, xw, cuda.to_device(lens), buffers


def _bias(b_ih, b_hh, size, dtype):
    return np.zeros(size, dtype) if b_ih is None else _host(b_ih) + _host(b_hh)


def _finish(ctx: _Saved, dg_in, dg_rec):
    """dx, dw_ih, dw_hh, db_ih, db_hh from the gate gradients (GEMMs on the GPU)."""
    T, B, _ = dg_in.shape
    dx = _matmul(_flat(dg_in), ctx.w_ih, False, False).reshape(T, B, ctx.x.shape[2])
    dw_ih = _matmul(_flat(dg_in), _flat(ctx.x), True, False)
    dw_hh = _matmul(_flat(dg_rec), _flat(ctx.h_prev), True, False)
    biases = (_column_sums(dg_in), _column_sums(dg_rec)) if ctx.has_bias else (None, None)
    return dx, dw_ih, dw_hh, *biases


def _out(host: bool, *arrays):
    return tuple(a if a is None or not host else a.copy_to_host() for a in arrays)


# ------------------------------------------------------------------------------ LSTM


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, lengths, reverse, training):
    cuda, k = _cuda()
    T, B, _ = x.shape
    G, Hp = w_hh.shape
    H = G // 4
    xd, wd, xw, lens, (h_prev, gates, c_prev, tanh_c) = _start(
        x, w_ih, lengths, training, (Hp, G, H, H))
    w_hh_d = _dev(w_hh)
    proj = _dev(w_hr) if w_hr is not None else cuda.to_device(np.zeros((0, H), xd.dtype))
    y = cuda.to_device(np.zeros((T, B, Hp), xd.dtype))
    h_n, c_n = cuda.device_array((B, Hp), xd.dtype), cuda.device_array((B, H), xd.dtype)
    threads, w_shared, shared = _launch_shape(max(H, Hp), Hp + H, G * Hp, xd.dtype)
    k.lstm_forward[B, threads, 0, shared](
        xw, w_hh_d, _dev(_bias(b_ih, b_hh, G, xd.dtype)), proj, _dev(h0), _dev(c0), lens,
        reverse, training, xd.dtype.type(1), w_shared, y, h_n, c_n, h_prev, gates, c_prev,
        tanh_c)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, xd, wd, w_hh_d, lens, reverse, b_ih is not None, h_prev,
                 (gates, c_prev, tanh_c), w_hr=proj if w_hr is not None else None)
    return (*_out(host, y, h_n, c_n), ctx if training else None)


def lstm_backward(dy, dh_n, dc_n, ctx: _Saved):
    cuda, k = _cuda()
    gates, c_prev, tanh_c = ctx.buffers
    T, B, G = gates.shape
    H, Hp = G // 4, dy.shape[2]
    dy_d = _dev(dy)
    dgates = cuda.to_device(np.zeros((T, B, G), dy_d.dtype))
    dh_out = cuda.to_device(np.zeros((T, B, Hp), dy_d.dtype))
    dh0, dc0 = cuda.device_array((B, Hp), dy_d.dtype), cuda.device_array((B, H), dy_d.dtype)
    proj = ctx.w_hr if ctx.w_hr is not None else cuda.to_device(np.zeros((0, H), dy_d.dtype))
    threads, w_shared, shared = _launch_shape(max(H, Hp), Hp + H + G, G * Hp, dy_d.dtype)
    k.lstm_backward[B, threads, 0, shared](
        dy_d, _dev(dh_n), _dev(dc_n), ctx.w_hh, proj, ctx.lengths, ctx.reverse,
        dy_d.dtype.type(1), w_shared, gates, c_prev, tanh_c, dgates, dh_out, dh0, dc0)
    dw_hr = None
    if ctx.w_hr is not None:
        out = cuda.device_array((T, B, H), dy_d.dtype)
        k.lstm_output[(T, B, (H + 31) // 32), (1, 1, 32)](gates, tanh_c, out)
        dw_hr = _matmul(_flat(dh_out), _flat(out), True, False)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dgates, dgates)
    return _out(ctx.host, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr)


# ------------------------------------------------------------------------------ GRU


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training):
    cuda, k = _cuda()
    T, B, _ = x.shape
    G, H = w_hh.shape
    xd, wd, xw, lens, (h_prev, gates, hw_n) = _start(x, w_ih, lengths, training, (H, G, H))
    w_hh_d = _dev(w_hh)
    zeros = np.zeros(G, xd.dtype)
    y = cuda.to_device(np.zeros((T, B, H), xd.dtype))
    h_n = cuda.device_array((B, H), xd.dtype)
    threads, w_shared, shared = _launch_shape(H, H, G * H, xd.dtype)
    k.gru_forward[B, threads, 0, shared](
        xw, w_hh_d, _dev(zeros if b_ih is None else b_ih), _dev(zeros if b_hh is None else b_hh),
        _dev(h0), lens, reverse, training, xd.dtype.type(1), w_shared, y, h_n, h_prev, gates,
        hw_n)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, xd, wd, w_hh_d, lens, reverse, b_ih is not None, h_prev, (gates, hw_n))
    return (*_out(host, y, h_n), ctx if training else None)


def gru_backward(dy, dh_n, ctx: _Saved):
    cuda, k = _cuda()
    gates, hw_n = ctx.buffers
    T, B, G = gates.shape
    H = G // 3
    dy_d = _dev(dy)
    dg_in = cuda.to_device(np.zeros((T, B, G), dy_d.dtype))
    dg_rec = cuda.to_device(np.zeros((T, B, G), dy_d.dtype))
    dh0 = cuda.device_array((B, H), dy_d.dtype)
    threads, w_shared, shared = _launch_shape(H, H + G, G * H, dy_d.dtype)
    k.gru_backward[B, threads, 0, shared](
        dy_d, _dev(dh_n), ctx.w_hh, ctx.lengths, ctx.reverse, dy_d.dtype.type(1), w_shared,
        ctx.h_prev, gates, hw_n, dg_in, dg_rec, dh0)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dg_in, dg_rec)
    return _out(ctx.host, dx, dh0, dw_ih, dw_hh, db_ih, db_hh)


# ------------------------------------------------------------------------------ Elman RNN


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    cuda, k = _cuda()
    T, B, _ = x.shape
    H = w_hh.shape[0]
    xd, wd, xw, lens, (h_prev, h_new) = _start(x, w_ih, lengths, training, (H, H))
    w_hh_d = _dev(w_hh)
    relu = nonlinearity == "relu"
    y = cuda.to_device(np.zeros((T, B, H), xd.dtype))
    h_n = cuda.device_array((B, H), xd.dtype)
    threads, w_shared, shared = _launch_shape(H, H, H * H, xd.dtype)
    k.rnn_forward[B, threads, 0, shared](
        xw, w_hh_d, _dev(_bias(b_ih, b_hh, H, xd.dtype)), _dev(h0), lens, reverse, training,
        relu, xd.dtype.type(1), w_shared, y, h_n, h_prev, h_new)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, xd, wd, w_hh_d, lens, reverse, b_ih is not None, h_prev, (h_new,),
                 relu=relu)
    return (*_out(host, y, h_n), ctx if training else None)


def rnn_backward(dy, dh_n, ctx: _Saved):
    cuda, k = _cuda()
    (h_new,) = ctx.buffers
    T, B, H = h_new.shape
    dy_d = _dev(dy)
    dpre = cuda.to_device(np.zeros((T, B, H), dy_d.dtype))
    dh0 = cuda.device_array((B, H), dy_d.dtype)
    threads, w_shared, shared = _launch_shape(H, 2 * H, H * H, dy_d.dtype)
    k.rnn_backward[B, threads, 0, shared](
        dy_d, _dev(dh_n), ctx.w_hh, ctx.lengths, ctx.reverse, ctx.relu, dy_d.dtype.type(1),
        w_shared, h_new, dpre, dh0)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dpre, dpre)
    return _out(ctx.host, dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
