"""CUDA backend (numba.cuda): fused GPU kernels, tested in numba's CUDA simulator.

Takes NumPy arrays (copied to the GPU and back) or device arrays (numba's, or any object with
``__cuda_array_interface__``, such as a CUDA torch tensor), which stay on the GPU: results
then come back as numba device arrays. Kernels live in :mod:`.kernels`. Per call: one tiled
GEMM projects the inputs of all steps (biases folded in); then, when w_hh and the state fit in
a block's shared memory, one persistent kernel runs the whole time loop (one block per
sequence), else one fused per-step kernel per time step (tiles of sequences x units, any
size); after the backward loop, tiled GEMMs give dx and the weight gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Accepts device arrays (the kernel contract checks them by their interface, no copy).
DEVICE_ARRAYS = True
#: Threads a block may have: the persistent kernels use one per unit.
MAX_THREADS = 1024
#: Dynamic shared memory a block may use without opting in (bytes): the persistent kernels
#: run when w_hh and their state fit there.
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


def _fresh(a: Any):
    """A new device array holding a copy of `a` (host or device): a state the kernels may
    overwrite without touching the caller's array."""
    cuda, _ = _cuda()
    if isinstance(a, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(a))
    out = cuda.device_array(a.shape, a.dtype)
    out.copy_to_device(_dev(a))
    return out


def _zeros(shape: tuple[int, ...], dtype):
    """A zero-filled device array, filled on the GPU (no host buffer, no transfer)."""
    cuda, k = _cuda()
    out = cuda.device_array(shape, dtype)
    if out.size:
        flat = out.reshape(out.size)
        k.fill_zero[(out.size + 255) // 256, 256](flat, flat.dtype.type(0))
    return out


def _unused(dtype, ndim: int):
    """A 1-element device array for a kernel argument the call does not read (numba-cuda's
    0-size arrays carry no device pointer, so none is passed to a kernel)."""
    return _cuda()[0].device_array((1,) * ndim, dtype)


def _matmul(a, b, trans_a: bool, trans_b: bool, bias1=None, bias2=None):
    """op(a) @ op(b) (+ bias1 + bias2, per column) for 2-d device arrays, a new device array."""
    cuda, k = _cuda()
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    c = cuda.device_array((M, N), a.dtype)
    if c.size:
        b1 = _unused(a.dtype, 1) if bias1 is None else bias1
        b2 = _unused(a.dtype, 1) if bias2 is None else bias2
        _tiled(k.gemm, N, M)(a, trans_a, b, trans_b, c, b1, bias1 is not None, b2,
                             bias2 is not None, a.dtype.type(0))
    return c


def _grid(columns: int, rows: int) -> tuple[int, int]:
    """Blocks of the tiled kernels: x over rows (sequences, or all steps' rows, which may
    exceed y's limit of 65535 blocks), y over columns (units)."""
    tile = _cuda()[1].TILE
    return (rows + tile - 1) // tile, (columns + tile - 1) // tile


def _tiled(kernel, columns: int, rows: int):
    """`kernel` configured for (TILE, TILE) blocks over rows x columns: done once per call,
    outside the per-step loop, so each step only launches."""
    tile = _cuda()[1].TILE
    return kernel[_grid(columns, rows), (tile, tile)]


def _flat(a):
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2])


def _column_sums(a):
    cuda, k = _cuda()
    flat = _flat(a)
    out = cuda.device_array(flat.shape[1], flat.dtype)
    k.column_sums[(flat.shape[1] + 127) // 128, 128](flat, out, flat.dtype.type(0))
    return out


def persistent_launch(units: int, shared_elems: int, weights: int,
                      dtype: Any) -> tuple[int, int] | None:
    """(threads per block, dynamic shared bytes) of a persistent kernel over `units` units
    that keeps `shared_elems` state values and `weights` (w_hh) on chip; None when they do
    not fit in SHARED_BYTES or the units exceed MAX_THREADS: then the per-step kernels run."""
    need = (shared_elems + weights) * np.dtype(dtype).itemsize
    if units > MAX_THREADS or need > SHARED_BYTES:
        return None
    return max(32, (units + 31) // 32 * 32), need


@dataclass
class _Run:
    """One call's common parts: dtype, lengths (host and device), steps to run."""

    T: int
    B: int
    dtype: np.dtype
    lengths: np.ndarray  # int64 [B], host
    lengths_dev: Any
    training: bool

    @classmethod
    def start(cls, x_shape, dtype, lengths, training: bool) -> _Run:
        T, B = x_shape[0], x_shape[1]
        lens = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        return cls(T, B, np.dtype(dtype), lens, _dev(lens), training)

    @property
    def steps(self) -> int:
        """Steps of the longest sequence: the per-step loop's length."""
        return int(self.lengths.max(initial=0))

    @property
    def one(self):
        return self.dtype.type(1)

    def saved(self, *widths: int) -> list:
        """Zeroed [T,B,width] buffers the forward saves for backward (placeholders when not
        training: the kernels write them only in training)."""
        if not self.training:
            return [_unused(self.dtype, 3) for _ in widths]
        return [_zeros((self.T, self.B, w), self.dtype) for w in widths]


def _project(x, w_ih, bias1, bias2):
    """xw [T,B,G] = x @ w_ih.T + biases, one GEMM over all steps."""
    T, B, _ = x.shape
    return _matmul(_flat(x), w_ih, False, True, bias1, bias2).reshape(T, B, w_ih.shape[0])


@dataclass
class _Saved:
    host: bool  # inputs were NumPy arrays: return NumPy arrays
    run: _Run
    x: Any
    w_ih: Any
    w_hh: Any
    reverse: bool
    has_bias: bool
    h_prev: Any
    buffers: tuple
    w_hr: Any = None
    relu: bool = False


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


def _step_loop(run: _Run, state, launch) -> Any:
    """Runs launch(s, state, next_state) for every step s, swapping the two state buffers
    (the kernels copy the state of sequences that have ended); returns the final state."""
    cuda, _ = _cuda()
    spare = cuda.device_array(state.shape, state.dtype)
    for s in range(run.steps):
        launch(s, state, spare)
        state, spare = spare, state
    return state


# ------------------------------------------------------------------------------ LSTM


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, lengths, reverse, training):
    cuda, k = _cuda()
    xd, wd, w_hh_d = _dev(x), _dev(w_ih), _dev(w_hh)
    run = _Run.start(xd.shape, xd.dtype, lengths, training)
    T, B, G, Hp = run.T, run.B, w_hh_d.shape[0], w_hh_d.shape[1]
    H = G // 4
    xw = _project(xd, wd, _dev(b_ih), _dev(b_hh))
    h_prev, gates, c_prev, tanh_c = run.saved(Hp, G, H, H)
    project = w_hr is not None
    proj = _dev(w_hr) if project else _unused(run.dtype, 2)
    y = _zeros((T, B, Hp), run.dtype)
    launch = persistent_launch(max(H, Hp), Hp + H, G * Hp, run.dtype)
    if launch:
        threads, shared = launch
        h_n, c_n = cuda.device_array((B, Hp), run.dtype), cuda.device_array((B, H), run.dtype)
        k.lstm_forward[B, threads, 0, shared](
            xw, w_hh_d, proj, project, _dev(h0), _dev(c0), run.lengths_dev, reverse, training,
            run.one, y, h_n, c_n, h_prev, gates, c_prev, tanh_c)
    else:
        c_n = _fresh(c0)
        m = cuda.device_array((B, H), run.dtype) if project else _unused(run.dtype, 2)
        cell_step = _tiled(k.lstm_step, H, B)
        project_step = _tiled(k.lstm_project_step, Hp, B)
        one, zero = run.one, run.dtype.type(0)

        def step(s, h, h_next):
            cell_step(s, xw, w_hh_d, h, c_n, run.lengths_dev, reverse, training, project, one,
                      m, y, h_next, h_prev, gates, c_prev, tanh_c)
            if project:
                project_step(s, m, proj, h, run.lengths_dev, reverse, zero, y, h_next)

        h_n = _step_loop(run, _fresh(h0), step)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, run, xd, wd, w_hh_d, reverse, b_ih is not None, h_prev,
                 (gates, c_prev, tanh_c), w_hr=proj if project else None)
    return (*_out(host, y, h_n, c_n), ctx if training else None)


def lstm_backward(dy, dh_n, dc_n, ctx: _Saved):
    cuda, k = _cuda()
    run = ctx.run
    gates, c_prev, tanh_c = ctx.buffers
    T, B, G = gates.shape
    H, Hp = G // 4, ctx.w_hh.shape[1]
    dy_d = _dev(dy)
    dgates = _zeros((T, B, G), run.dtype)
    dh_out = _zeros((T, B, Hp), run.dtype)
    project = ctx.w_hr is not None
    proj = ctx.w_hr if project else _unused(run.dtype, 2)
    launch = persistent_launch(max(H, Hp), Hp + H + G, G * Hp, run.dtype)
    if launch:
        threads, shared = launch
        dh0, dc0 = cuda.device_array((B, Hp), run.dtype), cuda.device_array((B, H), run.dtype)
        k.lstm_backward[B, threads, 0, shared](
            dy_d, _dev(dh_n), _dev(dc_n), ctx.w_hh, proj, project, run.lengths_dev, ctx.reverse,
            run.one, gates, c_prev, tanh_c, dgates, dh_out, dh0, dc0)
    else:
        dc0 = _fresh(dc_n)
        dg = cuda.device_array((B, G), run.dtype)
        d = cuda.device_array((B, Hp), run.dtype) if project else _unused(run.dtype, 2)
        dh_step = _tiled(k.lstm_dh_step, Hp, B)
        grad_step = _tiled(k.lstm_grad_step, H, B)
        recurrent_step = _tiled(k.recurrent_grad_step, Hp, B)
        one = run.one

        def step(s, dh, dh_next):
            if project:
                dh_step(s, dh, dy_d, run.lengths_dev, ctx.reverse, d, dh_out)
            grad_step(s, dy_d, dh, d, proj, dc0, run.lengths_dev, ctx.reverse, project, one,
                      gates, c_prev, tanh_c, dgates, dg)
            recurrent_step(s, dg, ctx.w_hh, dh, dh, False, run.lengths_dev, dh_next)

        dh0 = _step_loop(run, _fresh(dh_n), step)
    dw_hr = None
    if project:
        out = cuda.device_array((T, B, H), run.dtype)
        k.lstm_output[(T, B, (H + 31) // 32), (1, 1, 32)](gates, tanh_c, out)
        dw_hr = _matmul(_flat(dh_out), _flat(out), True, False)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dgates, dgates)
    return _out(ctx.host, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr)


# ------------------------------------------------------------------------------ GRU


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training):
    cuda, k = _cuda()
    xd, wd, w_hh_d = _dev(x), _dev(w_ih), _dev(w_hh)
    run = _Run.start(xd.shape, xd.dtype, lengths, training)
    T, B, G = run.T, run.B, w_hh_d.shape[0]
    H = G // 3
    xw = _project(xd, wd, _dev(b_ih), None)
    b_hh_d = _zeros((G,), run.dtype) if b_hh is None else _dev(b_hh)
    h_prev, gates, hw_n = run.saved(H, G, H)
    y = _zeros((T, B, H), run.dtype)
    launch = persistent_launch(H, H, G * H, run.dtype)
    if launch:
        threads, shared = launch
        h_n = cuda.device_array((B, H), run.dtype)
        k.gru_forward[B, threads, 0, shared](
            xw, w_hh_d, b_hh_d, _dev(h0), run.lengths_dev, reverse, training, run.one, y, h_n,
            h_prev, gates, hw_n)
    else:
        cell_step, one = _tiled(k.gru_step, H, B), run.one

        def step(s, h, h_next):
            cell_step(s, xw, w_hh_d, b_hh_d, h, run.lengths_dev, reverse, training, one, y,
                      h_next, h_prev, gates, hw_n)

        h_n = _step_loop(run, _fresh(h0), step)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, run, xd, wd, w_hh_d, reverse, b_ih is not None, h_prev, (gates, hw_n))
    return (*_out(host, y, h_n), ctx if training else None)


def gru_backward(dy, dh_n, ctx: _Saved):
    cuda, k = _cuda()
    run = ctx.run
    gates, hw_n = ctx.buffers
    T, B, G = gates.shape
    H = G // 3
    dy_d = _dev(dy)
    dg_in, dg_rec = _zeros((T, B, G), run.dtype), _zeros((T, B, G), run.dtype)
    launch = persistent_launch(H, H + G, G * H, run.dtype)
    if launch:
        threads, shared = launch
        dh0 = cuda.device_array((B, H), run.dtype)
        k.gru_backward[B, threads, 0, shared](
            dy_d, _dev(dh_n), ctx.w_hh, run.lengths_dev, ctx.reverse, run.one, ctx.h_prev,
            gates, hw_n, dg_in, dg_rec, dh0)
    else:
        dg, direct = cuda.device_array((B, G), run.dtype), cuda.device_array((B, H), run.dtype)
        grad_step = _tiled(k.gru_grad_step, H, B)
        recurrent_step = _tiled(k.recurrent_grad_step, H, B)
        one = run.one

        def step(s, dh, dh_next):
            grad_step(s, dy_d, dh, run.lengths_dev, ctx.reverse, one, ctx.h_prev, gates, hw_n,
                      dg_in, dg_rec, dg, direct)
            recurrent_step(s, dg, ctx.w_hh, dh, direct, True, run.lengths_dev, dh_next)

        dh0 = _step_loop(run, _fresh(dh_n), step)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dg_in, dg_rec)
    return _out(ctx.host, dx, dh0, dw_ih, dw_hh, db_ih, db_hh)


# ------------------------------------------------------------------------------ Elman RNN


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    cuda, k = _cuda()
    xd, wd, w_hh_d = _dev(x), _dev(w_ih), _dev(w_hh)
    run = _Run.start(xd.shape, xd.dtype, lengths, training)
    T, B, H = run.T, run.B, w_hh_d.shape[0]
    xw = _project(xd, wd, _dev(b_ih), _dev(b_hh))
    relu = nonlinearity == "relu"
    h_prev, h_new = run.saved(H, H)
    y = _zeros((T, B, H), run.dtype)
    launch = persistent_launch(H, H, H * H, run.dtype)
    if launch:
        threads, shared = launch
        h_n = cuda.device_array((B, H), run.dtype)
        k.rnn_forward[B, threads, 0, shared](
            xw, w_hh_d, _dev(h0), run.lengths_dev, reverse, training, relu, run.one, y, h_n,
            h_prev, h_new)
    else:
        cell_step, one = _tiled(k.rnn_step, H, B), run.one

        def step(s, h, h_next):
            cell_step(s, xw, w_hh_d, h, run.lengths_dev, reverse, training, relu, one, y,
                      h_next, h_prev, h_new)

        h_n = _step_loop(run, _fresh(h0), step)
    host = isinstance(x, np.ndarray)
    ctx = _Saved(host, run, xd, wd, w_hh_d, reverse, b_ih is not None, h_prev, (h_new,),
                 relu=relu)
    return (*_out(host, y, h_n), ctx if training else None)


def rnn_backward(dy, dh_n, ctx: _Saved):
    cuda, k = _cuda()
    run = ctx.run
    (h_new,) = ctx.buffers
    T, B, H = h_new.shape
    dy_d = _dev(dy)
    dpre = _zeros((T, B, H), run.dtype)
    launch = persistent_launch(H, 2 * H, H * H, run.dtype)
    if launch:
        threads, shared = launch
        dh0 = cuda.device_array((B, H), run.dtype)
        k.rnn_backward[B, threads, 0, shared](
            dy_d, _dev(dh_n), ctx.w_hh, run.lengths_dev, ctx.reverse, ctx.relu, run.one, h_new,
            dpre, dh0)
    else:
        dg = cuda.device_array((B, H), run.dtype)
        grad_step = _tiled(k.rnn_grad_step, H, B)
        recurrent_step = _tiled(k.recurrent_grad_step, H, B)
        one = run.one

        def step(s, dh, dh_next):
            grad_step(s, dy_d, dh, run.lengths_dev, ctx.reverse, ctx.relu, one, h_new, dpre, dg)
            recurrent_step(s, dg, ctx.w_hh, dh, dh, False, run.lengths_dev, dh_next)

        dh0 = _step_loop(run, _fresh(dh_n), step)
    dx, dw_ih, dw_hh, db_ih, db_hh = _finish(ctx, dpre, dpre)
    return _out(ctx.host, dx, dh0, dw_ih, dw_hh, db_ih, db_hh)
