"""Elman RNN kernels: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.

Arrays arrive sorted longest first (:mod:`fastrnn.backends.ragged`): step t runs on rows
[0, active[t]). In inference the per-step buffers have one time slot every step overwrites.
"""

import numpy as np

from ._common import jit, matmul_w, matmul_wt, one_like, tanh


@jit
def forward(x, w_ih, w_hh, bias, h, active, reverse, training, relu, y, h_prev, h_new):
    """Runs the layer; h [B,H] enters as h0 and leaves as h_n. h_new keeps each step's output
    for backward (the activation's derivative is a function of it)."""
    T, B, I = x.shape
    H = w_hh.shape[0]
    zero = one_like(h[0, 0]) * 0
    xw = np.empty((T, B, H), x.dtype)
    np.dot(x.reshape(T * B, I), w_ih.T, xw.reshape(T * B, H))
    hw = np.empty((B, H), x.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = active[t]
        if n == 0:
            continue
        k = t if training else 0
        if training:
            h_prev[k] = h
        matmul_wt(h, w_hh, hw, n)
        for b in range(n):
            for j in range(H):
                pre = xw[t, b, j] + hw[b, j] + bias[j]
                v = max(pre, zero) if relu else tanh(pre)
                h[b, j] = v
                h_new[k, b, j] = v
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, w_hh, active, reverse, relu, h_new, dpre):
    """BPTT of :func:`forward`; dh enters as dh_n and leaves as dh0. Writes dpre [T,B,H]."""
    T, B, H = dy.shape
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
                    dpre[t, b, j] = d if v > zero else zero
                else:
                    dpre[t, b, j] = d * (one - v * v)
        matmul_w(dpre[t], w_hh, dh, n)
