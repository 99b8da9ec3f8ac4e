"""GRU time loops (PyTorch's): r, z = sigmoid(...); n = tanh(W_in x + b_in + r (W_hn h + b_hn));
h' = (1 - z) n + z h.

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). Its rows arrive sorted longest first, so step t runs on rows
[0, active[t]). xw holds x @ w_ih^T + b_ih for every step (one GEMM, done by the driver);
b_rec is b_hh, added to the recurrent product inside the loop (r scales W_hn h + b_hn).
buffers = (gates [r, z, n], hw_n = W_hn h + b_hn). In inference the per-step buffers have one
time slot that every step overwrites.
"""

import numpy as np

from ._common import gru_row_grads, jit, matmul_w, matmul_wt, one_like, sigmoid, tanh


@jit
def forward(xw, w_hh, b_rec, w_hr, norms, h, c, active, reverse, training, relu, y, h_prev,
            buffers):
    """Runs the layer; h [B,H] enters as h0 and leaves as h_n (w_hr, norms, c, relu: unused)."""
    T, B, G = xw.shape
    H = G // 3
    gates, hw_n = buffers
    one = one_like(h[0, 0])
    hw = np.empty((B, G), xw.dtype)
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
                r = sigmoid(xw[t, b, j] + hw[b, j] + b_rec[j])
                z = sigmoid(xw[t, b, H + j] + hw[b, H + j] + b_rec[H + j])
                hn = hw[b, 2 * H + j] + b_rec[2 * H + j]
                cand = tanh(xw[t, b, 2 * H + j] + r * hn)
                h[b, j] = (one - z) * cand + z * h[b, j]
                gates[k, b, j] = r
                gates[k, b, H + j] = z
                gates[k, b, 2 * H + j] = cand
                hw_n[k, b, j] = hn
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh enters as dh_n and leaves as dh0.

    Writes dg_in / dg_rec [T,B,3H], the gradients of the input-side and recurrent-side
    pre-activations (they differ in the candidate gate, scaled by r on the recurrent side).
    """
    T, B, H = dy.shape
    gates, hw_n = buffers
    one = one_like(dy[0, 0, 0])
    direct = np.empty((B, H), dy.dtype)  # dh' * z: the path that skips the gates
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            gru_row_grads(dh, dy, t, b, gates, hw_n, h_prev, dg_in, dg_rec, direct, one)
        matmul_w(dg_rec[t], w_hh, dh, n)
        for b in range(n):
            for j in range(H):
                dh[b, j] += direct[b, j]
