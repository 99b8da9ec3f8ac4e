"""numba.cuda kernels of the LayerNorm cells and of the device products' row LayerNorm.

One block per sequence (or per row), its threads striding over the row's units: a row's
statistics are block reductions in shared memory (:func:`block_sum`), fused with the gate
pass as in the CPU loops. The recurrent product of a step runs before (the tiled ``gemm``)
and the recurrent gradient after (``recurrent_grad_step``) as for the other cells; a sequence
that has ended keeps its state. Blocks have a power-of-two number of threads, at most
:data:`MAX_THREADS`. `one` is 1 in the arrays' dtype, so float32 arithmetic stays float32.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from ...cells import LAYER_NORM_EPS
from .kernels import gru_unit, gru_unit_grads, sigmoid, step_of

#: threads per block of these kernels (a power of two)
MAX_THREADS = 128


def threads_for(width: int) -> int:
    """The block size for rows of `width`: the smallest power of two >= width, at most
    :data:`MAX_THREADS` (wider rows are strided)."""
    n = 1
    while n < min(width, MAX_THREADS):
        n *= 2
    return n


@cuda.jit(device=True, inline=True)
def block_sum(value, red):
    """The sum of `value` over the block's threads; every thread must call it. red: shared
    [MAX_THREADS] scratch."""
    j = cuda.threadIdx.x
    red[j] = value
    cuda.syncthreads()
    width = cuda.blockDim.x // 2
    while width > 0:
        if j < width:
            red[j] += red[j + width]
        cuda.syncthreads()
        width //= 2
    total = red[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True, inline=True)
def row_stats(v, r, N, red, one):
    """(mean, 1/std) of row r of v [R,N] over the block, in v's dtype: two passes, so no
    cancellation, summed in float64 (red: float64 scratch), so a float32 row of values up to
    3e38 (squares past float32's range) keeps its statistics, as on the CPU backends."""
    part = 0.0
    for j in range(cuda.threadIdx.x, N, cuda.blockDim.x):
        part += v[r, j]
    mean = block_sum(part, red) / N
    part = 0.0
    for j in range(cuda.threadIdx.x, N, cuda.blockDim.x):
        d = v[r, j] - mean
        part += d * d
    return mean, 1.0 / math.sqrt(block_sum(part, red) / N + LAYER_NORM_EPS)


@cuda.jit
def row_norm(a, gain, shift1, has1, shift2, has2, one, out, hat, rstd):
    """Block r: hat[r] = norm(a[r]), out[r] = gain * hat[r] (+ shift1) (+ shift2), rstd[r, 0]
    = 1/std. a, out, hat [R,N]; rstd [R,1]."""
    red = cuda.shared.array(MAX_THREADS, dtype=float64)  # statistics in float64
    r, N = cuda.blockIdx.x, a.shape[1]
    mean, s = row_stats(a, r, N, red, one)
    for j in range(cuda.threadIdx.x, N, cuda.blockDim.x):
        u = (a[r, j] - mean) * s
        hat[r, j] = u
        v = gain[j] * u
        if has1:
            v += shift1[j]
        if has2:
            v += shift2[j]
        out[r, j] = v
    if cuda.threadIdx.x == 0:
        rstd[r, 0] = s


@cuda.jit
def row_norm_backward(d_out, gain, hat, rstd, one, d_in):
    """Block r: d_in[r] = rstd (d - mean(d) - hat mean(d hat)) for d = d_out[r] * gain."""
    red = cuda.shared.array(MAX_THREADS, dtype=d_out.dtype)
    r, N = cuda.blockIdx.x, d_out.shape[1]
    p1, p2 = one * 0, one * 0
    for j in range(cuda.threadIdx.x, N, cuda.blockDim.x):
        d = d_out[r, j] * gain[j]
        p1 += d
        p2 += d * hat[r, j]
    md, mq = block_sum(p1, red) / N, block_sum(p2, red) / N
    for j in range(cuda.threadIdx.x, N, cuda.blockDim.x):
        d_in[r, j] = rstd[r, 0] * (d_out[r, j] * gain[j] - md - hat[r, j] * mq)


@cuda.jit(device=True, inline=True)
def product_norm_grad(p1, p2, red, d_post, t, b, g_hh, hw_hat, r, d_hw, dgw):
    """The recurrent product's LayerNorm backward for sequence b at step t: p1, p2 are this
    thread's shares of sum(d) and sum(d hat) for d = d_post * g_hh; writes d(h W_hh^T) to
    d_hw[t, b] and dgw[b] (which recurrent_grad_step multiplies by w_hh)."""
    G = d_hw.shape[2]
    md, mq = block_sum(p1, red) / G, block_sum(p2, red) / G
    for j in range(cuda.threadIdx.x, G, cuda.blockDim.x):
        v = r * (d_post[t, b, j] * g_hh[j] - md - hw_hat[t, b, j] * mq)
        d_hw[t, b, j] = v
        dgw[b, j] = v


# ------------------------------------------------------------------------------ LayerNorm LSTM


@cuda.jit
def ln_lstm_step(s, xw, hw, g_hh, g_c, b_c, h, c, lengths, reverse, training, one,
                 y, h_next, h_prev, gates, c_prev, hw_hat, c_hat, tanh_c, rstd):
    """Step s of sequence b = block: hw [B,4H] holds h @ w_hh.T; normalised, scaled by g_hh
    and added to xw[t] (biases included), then the gates, c in place, c's norm and h_next."""
    red = cuda.shared.array(MAX_THREADS, dtype=float64)  # statistics in float64
    b, j0, NT = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    H = c.shape[1]
    n = lengths[b]
    if s >= n:  # the whole block leaves: no barrier is left waiting
        for j in range(j0, H, NT):
            h_next[b, j] = h[b, j]
        return
    t = step_of(s, n, reverse)
    mean, r = row_stats(hw, b, 4 * H, red, one)
    part = 0.0  # c's statistics in float64 too
    for j in range(j0, H, NT):
        u_i = (hw[b, j] - mean) * r
        u_f = (hw[b, H + j] - mean) * r
        u_g = (hw[b, 2 * H + j] - mean) * r
        u_o = (hw[b, 3 * H + j] - mean) * r
        i = sigmoid(xw[t, b, j] + g_hh[j] * u_i, one)
        f = sigmoid(xw[t, b, H + j] + g_hh[H + j] * u_f, one)
        g = math.tanh(xw[t, b, 2 * H + j] + g_hh[2 * H + j] * u_g)
        o = sigmoid(xw[t, b, 3 * H + j] + g_hh[3 * H + j] * u_o, one)
        cn = f * c[b, j] + i * g
        if training:
            h_prev[t, b, j] = h[b, j]
            c_prev[t, b, j] = c[b, j]
            gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = i, f, g
            gates[t, b, 3 * H + j] = o
            hw_hat[t, b, j], hw_hat[t, b, H + j] = u_i, u_f
            hw_hat[t, b, 2 * H + j], hw_hat[t, b, 3 * H + j] = u_g, u_o
        c[b, j] = cn
        h_next[b, j] = o  # o until c's statistics are known
        part += cn
    mean_c = block_sum(part, red) / H
    part = 0.0
    for j in range(j0, H, NT):
        d = c[b, j] - mean_c
        part += d * d
    rc = 1.0 / math.sqrt(block_sum(part, red) / H + LAYER_NORM_EPS)
    for j in range(j0, H, NT):
        ch = (c[b, j] - mean_c) * rc
        tc = math.tanh(g_c[j] * ch + b_c[j])
        hn = h_next[b, j] * tc
        h_next[b, j] = hn
        y[t, b, j] = hn
        if training:
            c_hat[t, b, j] = ch
            tanh_c[t, b, j] = tc
    if training and j0 == 0:
        rstd[t, b, 0] = r
        rstd[t, b, 1] = rc


@cuda.jit
def ln_lstm_grad_step(s, dy, dh, dc, g_hh, g_c, lengths, reverse, one, gates, c_prev,
                      hw_hat, c_hat, tanh_c, rstd, dg_in, d_hw, d_cn, dgw):
    """Backward step s of sequence b = block (the forward's steps, last first): through h's
    c-norm, the gates (into dg_in[t]; dc in place) and the recurrent product's norm (into
    d_hw[t] and dgw [B,4H], which recurrent_grad_step multiplies by w_hh)."""
    red = cuda.shared.array(MAX_THREADS, dtype=dy.dtype)
    b, j0, NT = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    H = dc.shape[1]
    n = lengths[b]
    if s >= n:
        return
    t = step_of(n - 1 - s, n, reverse)
    p1, p2 = one * 0, one * 0
    for j in range(j0, H, NT):
        tc = tanh_c[t, b, j]
        dn = (dh[b, j] + dy[t, b, j]) * gates[t, b, 3 * H + j] * (one - tc * tc)
        d_cn[t, b, j] = dn
        p1 += dn * g_c[j]
        p2 += dn * g_c[j] * c_hat[t, b, j]
    md, mq = block_sum(p1, red) / H, block_sum(p2, red) / H
    rc = rstd[t, b, 1]
    p1, p2 = one * 0, one * 0
    for j in range(j0, H, NT):
        i, f = gates[t, b, j], gates[t, b, H + j]
        g, o = gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
        dcn = dc[b, j] + rc * (d_cn[t, b, j] * g_c[j] - md - c_hat[t, b, j] * mq)
        dg_in[t, b, j] = dcn * g * i * (one - i)
        dg_in[t, b, H + j] = dcn * c_prev[t, b, j] * f * (one - f)
        dg_in[t, b, 2 * H + j] = dcn * i * (one - g * g)
        dg_in[t, b, 3 * H + j] = (dh[b, j] + dy[t, b, j]) * tanh_c[t, b, j] * o * (one - o)
        dc[b, j] = dcn * f
        for k in range(4):
            d = dg_in[t, b, k * H + j] * g_hh[k * H + j]
            p1 += d
            p2 += d * hw_hat[t, b, k * H + j]
    product_norm_grad(p1, p2, red, dg_in, t, b, g_hh, hw_hat, rstd[t, b, 0], d_hw, dgw)


# ------------------------------------------------------------------------------ LayerNorm GRU


@cuda.jit
def ln_gru_step(s, xw, hw, g_hh, b_hh, h, lengths, reverse, training, one,
                y, h_next, h_prev, gates, hw_n, hw_hat, rstd):
    """Step s of sequence b = block: gh = g_hh norm(hw[b]) + b_hh (hw = h @ w_hh.T), then
    the GRU's gates on xw[t] (b_ih included) and gh."""
    red = cuda.shared.array(MAX_THREADS, dtype=float64)  # statistics in float64
    b, j0, NT = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    H = h.shape[1]
    n = lengths[b]
    if s >= n:
        for j in range(j0, H, NT):
            h_next[b, j] = h[b, j]
        return
    t = step_of(s, n, reverse)
    mean, r = row_stats(hw, b, 3 * H, red, one)
    for j in range(j0, H, NT):
        u_r = (hw[b, j] - mean) * r
        u_z = (hw[b, H + j] - mean) * r
        u_n = (hw[b, 2 * H + j] - mean) * r
        gh_n = g_hh[2 * H + j] * u_n + b_hh[2 * H + j]
        rg, z, cand, hn = gru_unit(xw, t, b, j, H, g_hh[j] * u_r + b_hh[j],
                                   g_hh[H + j] * u_z + b_hh[H + j], gh_n, h[b, j], one)
        if training:
            h_prev[t, b, j] = h[b, j]
            gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = rg, z, cand
            hw_n[t, b, j] = gh_n
            hw_hat[t, b, j], hw_hat[t, b, H + j], hw_hat[t, b, 2 * H + j] = u_r, u_z, u_n
        h_next[b, j] = hn
        y[t, b, j] = hn
    if training and j0 == 0:
        rstd[t, b, 0] = r


@cuda.jit
def ln_gru_grad_step(s, dy, dh, g_hh, lengths, reverse, one, h_prev, gates, hw_n, hw_hat,
                     rstd, dg_in, dg_rec, d_hw, dgw, direct):
    """Backward step s of sequence b = block: the GRU's gate gradients (dg_in[t], dg_rec[t]
    = d gh, direct = dh' z), then gh's norm backward into d_hw[t] and dgw [B,3H]."""
    red = cuda.shared.array(MAX_THREADS, dtype=dy.dtype)
    b, j0, NT = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    H = dh.shape[1]
    n = lengths[b]
    if s >= n:
        return
    t = step_of(n - 1 - s, n, reverse)
    p1, p2 = one * 0, one * 0
    for j in range(j0, H, NT):
        rg, z, cand = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
        dr, dz, dn, dd = gru_unit_grads(dh[b, j] + dy[t, b, j], rg, z, cand,
                                        h_prev[t, b, j], hw_n[t, b, j], one)
        dg_in[t, b, j], dg_in[t, b, H + j], dg_in[t, b, 2 * H + j] = dr, dz, dn
        dg_rec[t, b, j], dg_rec[t, b, H + j], dg_rec[t, b, 2 * H + j] = dr, dz, dn * rg
        direct[b, j] = dd
        for k in range(3):
            d = dg_rec[t, b, k * H + j] * g_hh[k * H + j]
            p1 += d
            p2 += d * hw_hat[t, b, k * H + j]
    product_norm_grad(p1, p2, red, dg_rec, t, b, g_hh, hw_hat, rstd[t, b, 0], d_hw, dgw)
