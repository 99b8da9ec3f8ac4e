"""Elman RNN time loops: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). Its rows arrive sorted longest first, so step t runs on rows
[0, active[t]). xw holds x @ w_ih^T + b_ih + b_hh for every step (one GEMM, done by the
driver). buffers = (h_new,): each step's output, whose activation derivative backward needs.
In inference the per-step buffers have one time slot that every step overwrites.
"""

import numpy as np

from ._common import jit, matmul_w, matmul_wt, one_like, tanh


@jit
def forward(xw, w_hh, b_rec, w_hr, norms, h, c, active, reverse, training, relu, y, h_prev,
            buffers):
    """Runs the layer; h [B,H] enters as h0 and leaves as h_n (b_rec, w_hr, norms, c: unused)."""
    T, B, H = xw.shape
    (h_new,) = buffers
    zero = one_like(h[0, 0]) * 0
    hw = np.empty((B, H), xw.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = active[t]
        if n == 0:
            continue
        k = t if training else 0
        if training:
            h_prev[k, :n] = h[:n]
        matmul_wt(h, w_hh, hw, n)
        for b in range(n):
            for j in range(H):
                pre = xw[t, b, j] + hw[b, j]
                v = (zero if pre < zero else pre) if relu else tanh(pre)  # NaN stays
                h[b, j] = v
                h_new[k, b, j] = v
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh enters as dh_n and leaves as dh0. Writes dg_in [T,B,H]
    (= dg_rec), the gradient of the pre-activations (dc, w_hr, norms, h_prev, dh_out, grads:
    unused)."""
    T, B, H = dy.shape
    (h_new,) = buffers
    one = one_like(dy[0, 0, 0])
    zero = one - one
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            for j in range(H):
                d = dh[b, j] + dy[t, b, j]
                v = h_new[t, b, j]
                if relu:
                    dg_in[t, b, j] = d * (one if v > zero else zero)  # NaN d stays
                else:
                    dg_in[t, b, j] = d * (one - v * v)
        matmul_w(dg_in[t], w_hh, dh, n)
