"""Time loops of the CUDA backend, one forward and one backward per cell, with the driver's
signature (:mod:`fastrnn.backends.driver`; absent arrays are None here).

Each loop picks its kernel kind per call: when w_hh and the loop's state fit in a block's
shared memory (:func:`persistent_launch`), one persistent kernel runs the whole time loop (one
block per sequence); otherwise one fused kernel per step (tiles of sequences x units, any
size), the state double-buffered between steps and each step's kernels launched through
:class:`~.launch.Repeated` (arguments converted once per call, not per step). ``steps``
(:class:`Steps`) holds the sequences' lengths on the GPU: every kernel follows each sequence
over its own valid steps, in the caller's batch order. States enter as the initial ones and
leave as the final ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .launch import Repeated

#: Threads a block may have: the persistent kernels use one per unit.
MAX_THREADS = 1024
#: Dynamic shared memory a block may use without opting in (bytes): the persistent kernels
#: run when w_hh and their state fit there.
SHARED_BYTES = 48 * 1024


class Steps(NamedTuple):
    """Which steps run: each sequence's length on the GPU, and the longest (the per-step
    loop's length)."""

    lengths: Any
    count: int


def persistent_launch(units: int, shared_elems: int, weights: int,
                      dtype: Any) -> tuple[int, int] | None:
    """(threads per block, dynamic shared bytes) of a persistent kernel over `units` units
    that keeps `shared_elems` state values and `weights` (w_hh) on chip; None when they do
    not fit in SHARED_BYTES or the units exceed MAX_THREADS: then the per-step kernels run."""
    need = (shared_elems + weights) * np.dtype(dtype).itemsize
    if units > MAX_THREADS or need > SHARED_BYTES:
        return None
    return max(32, (units + 31) // 32 * 32), need


def _cuda():
    from numba import cuda

    from . import kernels

    return cuda, kernels


def _tiled(kernel, columns: int, rows: int):
    """`kernel` configured for (TILE, TILE) blocks over rows x columns (rows on the grid's x
    axis, which has room for all steps' rows): done once per call, outside the per-step loop,
    so each step only launches."""
    tile = _cuda()[1].TILE
    return kernel[((rows + tile - 1) // tile, (columns + tile - 1) // tile), (tile, tile)]


def _unused(dtype, ndim: int):
    """A 1-element device array for a kernel argument the call does not read (numba-cuda's
    0-size arrays carry no device pointer, so none is passed to a kernel)."""
    return _cuda()[0].device_array((1,) * ndim, dtype)


def _step_loop(steps: Steps, state, launch) -> None:
    """Runs launch(s, state, next_state) for every step s, swapping two state buffers (the
    kernels copy the state of sequences that have ended); the final state lands in `state`."""
    cuda, _ = _cuda()
    current, spare = state, cuda.device_array(state.shape, state.dtype)
    for s in range(steps.count):
        launch(s, current, spare)
        current, spare = spare, current
    if current is not state:
        state.copy_to_device(current)


# ------------------------------------------------------------------------------ LSTM


def _lstm_call(state, w_hh, w_hr):
    """B, Hp, G, H, dtype, whether it projects, the w_hr argument and 1 in the dtype."""
    B, Hp = state.shape
    G, dtype = w_hh.shape[0], state.dtype
    project = w_hr is not None
    return (B, Hp, G, G // 4, dtype, project, w_hr if project else _unused(dtype, 2),
            dtype.type(1))


def lstm_forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps: Steps, reverse, training,
                 relu, y, h_prev, buffers):
    cuda, k = _cuda()
    gates, c_prev, tanh_c = buffers
    B, Hp, G, H, dtype, project, proj, one = _lstm_call(h, w_hh, w_hr)
    launch = persistent_launch(max(H, Hp), Hp + H, G * Hp, dtype)
    if launch:  # each block reads its sequence's h0, c0 first and writes h_n, c_n last
        threads, shared = launch
        k.lstm_forward[B, threads, 0, shared](
            xw, w_hh, proj, project, h, c, steps.lengths, reverse, training, one, y, h, c,
            h_prev, gates, c_prev, tanh_c)
        return
    m = cuda.device_array((B, H), dtype) if project else _unused(dtype, 2)
    cell_step = Repeated(_tiled(k.lstm_step, H, B))
    project_step = Repeated(_tiled(k.lstm_project_step, Hp, B))

    def step(s, h_now, h_next):
        cell_step(s, xw, w_hh, h_now, c, steps.lengths, reverse, training, project, one, m, y,
                  h_next, h_prev, gates, c_prev, tanh_c)
        if project:
            project_step(s, m, proj, h_now, steps.lengths, reverse, dtype.type(0), y, h_next)

    _step_loop(steps, h, step)


def lstm_backward(dy, dh, dc, w_hh, w_hr, norms, steps: Steps, reverse, relu, h_prev,
                  buffers, dg_in, dg_rec, dh_out, grads):
    cuda, k = _cuda()
    gates, c_prev, tanh_c = buffers
    B, Hp, G, H, dtype, project, proj, one = _lstm_call(dh, w_hh, w_hr)
    launch = persistent_launch(max(H, Hp), Hp + H + G, G * Hp, dtype)
    if launch:
        threads, shared = launch
        k.lstm_backward[B, threads, 0, shared](
            dy, dh, dc, w_hh, proj, project, steps.lengths, reverse, one, gates, c_prev,
            tanh_c, dg_in, dh_out, dh, dc)
        return
    dg = cuda.device_array((B, G), dtype)
    d = cuda.device_array((B, Hp), dtype) if project else _unused(dtype, 2)
    dh_step = Repeated(_tiled(k.lstm_dh_step, Hp, B))
    grad_step = Repeated(_tiled(k.lstm_grad_step, H, B))
    recurrent_step = Repeated(_tiled(k.recurrent_grad_step, Hp, B))

    def step(s, dh_now, dh_next):
        if project:
            dh_step(s, dh_now, dy, steps.lengths, reverse, d, dh_out)
        grad_step(s, dy, dh_now, d, proj, dc, steps.lengths, reverse, project, one, gates,
                  c_prev, tanh_c, dg_in, dg)
        recurrent_step(s, dg, w_hh, dh_now, dh_now, False, steps.lengths, dh_next)

    _step_loop(steps, dh, step)


# ------------------------------------------------------------------------------ GRU


def gru_forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps: Steps, reverse, training,
                relu, y, h_prev, buffers):
    _, k = _cuda()
    gates, hw_n = buffers
    B, H = h.shape
    G, dtype = w_hh.shape[0], y.dtype
    one = dtype.type(1)
    launch = persistent_launch(H, H, G * H, dtype)
    if launch:
        threads, shared = launch
        k.gru_forward[B, threads, 0, shared](
            xw, w_hh, b_rec, h, steps.lengths, reverse, training, one, y, h, h_prev, gates,
            hw_n)
        return
    cell_step = Repeated(_tiled(k.gru_step, H, B))

    def step(s, h_now, h_next):
        cell_step(s, xw, w_hh, b_rec, h_now, steps.lengths, reverse, training, one, y, h_next,
                  h_prev, gates, hw_n)

    _step_loop(steps, h, step)


def gru_backward(dy, dh, dc, w_hh, w_hr, norms, steps: Steps, reverse, relu, h_prev,
                 buffers, dg_in, dg_rec, dh_out, grads):
    cuda, k = _cuda()
    gates, hw_n = buffers
    B, H = dh.shape
    G, dtype = w_hh.shape[0], dy.dtype
    one = dtype.type(1)
    launch = persistent_launch(H, H + G, G * H, dtype)
    if launch:
        threads, shared = launch
        k.gru_backward[B, threads, 0, shared](
            dy, dh, w_hh, steps.lengths, reverse, one, h_prev, gates, hw_n, dg_in, dg_rec, dh)
        return
    dg, direct = cuda.device_array((B, G), dtype), cuda.device_array((B, H), dtype)
    grad_step = Repeated(_tiled(k.gru_grad_step, H, B))
    recurrent_step = Repeated(_tiled(k.recurrent_grad_step, H, B))

    def step(s, dh_now, dh_next):
        grad_step(s, dy, dh_now, steps.lengths, reverse, one, h_prev, gates, hw_n, dg_in,
                  dg_rec, dg, direct)
        recurrent_step(s, dg, w_hh, dh_now, direct, True, steps.lengths, dh_next)

    _step_loop(steps, dh, step)


# ------------------------------------------------------------------------------ Elman RNN


def rnn_forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps: Steps, reverse, training,
                relu, y, h_prev, buffers):
    _, k = _cuda()
    (h_new,) = buffers
    B, H = h.shape
    dtype = y.dtype
    one = dtype.type(1)
    launch = persistent_launch(H, H, H * H, dtype)
    if launch:
        threads, shared = launch
        k.rnn_forward[B, threads, 0, shared](
            xw, w_hh, h, steps.lengths, reverse, training, relu, one, y, h, h_prev, h_new)
        return
    cell_step = Repeated(_tiled(k.rnn_step, H, B))

    def step(s, h_now, h_next):
        cell_step(s, xw, w_hh, h_now, steps.lengths, reverse, training, relu, one, y, h_next,
                  h_prev, h_new)

    _step_loop(steps, h, step)


def rnn_backward(dy, dh, dc, w_hh, w_hr, norms, steps: Steps, reverse, relu, h_prev,
                 buffers, dg_in, dg_rec, dh_out, grads):
    cuda, k = _cuda()
    (h_new,) = buffers
    B, H = dh.shape
    dtype = dy.dtype
    one = dtype.type(1)
    launch = persistent_launch(H, 2 * H, H * H, dtype)
    if launch:
        threads, shared = launch
        k.rnn_backward[B, threads, 0, shared](
            dy, dh, w_hh, steps.lengths, reverse, relu, one, h_new, dg_in, dh)
        return
    dg = cuda.device_array((B, H), dtype)
    grad_step = Repeated(_tiled(k.rnn_grad_step, H, B))
    recurrent_step = Repeated(_tiled(k.recurrent_grad_step, H, B))

    def step(s, dh_now, dh_next):
        grad_step(s, dy, dh_now, steps.lengths, reverse, relu, one, h_new, dg_in, dg)
        recurrent_step(s, dg, w_hh, dh_now, dh_now, False, steps.lengths, dh_next)

    _step_loop(steps, dh, step)


# ------------------------------------------------------------------------------ LayerNorm cells
# Per-step kernels only: the tiled product h @ w_hh.T of all sequences, then one block per
# sequence for the row's LayerNorms fused with its gate pass (:mod:`.ln_kernels`); backward
# one block per sequence, then recurrent_grad_step.


def _ln_setup(h, w_hh, y):
    cuda, k = _cuda()
    from . import ln_kernels

    B, G, dtype = h.shape[0], w_hh.shape[0], y.dtype
    placeholder = _unused(dtype, 1)
    product = Repeated(_tiled(k.gemm, G, B))

    def recurrent(h_now, hw):  # hw = h_now @ w_hh.T
        product(h_now, False, w_hh, True, hw, placeholder, False, placeholder, False,
                dtype.type(0))

    return cuda, k, ln_kernels, B, G, dtype, dtype.type(1), recurrent


def ln_lstm_forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps: Steps, reverse, training,
                    relu, y, h_prev, buffers):
    cuda, _, lk, B, G, dtype, one, recurrent = _ln_setup(h, w_hh, y)
    g_hh, g_c, b_c = norms
    gates, c_prev, hw_hat, c_hat, tanh_c, rstd = buffers
    hw = cuda.device_array((B, G), dtype)
    cell_step = Repeated(lk.ln_lstm_step[B, lk.threads_for(G)])

    def step(s, h_now, h_next):
        recurrent(h_now, hw)
        cell_step(s, xw, hw, g_hh, g_c, b_c, h_now, c, steps.lengths, reverse, training, one,
                  y, h_next, h_prev, gates, c_prev, hw_hat, c_hat, tanh_c, rstd)

    _step_loop(steps, h, step)


def ln_lstm_backward(dy, dh, dc, w_hh, w_hr, norms, steps: Steps, reverse, relu, h_prev,
                     buffers, dg_in, dg_rec, dh_out, grads):
    cuda, k, lk, B, G, dtype, one, _ = _ln_setup(dh, w_hh, dy)
    g_hh, g_c, _ = norms
    gates, c_prev, hw_hat, c_hat, tanh_c, rstd = buffers
    d_hw, d_cn = grads
    dgw = cuda.device_array((B, G), dtype)
    grad_step = Repeated(lk.ln_lstm_grad_step[B, lk.threads_for(G)])
    recurrent_step = Repeated(_tiled(k.recurrent_grad_step, dh.shape[1], B))

    def step(s, dh_now, dh_next):
        grad_step(s, dy, dh_now, dc, g_hh, g_c, steps.lengths, reverse, one, gates, c_prev,
                  hw_hat, c_hat, tanh_c, rstd, dg_in, d_hw, d_cn, dgw)
        recurrent_step(s, dgw, w_hh, dh_now, dh_now, False, steps.lengths, dh_next)

    _step_loop(steps, dh, step)


def ln_gru_forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps: Steps, reverse, training,
                   relu, y, h_prev, buffers):
    cuda, _, lk, B, G, dtype, one, recurrent = _ln_setup(h, w_hh, y)
    gates, hw_n, hw_hat, rstd = buffers
    hw = cuda.device_array((B, G), dtype)
    cell_step = Repeated(lk.ln_gru_step[B, lk.threads_for(G)])

    def step(s, h_now, h_next):
        recurrent(h_now, hw)
        cell_step(s, xw, hw, norms[0], b_rec, h_now, steps.lengths, reverse, training, one,
                  y, h_next, h_prev, gates, hw_n, hw_hat, rstd)

    _step_loop(steps, h, step)


def ln_gru_backward(dy, dh, dc, w_hh, w_hr, norms, steps: Steps, reverse, relu, h_prev,
                    buffers, dg_in, dg_rec, dh_out, grads):
    cuda, k, lk, B, G, dtype, one, _ = _ln_setup(dh, w_hh, dy)
    gates, hw_n, hw_hat, rstd = buffers
    (d_hw,) = grads
    dgw = cuda.device_array((B, G), dtype)
    direct = cuda.device_array(dh.shape, dtype)
    grad_step = Repeated(lk.ln_gru_grad_step[B, lk.threads_for(G)])
    recurrent_step = Repeated(_tiled(k.recurrent_grad_step, dh.shape[1], B))

    def step(s, dh_now, dh_next):
        grad_step(s, dy, dh_now, norms[0], steps.lengths, reverse, one, h_prev, gates, hw_n,
                  hw_hat, rstd, dg_in, dg_rec, d_hw, dgw, direct)
        recurrent_step(s, dgw, w_hh, dh_now, direct, True, steps.lengths, dh_next)

    _step_loop(steps, dh, step)
