"""LSTM kernels (PyTorch's gates i, f, g, o; optional projection h = W_hr (o * tanh c)).

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). Its rows arrive sorted longest first, so step t runs on rows
[0, active[t]). xw holds x @ w_ih^T + b_ih + b_hh for every step (one GEMM, done by the
driver). buffers = (gates [i, f, g, o], c_prev, tanh_c); w_hr has 0 rows without projection.
In inference the per-step buffers have one time slot that every step overwrites.
"""

import numpy as np

from ._common import jit, lstm_row, lstm_row_grads, matmul_w, matmul_wt, one_like


@jit
def forward(xw, w_hh, b_rec, w_hr, norms, h, c, active, reverse, training, relu, y, h_prev,
            buffers):
    """Runs the layer; h [B,Hp] and c [B,H] enter as h0, c0, leave as h_n, c_n (b_rec, norms,
    relu: unused)."""
    T, B, G = xw.shape
    gates, c_prev, tanh_c = buffers
    H = G // 4
    proj = w_hr.shape[0] > 0
    hw = np.empty((B, G), xw.dtype)
    m = np.empty((B, H), xw.dtype)  # o * tanh(c), the (unprojected) output
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = active[t]
        if n == 0:
            continue
        k = t if training else 0
        if training:
            h_prev[k, :n] = h[:n]
            c_prev[k, :n] = c[:n]
        matmul_wt(h, w_hh, hw, n)
        for b in range(n):
            lstm_row(xw[t, b], hw[b], c[b], m[b], gates[k, b], tanh_c[k, b], H)
        if proj:
            matmul_wt(m, w_hr, h, n)
        else:
            h[:n] = m[:n]
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh, dc enter as dh_n, dc_n, leave as dh0, dc0.

    Writes dg_in [T,B,4H] (= dg_rec: the gradient of the pre-activations; untouched where
    inactive) and dh_out [T,B,Hp] (gradient reaching each step's output, for the projection's
    gradient).
    """
    T, B, Hp = dy.shape
    gates, c_prev, tanh_c = buffers
    dgates = dg_in
    H = c_prev.shape[2]
    proj = w_hr.shape[0] > 0
    one = one_like(dy[0, 0, 0])
    dm = np.empty((B, H), dy.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            for j in range(Hp):
                dh_out[t, b, j] = dh[b, j] + dy[t, b, j]
        if proj:
            matmul_w(dh_out[t], w_hr, dm, n)
        else:
            dm[:n] = dh_out[t, :n]
        for b in range(n):
            lstm_row_grads(dm[b], gates[t, b], c_prev[t, b], tanh_c[t, b], dc[b],
                           dgates[t, b], H, one)
        matmul_w(dgates[t], w_hh, dh, n)
