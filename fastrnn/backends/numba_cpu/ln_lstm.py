"""LayerNorm LSTM time loops (Ba et al. 2016; gates i, f, g, o):
a = xw + g_hh norm(h W_hh^T); c' = f c + i g; h' = o tanh(g_c norm(c') + b_c).

The time loops of one batch part, with the driver's signature
(:mod:`fastrnn.backends.driver`). Its rows arrive sorted longest first, so step t runs on rows
[0, active[t]). xw holds g_ih norm(x W_ih^T) + b_ih + b_hh for every step (the driver's);
norms = (g_hh [4H], g_c [H], b_c [H]). Each row's LayerNorms are fused into its gate pass:
the statistics of the row's recurrent product, then the gates and c', then c''s statistics
and h'. buffers = (gates [i, f, g, o], c_prev, hw_hat = norm(h W_hh^T), c_hat = norm(c'),
tanh_c = tanh(g_c c_hat + b_c), rstd [1/std of h W_hh^T, of c']). In inference the per-step
buffers have one time slot that every step overwrites.
"""


import numpy as np

from ._common import (
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
    """Runs the layer; h, c [B,H] enter as h0, c0 and leave as h_n, c_n (b_rec, w_hr, relu:
    unused)."""
    T, B, G = xw.shape
    H = G // 4
    g_hh, g_c, b_c = norms
    gates, c_prev, hw_hat, c_hat, tanh_c, rstd = buffers
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
            c_prev[k, :n] = c[:n]
        matmul_wt(h, w_hh, hw, n)
        for b in range(n):
            mean, r = row_stats(hw[b], one)
            for j in range(G):
                u = (hw[b, j] - mean) * r
                hw_hat[k, b, j] = u
                hw[b, j] = xw[t, b, j] + g_hh[j] * u  # the pre-activation
            for j in range(H):
                i = sigmoid(hw[b, j])
                f = sigmoid(hw[b, H + j])
                g = tanh(hw[b, 2 * H + j])
                gates[k, b, j] = i
                gates[k, b, H + j] = f
                gates[k, b, 2 * H + j] = g
                gates[k, b, 3 * H + j] = sigmoid(hw[b, 3 * H + j])
                c[b, j] = f * c[b, j] + i * g
            mean_c, rc = row_stats(c[b], one)
            for j in range(H):
                u = (c[b, j] - mean_c) * rc
                tc = tanh(g_c[j] * u + b_c[j])
                c_hat[k, b, j] = u
                tanh_c[k, b, j] = tc
                h[b, j] = gates[k, b, 3 * H + j] * tc
            rstd[k, b, 0] = r
            rstd[k, b, 1] = rc
        y[t, :n] = h[:n]


@jit
def backward(dy, dh, dc, w_hh, w_hr, norms, active, reverse, relu, h_prev, buffers, dg_in,
             dg_rec, dh_out, grads):
    """BPTT of :func:`forward`; dh, dc enter as dh_n, dc_n and leave as dh0, dc0.

    Writes dg_in [T,B,4H] (= dg_rec: the gradient of the pre-activations a) and grads =
    (d_hw [T,B,4H], the gradient of h W_hh^T; d_cn [T,B,H], that of g_c norm(c') + b_c),
    untouched where inactive (w_hr, relu, h_prev, dh_out: unused).
    """
    T, B, H = dy.shape
    g_hh, g_c, _ = norms
    gates, c_prev, hw_hat, c_hat, tanh_c, rstd = buffers
    d_hw, d_cn = grads
    one = one_like(dy[0, 0, 0])
    d_c = np.empty(H, dy.dtype)  # d c' through norm(c')
    for s in range(T):
        t = s if reverse else T - 1 - s
        n = active[t]
        if n == 0:
            continue
        for b in range(n):
            # d(g_c norm(c') + b_c) through tanh and o, then LayerNorm's backward
            for j in range(H):
                tc = tanh_c[t, b, j]
                d_cn[t, b, j] = (dh[b, j] + dy[t, b, j]) * gates[t, b, 3 * H + j] * (one - tc * tc)
            row_norm_grad(d_cn[t, b], g_c, c_hat[t, b], rstd[t, b, 1], d_c, one)
            for j in range(H):
                i = gates[t, b, j]
                f = gates[t, b, H + j]
                g = gates[t, b, 2 * H + j]
                o = gates[t, b, 3 * H + j]
                dc_new = dc[b, j] + d_c[j]
                dg_in[t, b, j] = dc_new * g * i * (one - i)
                dg_in[t, b, H + j] = dc_new * c_prev[t, b, j] * f * (one - f)
                dg_in[t, b, 2 * H + j] = dc_new * i * (one - g * g)
                dg_in[t, b, 3 * H + j] = (dh[b, j] + dy[t, b, j]) * tanh_c[t, b, j] * o * (one - o)
                dc[b, j] = dc_new * f
            # d(h W_hh^T): LayerNorm's backward of d norm = da * g_hh
            row_norm_grad(dg_in[t, b], g_hh, hw_hat[t, b], rstd[t, b, 0], d_hw[t, b], one)
        matmul_w(d_hw[t], w_hh, dh, n)
