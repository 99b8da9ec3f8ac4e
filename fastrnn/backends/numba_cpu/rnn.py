"""Elman RNN kernels: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu.

The time loop of one batch part. Its rows arrive sorted longest first
(:mod:`fastrnn.backends.ragged`), so step t runs on rows [0, active[t]). xw holds
x @ w_ih^T for every step (one GEMM, done by the caller). In inference the per-step buffers
have one time slot that every step overwrites.
"""

import numpy as np

from ._common import jit, matmul_w, matmul_wt, one_like, tanh


@jit
def forward(xw, w_hh, bias, h, active, reverse, training, relu, y, h_prev, h_new):
    """Runs the layer; h [B,H] enters as h0 and leaves as h_n. h_new keeps
    each step's output for backward (the activation's derivative is a function of it)."""
    T, B, H = xw.shape
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
                pre = xw[t, b, j] + hw[b, j] + bias[j]
                v = max(pre, zero) if relu else tanh(pre)
                h[b, j] = v
                h_new[k, b, j] = v
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, w_hh, active, reverse, relu, h_new, dpre):
    """BPTT of :func:`forward`; dh enters as dh_n and leaves as dh0.
    Writes dpre [T,B,H], the gradient of the pre-activations."""
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
