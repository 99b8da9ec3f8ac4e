"""NumPy reference kernels: the ground truth every backend is tested against.

Readable first, then reasonably quick (the input projection is hoisted out of the time loop, as
in every fast backend, so that benchmarks against this baseline are fair). One layer, one
direction, one cell per call, following the kernel contract of DESIGN.md:

- time-major, C-contiguous arrays of one float dtype: x[T,B,I], h0[B,Hp], c0[B,H];
- weights in PyTorch's layout and gate order: w_ih[G*H,I], w_hh[G*H,Hp], b_*[G*H], where G is
  1 (RNN), 3 (GRU: r, z, n) or 4 (LSTM: i, f, g, o); Hp is H, or P for an LSTM with projection
  w_hr[P,H];
- ``lengths[B]``: sequence b runs steps [0, lengths[b]); beyond that its state is frozen and
  its output is 0. ``reverse=True`` runs each sequence backward over its own valid steps.

Each cell has a forward and a backward function with one signature (the kernel contract's,
:class:`~fastrnn.backends.contract.KernelModule`), found through :data:`LOOPS` by the cell's
``loop``. Arguments are validated by :class:`fastrnn.backends.contract.Backend`, not here. The
reference does not go through the driver of the compiled backends: it is what checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit as sigmoid  # overflow-free in float32 and float64

from ..cells import LAYER_NORM_EPS, Cell


def available() -> tuple[bool, str]:
    """The reference needs nothing beyond NumPy and SciPy."""
    return True, "NumPy reference"


# --------------------------------------------------------------------------------------------
# Helpers shared by the three cells
# --------------------------------------------------------------------------------------------


def _time_steps(T: int, reverse: bool) -> range:
    """The order in which the forward pass visits the steps."""
    return range(T - 1, -1, -1) if reverse else range(T)


def _step_mask(lengths: np.ndarray | None, T: int, B: int) -> np.ndarray:
    """valid[t, b, 0] is True where step t belongs to sequence b; shape [T,B,1]."""
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    return (np.arange(T)[:, None] < lengths[None, :])[:, :, None]


def _input_projection(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x[T,B,I] @ w_ih^T (+ bias) for every step at once: [T,B,G*H]."""
    xw = x @ w_ih.T
    if bias is not None:
        xw += bias
    return xw


def _bias_sum(b_ih: np.ndarray | None, b_hh: np.ndarray | None) -> np.ndarray | None:
    return None if b_ih is None else b_ih + b_hh


@dataclass
class _Saved:
    """What backward needs from forward (fields a cell does not use stay None)."""

    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool
    reverse: bool
    valid: np.ndarray  # [T,B,1] bool
    h_prev: np.ndarray  # [T,B,Hp] hidden state entering each step
    act: np.ndarray  # RNN: activation derivative; LSTM: gates i,f,g,o; GRU: gates r,z,n
    c_prev: np.ndarray | None = None  # LSTM [T,B,H]
    tanh_c: np.ndarray | None = None  # LSTM [T,B,H]
    w_hr: np.ndarray | None = None  # LSTM projection [P,H]
    hw_n: np.ndarray | None = None  # GRU: W_hn h + b_hn, [T,B,H]


def _parameter_grads(
    saved: _Saved, dg_in: np.ndarray, dg_rec: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """dx, dw_ih, dw_hh, db_ih, db_hh as whole-sequence products after the time loop.

    dg_in [T,B,G*H] is the gradient of the input-side pre-activations, dg_rec that of the
    recurrent side (the same array except for GRU's candidate gate).
    """
    T, B, I = saved.x.shape
    GH = dg_in.shape[2]
    dx = dg_in @ saved.w_ih
    dw_ih = dg_in.reshape(T * B, GH).T @ saved.x.reshape(T * B, I)
    dw_hh = dg_rec.reshape(T * B, GH).T @ saved.h_prev.reshape(T * B, -1)
    if not saved.has_bias:
        return dx, dw_ih, dw_hh, None, None
    return dx, dw_ih, dw_hh, dg_in.sum(axis=(0, 1)), dg_rec.sum(axis=(0, 1))


# --------------------------------------------------------------------------------------------
# Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu
# --------------------------------------------------------------------------------------------


def rnn_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                reverse, training):
    """Returns y[T,B,H], (h_n[B,H],), ctx (None when not training)."""
    (h0,) = states
    T, B, _ = x.shape
    H = w_hh.shape[0]
    valid = _step_mask(lengths, T, B)
    xw = _input_projection(x, w_ih, _bias_sum(b_ih, b_hh))
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prev = np.empty_like(y)
    dact = np.empty_like(y)
    h = h0.copy()
    for t in _time_steps(T, reverse):
        h_prev[t] = h
        pre = xw[t] + h @ w_hh.T
        if cell.relu:
            h_new = np.maximum(pre, 0)
            dact[t] = pre > 0
        else:
            h_new = np.tanh(pre)
            dact[t] = 1 - h_new * h_new
        y[t] = np.where(valid[t], h_new, 0)
        h = np.where(valid[t], h_new, h)
    if not training:
        return y, (h,), None
    return y, (h,), _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, h_prev, dact)


def rnn_backward(cell: Cell, dy, dstates, ctx: _Saved):
    """Returns dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh (None without bias), None, ()."""
    (dh_n,) = dstates
    T = dy.shape[0]
    dpre = np.zeros((T, *dh_n.shape), dtype=dy.dtype)
    dh = dh_n.copy()
    for t in reversed(_time_steps(T, ctx.reverse)):
        valid = ctx.valid[t]
        dpre[t] = np.where(valid, (dh + dy[t]) * ctx.act[t], 0)
        dh = np.where(valid, dpre[t] @ ctx.w_hh, dh)
    dx, dw_ih, dw_hh, db_ih, db_hh = _parameter_grads(ctx, dpre, dpre)
    return dx, (dh,), dw_ih, dw_hh, db_ih, db_hh, None, ()


# --------------------------------------------------------------------------------------------
# LSTM (PyTorch's, gates i, f, g, o; optional projection h = W_hr (o * tanh(c)))
# --------------------------------------------------------------------------------------------


def lstm_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                 reverse, training):
    """Returns y[T,B,Hp], (h_n[B,Hp], c_n[B,H]), ctx (None when not training)."""
    h0, c0 = states
    T, B, _ = x.shape
    H = w_hh.shape[0] // 4
    Hp = h0.shape[1]
    valid = _step_mask(lengths, T, B)
    xw = _input_projection(x, w_ih, _bias_sum(b_ih, b_hh))
    y = np.zeros((T, B, Hp), dtype=x.dtype)
    h_prev = np.empty_like(y)
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)
    c_prev = np.empty((T, B, H), dtype=x.dtype)
    tanh_c = np.empty_like(c_prev)
    h, c = h0.copy(), c0.copy()
    for t in _time_steps(T, reverse):
        h_prev[t], c_prev[t] = h, c
        pre = xw[t] + h @ w_hh.T
        i = sigmoid(pre[:, :H])
        f = sigmoid(pre[:, H:2 * H])
        g = np.tanh(pre[:, 2 * H:3 * H])
        o = sigmoid(pre[:, 3 * H:])
        c_new = f * c + i * g
        tanh_c[t] = np.tanh(c_new)
        h_new = o * tanh_c[t]
        if w_hr is not None:
            h_new = h_new @ w_hr.T
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        y[t] = np.where(valid[t], h_new, 0)
        h = np.where(valid[t], h_new, h)
        c = np.where(valid[t], c_new, c)
    if not training:
        return y, (h, c), None
    saved = _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, h_prev, gates,
                   c_prev=c_prev, tanh_c=tanh_c, w_hr=w_hr)
    return y, (h, c), saved


def lstm_backward(cell: Cell, dy, dstates, ctx: _Saved):
    """Returns dx, (dh0, dc0), dw_ih, dw_hh, db_ih, db_hh, dw_hr (None without projection),
    ()."""
    dh_n, dc_n = dstates
    T = dy.shape[0]
    H = ctx.c_prev.shape[2]
    dgates = np.zeros_like(ctx.act)
    dh_out = np.zeros_like(dy)  # gradient reaching each step's (projected) output
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in reversed(_time_steps(T, ctx.reverse)):
        valid = ctx.valid[t]
        i, f, g, o = (ctx.act[t, :, k * H:(k + 1) * H] for k in range(4))
        dh_out[t] = np.where(valid, dh + dy[t], 0)
        d_ot = dh_out[t] if ctx.w_hr is None else dh_out[t] @ ctx.w_hr  # d(o * tanh c)
        dc_new = dc + d_ot * o * (1 - ctx.tanh_c[t] ** 2)
        dgates[t] = np.where(valid, np.concatenate([
            dc_new * g * i * (1 - i),
            dc_new * ctx.c_prev[t] * f * (1 - f),
            dc_new * i * (1 - g * g),
            d_ot * ctx.tanh_c[t] * o * (1 - o),
        ], axis=1), 0)
        dh = np.where(valid, dgates[t] @ ctx.w_hh, dh)
        dc = np.where(valid, dc_new * f, dc)
    dx, dw_ih, dw_hh, db_ih, db_hh = _parameter_grads(ctx, dgates, dgates)
    dw_hr = None
    if ctx.w_hr is not None:
        out = ctx.act[:, :, 3 * H:] * ctx.tanh_c  # o * tanh(c), [T,B,H]
        dw_hr = dh_out.reshape(-1, dh_out.shape[2]).T @ out.reshape(-1, H)
    return dx, (dh, dc), dw_ih, dw_hh, db_ih, db_hh, dw_hr, ()


# --------------------------------------------------------------------------------------------
# GRU (PyTorch's): r, z = sigmoid(...); n = tanh(W_in x + b_in + r * (W_hn h + b_hn));
# h' = (1 - z) * n + z * h
# --------------------------------------------------------------------------------------------


def gru_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                reverse, training):
    """Returns y[T,B,H], (h_n[B,H],), ctx (None when not training)."""
    (h0,) = states
    T, B, _ = x.shape
    H = w_hh.shape[0] // 3
    valid = _step_mask(lengths, T, B)
    xw = _input_projection(x, w_ih, b_ih)
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prev = np.empty_like(y)
    gates = np.empty((T, B, 3 * H), dtype=x.dtype)
    hw_n = np.empty_like(y)
    h = h0.copy()
    for t in _time_steps(T, reverse):
        h_prev[t] = h
        hw = h @ w_hh.T
        if b_hh is not None:
            hw += b_hh
        r = sigmoid(xw[t, :, :H] + hw[:, :H])
        z = sigmoid(xw[t, :, H:2 * H] + hw[:, H:2 * H])
        n = np.tanh(xw[t, :, 2 * H:] + r * hw[:, 2 * H:])
        h_new = (1 - z) * n + z * h
        gates[t] = np.concatenate([r, z, n], axis=1)
        hw_n[t] = hw[:, 2 * H:]
        y[t] = np.where(valid[t], h_new, 0)
        h = np.where(valid[t], h_new, h)
    if not training:
        return y, (h,), None
    return y, (h,), _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, h_prev, gates,
                           hw_n=hw_n)


def _gru_gate_grads(ctx: _Saved, t: int, dh_new: np.ndarray, valid: np.ndarray):
    """Step t's gradients of the input-side and recurrent-side pre-activations (r, z, n; the
    recurrent n scaled by r) from dh_new, the gradient reaching h'; 0 where not valid."""
    H = dh_new.shape[1]
    r, z, n = (ctx.act[t, :, k * H:(k + 1) * H] for k in range(3))
    dn = dh_new * (1 - z) * (1 - n * n)
    dr = dn * ctx.hw_n[t] * r * (1 - r)
    dz = dh_new * (ctx.h_prev[t] - n) * z * (1 - z)
    return (np.where(valid, np.concatenate([dr, dz, dn], axis=1), 0),
            np.where(valid, np.concatenate([dr, dz, dn * r], axis=1), 0))


def gru_backward(cell: Cell, dy, dstates, ctx: _Saved):
    """Returns dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh (None without bias), None, ()."""
    (dh_n,) = dstates
    T = dy.shape[0]
    H = dh_n.shape[1]
    dg_in = np.zeros_like(ctx.act)  # d(input-side pre-activations) r, z, n
    dg_rec = np.zeros_like(ctx.act)  # d(recurrent-side pre-activations): n's is scaled by r
    dh = dh_n.copy()
    for t in reversed(_time_steps(T, ctx.reverse)):
        valid = ctx.valid[t]
        dh_new = dh + dy[t]
        dg_in[t], dg_rec[t] = _gru_gate_grads(ctx, t, dh_new, valid)
        dh = np.where(valid, dh_new * ctx.act[t, :, H:2 * H] + dg_rec[t] @ ctx.w_hh, dh)
    dx, dw_ih, dw_hh, db_ih, db_hh = _parameter_grads(ctx, dg_in, dg_rec)
    return dx, (dh,), dw_ih, dw_hh, db_ih, db_hh, None, ()


# --------------------------------------------------------------------------------------------
# LayerNorm cells (Ba et al. 2016). norm(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over each
# row's features (biased variance); its backward, for d = dL/d norm(v) and s = 1/std:
# dL/dv = s * (d - mean(d) - norm(v) * mean(d * norm(v))).
# --------------------------------------------------------------------------------------------


def _layer_norm(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(norm(v), 1/std) over the last axis: [..., N] and [..., 1], in v's dtype; the statistics
    in float64, so a float32 row of values up to 3e38 (squares past float32's range) keeps
    them."""
    wide = v.astype(np.float64)
    mean = wide.mean(axis=-1, keepdims=True)
    centred = wide - mean
    rstd = (1 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LAYER_NORM_EPS))
    rstd = rstd.astype(v.dtype)
    return (v - mean.astype(v.dtype)) * rstd, rstd


def _layer_norm_backward(d_hat: np.ndarray, hat: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """dL/dv from dL/d norm(v), norm(v) and 1/std (as returned by :func:`_layer_norm`)."""
    return rstd * (d_hat - d_hat.mean(axis=-1, keepdims=True)
                   - hat * (d_hat * hat).mean(axis=-1, keepdims=True))


@dataclass
class _NormSaved:
    """What a LayerNorm cell's backward needs besides :class:`_Saved`."""

    base: _Saved
    norms: tuple  # the gains and shifts, in cell.norms order
    x_hat: np.ndarray  # norm(x W_ih^T), [T,B,G*H]
    x_rstd: np.ndarray  # [T,B,1]
    hw_hat: np.ndarray  # norm(h W_hh^T), [T,B,G*H]
    hw_rstd: np.ndarray  # [T,B,1]
    c_hat: np.ndarray | None = None  # LSTM: norm(c'), [T,B,H]
    c_rstd: np.ndarray | None = None  # LSTM: [T,B,1]


def _norm_input_grads(ctx: _NormSaved, d_in: np.ndarray, d_rec_raw: np.ndarray):
    """dx, dw_ih, dw_hh and ln_ih's gradient from the gradients of the normalised input side
    (d_in, [T,B,G*H]) and of the raw recurrent product (d_rec_raw)."""
    base = ctx.base
    d_ln_ih = (d_in * ctx.x_hat).sum(axis=(0, 1))
    d_xw = _layer_norm_backward(d_in * ctx.norms[0], ctx.x_hat, ctx.x_rstd)
    T, B, I = base.x.shape
    GH = d_in.shape[2]
    dx = d_xw @ base.w_ih
    dw_ih = d_xw.reshape(T * B, GH).T @ base.x.reshape(T * B, I)
    dw_hh = d_rec_raw.reshape(T * B, GH).T @ base.h_prev.reshape(T * B, -1)
    return dx, dw_ih, dw_hh, d_ln_ih


def ln_lstm_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                    reverse, training):
    """a = g_ih norm(x W_ih^T) + g_hh norm(h W_hh^T) + b_ih + b_hh (gates i, f, g, o);
    c' = f c + i g; h' = o tanh(g_c norm(c') + b_c). Returns y[T,B,H], (h_n, c_n), ctx."""
    g_ih, g_hh, g_c, b_c = norms
    h0, c0 = states
    T, B, _ = x.shape
    H = w_hh.shape[0] // 4
    valid = _step_mask(lengths, T, B)
    x_hat, x_rstd = _layer_norm(x @ w_ih.T)
    xa = g_ih * x_hat
    if b_ih is not None:
        xa += b_ih + b_hh
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prev, c_prev, c_hat, tanh_c = (np.empty_like(y) for _ in range(4))
    gates, hw_hat = np.empty((T, B, 4 * H), x.dtype), np.empty((T, B, 4 * H), x.dtype)
    hw_rstd, c_rstd = np.empty((T, B, 1), x.dtype), np.empty((T, B, 1), x.dtype)
    h, c = h0.copy(), c0.copy()
    for t in _time_steps(T, reverse):
        h_prev[t], c_prev[t] = h, c
        hw_hat[t], hw_rstd[t] = _layer_norm(h @ w_hh.T)
        pre = xa[t] + g_hh * hw_hat[t]
        i = sigmoid(pre[:, :H])
        f = sigmoid(pre[:, H:2 * H])
        g = np.tanh(pre[:, 2 * H:3 * H])
        o = sigmoid(pre[:, 3 * H:])
        c_new = f * c + i * g
        c_hat[t], c_rstd[t] = _layer_norm(c_new)
        tanh_c[t] = np.tanh(g_c * c_hat[t] + b_c)
        h_new = o * tanh_c[t]
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        y[t] = np.where(valid[t], h_new, 0)
        h = np.where(valid[t], h_new, h)
        c = np.where(valid[t], c_new, c)
    if not training:
        return y, (h, c), None
    base = _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, h_prev, gates,
                  c_prev=c_prev, tanh_c=tanh_c)
    return y, (h, c), _NormSaved(base, norms, x_hat, x_rstd, hw_hat, hw_rstd, c_hat, c_rstd)


def ln_lstm_backward(cell: Cell, dy, dstates, ctx: _NormSaved):
    """Returns dx, (dh0, dc0), dw_ih, dw_hh, db_ih, db_hh, None, (d g_ih, d g_hh, d g_c,
    d b_c)."""
    base = ctx.base
    g_ih, g_hh, g_c, b_c = ctx.norms
    dh_n, dc_n = dstates
    T = dy.shape[0]
    H = dh_n.shape[1]
    d_a = np.zeros_like(base.act)  # d(pre-activations)
    d_hw = np.zeros_like(base.act)  # d(h W_hh^T)
    d_cn = np.zeros_like(dy)  # d(g_c norm(c') + b_c)
    dh, dc = dh_n.copy(), dc_n.copy()
    for t in reversed(_time_steps(T, base.reverse)):
        valid = base.valid[t]
        i, f, g, o = (base.act[t, :, k * H:(k + 1) * H] for k in range(4))
        tc = base.tanh_c[t]
        d_out = dh + dy[t]
        d_cn[t] = np.where(valid, d_out * o * (1 - tc * tc), 0)
        dc_new = dc + _layer_norm_backward(d_cn[t] * g_c, ctx.c_hat[t], ctx.c_rstd[t])
        d_a[t] = np.where(valid, np.concatenate([
            dc_new * g * i * (1 - i),
            dc_new * base.c_prev[t] * f * (1 - f),
            dc_new * i * (1 - g * g),
            d_out * tc * o * (1 - o),
        ], axis=1), 0)
        d_hw[t] = _layer_norm_backward(d_a[t] * g_hh, ctx.hw_hat[t], ctx.hw_rstd[t])
        dh = np.where(valid, d_hw[t] @ base.w_hh, dh)
        dc = np.where(valid, dc_new * f, dc)
    dx, dw_ih, dw_hh, d_g_ih = _norm_input_grads(ctx, d_a, d_hw)
    dnorms = (d_g_ih, (d_a * ctx.hw_hat).sum(axis=(0, 1)),
              (d_cn * ctx.c_hat).sum(axis=(0, 1)), d_cn.sum(axis=(0, 1)))
    db = d_a.sum(axis=(0, 1)) if base.has_bias else None
    return dx, (dh, dc), dw_ih, dw_hh, db, None if db is None else db.copy(), None, dnorms


def ln_gru_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                   reverse, training):
    """gi = g_ih norm(x W_ih^T) + b_ih; gh = g_hh norm(h W_hh^T) + b_hh; then PyTorch's GRU:
    r, z = sigmoid(gi + gh); n = tanh(gi_n + r gh_n); h' = (1 - z) n + z h."""
    g_ih, g_hh = norms
    (h0,) = states
    T, B, _ = x.shape
    H = w_hh.shape[0] // 3
    valid = _step_mask(lengths, T, B)
    x_hat, x_rstd = _layer_norm(x @ w_ih.T)
    gi = g_ih * x_hat
    if b_ih is not None:
        gi += b_ih
    y = np.zeros((T, B, H), dtype=x.dtype)
    h_prev, hw_n = np.empty_like(y), np.empty_like(y)
    gates, hw_hat = np.empty((T, B, 3 * H), x.dtype), np.empty((T, B, 3 * H), x.dtype)
    hw_rstd = np.empty((T, B, 1), x.dtype)
    h = h0.copy()
    for t in _time_steps(T, reverse):
        h_prev[t] = h
        hw_hat[t], hw_rstd[t] = _layer_norm(h @ w_hh.T)
        gh = g_hh * hw_hat[t]
        if b_hh is not None:
            gh += b_hh
        r = sigmoid(gi[t, :, :H] + gh[:, :H])
        z = sigmoid(gi[t, :, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[t, :, 2 * H:] + r * gh[:, 2 * H:])
        h_new = (1 - z) * n + z * h
        gates[t] = np.concatenate([r, z, n], axis=1)
        hw_n[t] = gh[:, 2 * H:]
        y[t] = np.where(valid[t], h_new, 0)
        h = np.where(valid[t], h_new, h)
    if not training:
        return y, (h,), None
    base = _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, h_prev, gates, hw_n=hw_n)
    return y, (h,), _NormSaved(base, norms, x_hat, x_rstd, hw_hat, hw_rstd)


def ln_gru_backward(cell: Cell, dy, dstates, ctx: _NormSaved):
    """Returns dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh, None, (d g_ih, d g_hh)."""
    base = ctx.base
    g_hh = ctx.norms[1]
    (dh_n,) = dstates
    T = dy.shape[0]
    H = dh_n.shape[1]
    d_gi = np.zeros_like(base.act)  # d(gi)
    d_gh = np.zeros_like(base.act)  # d(gh)
    d_hw = np.zeros_like(base.act)  # d(h W_hh^T)
    dh = dh_n.copy()
    for t in reversed(_time_steps(T, base.reverse)):
        valid = base.valid[t]
        dh_new = dh + dy[t]
        d_gi[t], d_gh[t] = _gru_gate_grads(base, t, dh_new, valid)
        d_hw[t] = _layer_norm_backward(d_gh[t] * g_hh, ctx.hw_hat[t], ctx.hw_rstd[t])
        dh = np.where(valid, dh_new * base.act[t, :, H:2 * H] + d_hw[t] @ base.w_hh, dh)
    dx, dw_ih, dw_hh, d_g_ih = _norm_input_grads(ctx, d_gi, d_hw)
    dnorms = (d_g_ih, (d_gh * ctx.hw_hat).sum(axis=(0, 1)))
    db_ih = d_gi.sum(axis=(0, 1)) if base.has_bias else None
    db_hh = d_gh.sum(axis=(0, 1)) if base.has_bias else None
    return dx, (dh,), dw_ih, dw_hh, db_ih, db_hh, None, dnorms


# --------------------------------------------------------------------------------------------
# Jordan network: u = act(W_ih x + b_ih + W_yh y_prev + b_yh); y = act_y(W_hy u + b_hy)
# (kernel arguments: w_hh = W_yh [H,O], w_hr = W_hy [O,H], norms = (b_hy,)); y is the state
# --------------------------------------------------------------------------------------------


def _output_act(name: str, a: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return np.tanh(a)
    if name == "sigmoid":
        return sigmoid(a)
    return a


def _output_act_grad(name: str, y: np.ndarray) -> np.ndarray:
    """d act_y / d a, from the output y = act_y(a)."""
    if name == "tanh":
        return 1 - y * y
    if name == "sigmoid":
        return y * (1 - y)
    return np.ones_like(y)


@dataclass
class _JordanSaved:
    base: _Saved  # act: the hidden layer's activation derivative
    hidden: np.ndarray  # u [T,B,H]
    d_out: np.ndarray  # act_y'(a) [T,B,O]
    w_hr: np.ndarray
    has_b_hr: bool


def jordan_forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                   reverse, training):
    """Returns y[T,B,O], (y_n[B,O],), ctx (None when not training)."""
    (y0,) = states
    b_hr = norms[0] if norms else None
    T, B, _ = x.shape
    H, O = w_hh.shape[0], w_hr.shape[0]
    valid = _step_mask(lengths, T, B)
    xw = _input_projection(x, w_ih, _bias_sum(b_ih, b_hh))
    y = np.zeros((T, B, O), dtype=x.dtype)
    y_prev = np.empty_like(y)
    hidden = np.zeros((T, B, H), dtype=x.dtype)
    dact, d_out = np.empty_like(hidden), np.empty_like(y)
    state = y0.copy()
    for t in _time_steps(T, reverse):
        y_prev[t] = state
        pre = xw[t] + state @ w_hh.T
        if cell.relu:
            u = np.maximum(pre, 0)
            dact[t] = pre > 0
        else:
            u = np.tanh(pre)
            dact[t] = 1 - u * u
        a = u @ w_hr.T
        if b_hr is not None:
            a += b_hr
        out = _output_act(cell.output_act, a)
        d_out[t] = _output_act_grad(cell.output_act, out)
        hidden[t] = u
        y[t] = np.where(valid[t], out, 0)
        state = np.where(valid[t], out, state)
    if not training:
        return y, (state,), None
    base = _Saved(x, w_ih, w_hh, b_ih is not None, reverse, valid, y_prev, dact)
    return y, (state,), _JordanSaved(base, hidden, d_out, w_hr, b_hr is not None)


def jordan_backward(cell: Cell, dy, dstates, ctx: _JordanSaved):
    """Returns dx, (dy0,), dw_ih, dw_yh, db_ih, db_yh, dw_hy, (db_hy,) (() without bias)."""
    (dy_n,) = dstates
    base = ctx.base
    T = dy.shape[0]
    d_a = np.zeros((T, *dy_n.shape), dtype=dy.dtype)  # gradient of W_hy u + b_hy
    dpre = np.zeros((T, dy.shape[1], ctx.hidden.shape[2]), dtype=dy.dtype)
    d_state = dy_n.copy()
    for t in reversed(_time_steps(T, base.reverse)):
        valid = base.valid[t]
        d_a[t] = np.where(valid, (d_state + dy[t]) * ctx.d_out[t], 0)
        dpre[t] = (d_a[t] @ ctx.w_hr) * base.act[t]
        d_state = np.where(valid, dpre[t] @ base.w_hh, d_state)
    dx, dw_ih, dw_hh, db_ih, db_hh = _parameter_grads(base, dpre, dpre)
    dw_hr = d_a.reshape(-1, d_a.shape[2]).T @ ctx.hidden.reshape(-1, ctx.hidden.shape[2])
    dnorms = (d_a.sum(axis=(0, 1)),) if ctx.has_b_hr else ()
    return dx, (d_state,), dw_ih, dw_hh, db_ih, db_hh, dw_hr, dnorms


# --------------------------------------------------------------------------------------------
# The contract's entry points
# --------------------------------------------------------------------------------------------

#: cell.loop -> (forward, backward)
LOOPS = {"rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward),
         "gru": (gru_forward, gru_backward), "ln_lstm": (ln_lstm_forward, ln_lstm_backward),
         "ln_gru": (ln_gru_forward, ln_gru_backward),
         "jordan": (jordan_forward, jordan_backward)}


def forward(cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths, reverse,
            training):
    return LOOPS[cell.loop][0](cell, x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms, lengths,
                               reverse, training)


def backward(cell: Cell, dy, dstates, saved: _Saved):
    return LOOPS[cell.loop][1](cell, dy, dstates, saved)
