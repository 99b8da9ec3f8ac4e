"""Numba CPU backend: fused forward and BPTT kernels compiled by Numba (cached on disk).

Each cell's kernels live in their own module (:mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`); this
module implements the kernel contract of :mod:`fastrnn.backends.contract` around them: it
sorts a ragged batch longest first, allocates the outputs and what backward needs, and runs
the whole-sequence weight-gradient products after the backward time loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ragged import BatchOrder


def available() -> tuple[bool, str]:
    import numba

    return True, f"numba {numba.__version__}, kernels JIT-compiled on first use and cached"


@dataclass
class _Saved:
    order: BatchOrder
    x: np.ndarray  # sorted input
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool
    reverse: bool
    h_prev: np.ndarray
    buffers: tuple  # the cell's own saved activations
    w_hr: np.ndarray | None = None
    relu: bool = False


def _zeros_if_none(b: np.ndarray | None, size: int, dtype) -> np.ndarray:
    return np.zeros(size, dtype) if b is None else b


def _start(x, h0, lengths, training, G, H, c0=None):
    """Sort the batch, copy the initial state (the kernels update it in place) and allocate
    y and the per-step buffers (one time slot in inference). The buffers start at zero:
    steps a sequence does not own are never written, and backward multiplies them by 0."""
    T, B, _ = x.shape
    order = BatchOrder(lengths, T, B)
    x = order.gather(x, 1)
    h = np.array(order.gather(h0, 0))
    c = None if c0 is None else np.array(order.gather(c0, 0))
    steps = T if training else 1
    y = np.zeros((T, B, h.shape[1]), x.dtype)
    h_prev = np.zeros((steps, B, h.shape[1]), x.dtype)
    gates = np.zeros((steps, B, G * H), x.dtype)
    return order, x, h, c, y, h_prev, gates


def _finish_grads(ctx: _Saved, dg_in, dg_rec, dh, dc=None):
    """dx, dh0, (dc0), dw_ih, dw_hh, db_ih, db_hh in the caller's batch order."""
    from ._common import sequence_grads

    T, B, I = ctx.x.shape
    GH = dg_in.shape[2]
    dx = np.empty((T, B, I), ctx.x.dtype)
    dw_ih = np.empty_like(ctx.w_ih)
    dw_hh = np.empty_like(ctx.w_hh)
    db_ih, db_hh = np.empty(GH, ctx.x.dtype), np.empty(GH, ctx.x.dtype)
    sequence_grads(dg_in, dg_rec, ctx.x, ctx.h_prev, ctx.w_ih, dx, dw_ih, dw_hh, db_ih, db_hh)
    order = ctx.order
    states = (order.scatter(dh, 0),) if dc is None else (order.scatter(dh, 0),
                                                          order.scatter(dc, 0))
    biases = (db_ih, db_hh) if ctx.has_bias else (None, None)
    return (order.scatter(dx, 1), *states, dw_ih, dw_hh, *biases)


def rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity):
    from . import rnn

    H = w_hh.shape[0]
    order, xs, h, _, y, h_prev, h_new = _start(x, h0, lengths, training, 1, H)
    bias = _zeros_if_none(b_ih, H, x.dtype) + _zeros_if_none(b_hh, H, x.dtype)
    relu = nonlinearity == "relu"
    rnn.forward(xs, w_ih, w_hh, bias, h, order.active, reverse, training, relu, y, h_prev, h_new)
    ctx = _Saved(order, xs, w_ih, w_hh, b_ih is not None, reverse, h_prev, (h_new,), relu=relu)
    return order.scatter(y, 1), order.scatter(h, 0), ctx if training else None


def rnn_backward(dy, dh_n, ctx: _Saved):
    from . import rnn

    order = ctx.order
    dh = np.array(order.gather(dh_n, 0))
    dpre = np.zeros((*dy.shape[:2], ctx.w_hh.shape[0]), dy.dtype)
    rnn.backward(order.gather(dy, 1), dh, ctx.w_hh, order.active, ctx.reverse, ctx.relu,
                 ctx.buffers[0], dpre)
    return _finish_grads(ctx, dpre, dpre, dh)


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, lengths, reverse, training):
    from . import lstm

    H = w_hh.shape[0] // 4
    order, xs, h, c, y, h_prev, gates = _start(x, h0, lengths, training, 4, H, c0)
    c_prev = np.zeros((gates.shape[0], x.shape[1], H), x.dtype)
    tanh_c = np.zeros_like(c_prev)
    bias = _zeros_if_none(b_ih, 4 * H, x.dtype) + _zeros_if_none(b_hh, 4 * H, x.dtype)
    proj = np.empty((0, H), x.dtype) if w_hr is None else w_hr
    lstm.forward(xs, w_ih, w_hh, bias, proj, h, c, order.active, reverse, training,
                 y, h_prev, gates, c_prev, tanh_c)
    ctx = _Saved(order, xs, w_ih, w_hh, b_ih is not None, reverse, h_prev,
                 (gates, c_prev, tanh_c), w_hr=w_hr)
    return order.scatter(y, 1), order.scatter(h, 0), order.scatter(c, 0), \
        ctx if training else None


def lstm_backward(dy, dh_n, dc_n, ctx: _Saved):
    from . import lstm

    order = ctx.order
    gates, c_prev, tanh_c = ctx.buffers
    H = c_prev.shape[2]
    dh = np.array(order.gather(dh_n, 0))
    dc = np.array(order.gather(dc_n, 0))
    dgates = np.zeros_like(gates)
    dh_out = np.zeros_like(dy)
    proj = np.empty((0, H), dy.dtype) if ctx.w_hr is None else ctx.w_hr
    lstm.backward(order.gather(dy, 1), dh, dc, ctx.w_hh, proj, order.active, ctx.reverse,
                  gates, c_prev, tanh_c, dgates, dh_out)
    dw_hr = None
    if ctx.w_hr is not None:
        out = gates[:, :, 3 * H:] * tanh_c  # o * tanh(c): what the projection saw
        dw_hr = dh_out.reshape(-1, dh_out.shape[2]).T @ out.reshape(-1, H)
    return (*_finish_grads(ctx, dgates, dgates, dh, dc), dw_hr)


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training):
    from . import gru

    H = w_hh.shape[0] // 3
    order, xs, h, _, y, h_prev, gates = _start(x, h0, lengths, training, 3, H)
    hw_n = np.zeros((gates.shape[0], x.shape[1], H), x.dtype)
    gru.forward(xs, w_ih, w_hh, _zeros_if_none(b_ih, 3 * H, x.dtype),
                _zeros_if_none(b_hh, 3 * H, x.dtype), h, order.active, reverse, training,
                y, h_prev, gates, hw_n)
    ctx = _Saved(order, xs, w_ih, w_hh, b_ih is not None, reverse, h_prev, (gates, hw_n))
    return order.scatter(y, 1), order.scatter(h, 0), ctx if training else None


def gru_backward(dy, dh_n, ctx: _Saved):
    from . import gru

    order = ctx.order
    gates, hw_n = ctx.buffers
    dh = np.array(order.gather(dh_n, 0))
    dg_in = np.zeros_like(gates)
    dg_rec = np.zeros_like(gates)
    gru.backward(order.gather(dy, 1), dh, ctx.w_hh, order.active, ctx.reverse, ctx.h_prev,
                 gates, hw_n, dg_in, dg_rec)
    return _finish_grads(ctx, dg_in, dg_rec, dh)
