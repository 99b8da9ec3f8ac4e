"""LayerNorm GRU time loops: gi = xw; gh = g_hh norm(h W_hh^T) + b_hh; then PyTorch's GRU:
r, z = sigmoid(gi + gh); n = tanh(gi_n + r gh_n); h' = (1 - z) n + z h.

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). Its rows arrive sorted longest first, so step t runs on rows
[0, active[t]). xw holds g_ih norm(x W_ih^T) + b_ih for every step (the driver's); b_rec is
b_hh (zeros without bias); norms = (g_hh [3H],). Each row's LayerNorm is fused into its gate
pass. buffers = (gates [r, z, n], hw_n = gh's n block, hw_hat = norm(h W_hh^T), rstd [its
1/std]). In inference the per-step buffers have one time slot that every step overwrites.
"""


import numpy as np

from ._common import (
    gru_row_grads,
    jit,
    matmul_w,
    matmul_wt,
    one_like,
    row_norm_grad,
    row_stats,
    sigmoid,
    tanh,
)


@jit
def forward(xw, w_hh, b_rec, w_hr, norms, h, c, active, reverse, training, relu, y, h_prev,
            buffers):
    """Runs the layer; h [B,H] enters as h0 and leaves as h_n (w_hr, c, relu: unused)."""
    T, B, G = xw.shape
    H = G // 3
    g_hh = norms[0]
    gates, hw_n, hw_hat, rstd = buffers
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
            mean, r = row_stats(hw[b], one)
            rstd[k, b, 0] = r
            for j in range(G):
                u = (hw[b, j] - mean) * r
                hw_hat[k, b, j] = u
                hw[b, j] = g_hh[j] * u + b_rec[j]  # gh
            for j in range(H):
                rg = sigmoid(xw[t, b, j] + hw[b, j])
                z = sigmoid(xw[t, b, H + j] + hw[b, H + j])
                hn = hw[b, 2 * H + j]
                cand = tanh(xw[t, b, 2 * H + j] + rg * hn)
                h[b, j] = (one - z) * cand + z * h[b, j]
                gates[k, b, j] = rg
                gates[k, b, H + j] = z
                gates[k, b, 2 * H + j] = cand
                hw_n[k, b, j] = hn
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh enters as dh_n and leaves as dh0.

    Writes dg_in / dg_rec [T,B,3H], the gradients of gi and gh, and grads = (d_hw [T,B,3H],
    the gradient of h W_hh^T), untouched where inactive (dc, w_hr, relu, dh_out: unused).
    """
    T, B, H = dy.shape
    g_hh = norms[0]
    gates, hw_n, hw_hat, rstd = buffers
    (d_hw,) = grads
    one = one_like(dy[0, 0, 0])
    direct = np.empty((B, H), dy.dtype)  # dh' * z: the path that skips the gates
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            gru_row_grads(dh, dy, t, b, gates, hw_n, h_prev, dg_in, dg_rec, direct, one)
            row_norm_grad(dg_rec[t, b], g_hh, hw_hat[t, b], rstd[t, b, 0], d_hw[t, b], one)
        matmul_w(d_hw[t], w_hh, dh, n)
        for b in range(n):
            for j in range(H):
                dh[b, j] += direct[b, j]
