"""numba.cuda kernels: a tiled GEMM for the whole-sequence products and, per cell, persistent
forward and backward kernels that run a sequence's whole time loop in one launch.

Persistent kernels: one block per sequence, one thread per hidden unit (blockDim >= H and
>= Hp), the state in shared memory, and w_hh in (dynamic) shared memory when it fits there
(``w_shared``), else read from global memory (L2). A block owns its sequence, so the only
barriers are ``syncthreads`` inside the block: no grid-wide sync, no launch per step. Each
sequence runs over its own valid steps (ragged lengths, both directions); y rows beyond a
length stay 0. `one` is 1 in the arrays' dtype, so float32 arithmetic stays float32.
"""

from __future__ import annotations

import math

from numba import config, cuda

#: GEMM tile edge; the CUDA simulator runs every thread as a Python thread, so it gets less.
TILE = 8 if config.ENABLE_CUDASIM else 16


# ------------------------------------------------------------------------------ GEMM


@cuda.jit
def gemm(a, b, c, trans_a, trans_b, zero):
    """c[M,N] = op(a) @ op(b), op = transpose when trans_*; shared-memory tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    acc = zero
    for k0 in range(0, K, TILE):
        ka, kb = k0 + tx, k0 + ty
        if row < M and ka < K:
            sa[ty, tx] = a[ka, row] if trans_a else a[row, ka]
        else:
            sa[ty, tx] = 0
        if col < N and kb < K:
            sb[ty, tx] = b[col, kb] if trans_b else b[kb, col]
        else:
            sb[ty, tx] = 0
        cuda.syncthreads()
        for k in range(TILE):
            acc += sa[ty, k] * sb[k, tx]
        cuda.syncthreads()
    if row < M and col < N:
        c[row, col] = acc


@cuda.jit
def column_sums(a, out, zero):
    """out[j] = sum over rows of a[:, j]."""
    j = cuda.grid(1)
    if j < a.shape[1]:
        s = zero
        for r in range(a.shape[0]):
            s += a[r, j]
        out[j] = s


# ------------------------------------------------------------------------------ helpers


@cuda.jit(device=True, inline=True)
def sigmoid(x, one):
    return one / (one + math.exp(-x))


@cuda.jit(device=True, inline=True)
def load_weights(w, w_sh, use_shared):
    """Copy w [R,C] into the block's shared buffer (flat) when it is used; then a barrier."""
    if use_shared:
        R, C = w.shape
        for i in range(cuda.threadIdx.x, R * C, cuda.blockDim.x):
            w_sh[i] = w[i // C, i % C]
    cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def weight(w, w_sh, use_shared, r, c):
    return w_sh[r * w.shape[1] + c] if use_shared else w[r, c]


@cuda.jit(device=True, inline=True)
def step_of(s, n, reverse):
    return n - 1 - s if reverse else s


# ------------------------------------------------------------------------------ LSTM


@cuda.jit
def lstm_forward(xw, w_hh, bias, w_hr, h0, c0, lengths, reverse, training, one, w_shared,
                 y, h_n, c_n, h_prev, gates, c_prev, tanh_c):
    """Block b runs sequence b. Thread j < H owns cell j (its c in a register); thread
    p < Hp owns output p. Shared: h [Hp] and m = o * tanh(c) [H], then w_hh when it fits."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H, Hp, P = G // 4, h0.shape[1], w_hr.shape[0]
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, m_sh, w_sh = dyn[:Hp], dyn[Hp:Hp + H], dyn[Hp + H:]
    load_weights(w_hh, w_sh, w_shared)
    if j < Hp:
        h_sh[j] = h0[b, j]
    c = c0[b, j] if j < H else one * 0
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(s, n, reverse)
        if training and j < Hp:
            h_prev[t, b, j] = h_sh[j]
        if j < H:
            if training:
                c_prev[t, b, j] = c
            a_i = xw[t, b, j] + bias[j]
            a_f = xw[t, b, H + j] + bias[H + j]
            a_g = xw[t, b, 2 * H + j] + bias[2 * H + j]
            a_o = xw[t, b, 3 * H + j] + bias[3 * H + j]
            for k in range(Hp):
                hk = h_sh[k]
                a_i += weight(w_hh, w_sh, w_shared, j, k) * hk
                a_f += weight(w_hh, w_sh, w_shared, H + j, k) * hk
                a_g += weight(w_hh, w_sh, w_shared, 2 * H + j, k) * hk
                a_o += weight(w_hh, w_sh, w_shared, 3 * H + j, k) * hk
            i, f = sigmoid(a_i, one), sigmoid(a_f, one)
            g, o = math.tanh(a_g), sigmoid(a_o, one)
            c = f * c + i * g
            tc = math.tanh(c)
            m_sh[j] = o * tc
            k_ = t if training else 0
            gates[k_, b, j], gates[k_, b, H + j] = i, f
            gates[k_, b, 2 * H + j], gates[k_, b, 3 * H + j] = g, o
            tanh_c[k_, b, j] = tc
        cuda.syncthreads()  # every thread has read h: it may change now
        if j < Hp:
            if P > 0:
                acc = one * 0
                for q in range(H):
                    acc += w_hr[j, q] * m_sh[q]
                h_sh[j] = acc
            else:
                h_sh[j] = m_sh[j]
            y[t, b, j] = h_sh[j]
        cuda.syncthreads()
    if j < Hp:
        h_n[b, j] = h_sh[j]
    if j < H:
        c_n[b, j] = c


@cuda.jit
def lstm_backward(dy, dh_n, dc_n, w_hh, w_hr, lengths, reverse, one, w_shared, gates, c_prev,
                  tanh_c, dgates, dh_out, dh0, dc0):
    """BPTT of lstm_forward, block b for sequence b. Shared: dh [Hp], d(o tanh c) [H],
    the step's gate gradients [4H], then w_hh when it fits."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H, Hp, P = G // 4, dh_n.shape[1], w_hr.shape[0]
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dm_sh = dyn[:Hp], dyn[Hp:Hp + H]
    dg_sh, w_sh = dyn[Hp + H:Hp + H + G], dyn[Hp + H + G:]
    load_weights(w_hh, w_sh, w_shared)
    if j < Hp:
        dh_sh[j] = dh_n[b, j]
    dc = dc_n[b, j] if j < H else one * 0
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(n - 1 - s, n, reverse)  # the forward's steps, last first
        if j < Hp:
            d = dh_sh[j] + dy[t, b, j]
            dh_out[t, b, j] = d
            if P == 0:
                dm_sh[j] = d
            else:
                dh_sh[j] = d
        cuda.syncthreads()
        if j < H:
            if P > 0:
                dm = one * 0
                for p in range(Hp):
                    dm += dh_sh[p] * w_hr[p, j]
            else:
                dm = dm_sh[j]
            i, f = gates[t, b, j], gates[t, b, H + j]
            g, o = gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
            tc = tanh_c[t, b, j]
            dcn = dc + dm * o * (one - tc * tc)
            dg_sh[j] = dcn * g * i * (one - i)
            dg_sh[H + j] = dcn * c_prev[t, b, j] * f * (one - f)
            dg_sh[2 * H + j] = dcn * i * (one - g * g)
            dg_sh[3 * H + j] = dm * tc * o * (one - o)
            for q in range(4):
                dgates[t, b, q * H + j] = dg_sh[q * H + j]
            dc = dcn * f
        cuda.syncthreads()
        if j < Hp:
            acc = one * 0
            for r in range(G):
                acc += dg_sh[r] * weight(w_hh, w_sh, w_shared, r, j)
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < Hp:
        dh0[b, j] = dh_sh[j]
    if j < H:
        dc0[b, j] = dc


# ------------------------------------------------------------------------------ GRU


@cuda.jit
def gru_forward(xw, w_hh, b_ih, b_hh, h0, lengths, reverse, training, one, w_shared,
                y, h_n, h_prev, gates, hw_n):
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H = G // 3
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, w_sh = dyn[:H], dyn[H:]
    load_weights(w_hh, w_sh, w_shared)
    if j < H:
        h_sh[j] = h0[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(s, n, reverse)
        h_new = one * 0
        if j < H:
            hj = h_sh[j]
            if training:
                h_prev[t, b, j] = hj
            u_r, u_z, u_n = b_hh[j], b_hh[H + j], b_hh[2 * H + j]
            for k in range(H):
                hk = h_sh[k]
                u_r += weight(w_hh, w_sh, w_shared, j, k) * hk
                u_z += weight(w_hh, w_sh, w_shared, H + j, k) * hk
                u_n += weight(w_hh, w_sh, w_shared, 2 * H + j, k) * hk
            r = sigmoid(xw[t, b, j] + b_ih[j] + u_r, one)
            z = sigmoid(xw[t, b, H + j] + b_ih[H + j] + u_z, one)
            cand = math.tanh(xw[t, b, 2 * H + j] + b_ih[2 * H + j] + r * u_n)
            h_new = (one - z) * cand + z * hj
            k_ = t if training else 0
            gates[k_, b, j], gates[k_, b, H + j], gates[k_, b, 2 * H + j] = r, z, cand
            hw_n[k_, b, j] = u_n
        cuda.syncthreads()
        if j < H:
            h_sh[j] = h_new
            y[t, b, j] = h_new
        cuda.syncthreads()
    if j < H:
        h_n[b, j] = h_sh[j]


@cuda.jit
def gru_backward(dy, dh_n, w_hh, lengths, reverse, one, w_shared, h_prev, gates, hw_n,
                 dg_in, dg_rec, dh0):
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H = G // 3
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dg_sh, w_sh = dyn[:H], dyn[H:H + G], dyn[H + G:]
    load_weights(w_hh, w_sh, w_shared)
    if j < H:
        dh_sh[j] = dh_n[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(n - 1 - s, n, reverse)
        direct = one * 0
        if j < H:
            d = dh_sh[j] + dy[t, b, j]
            r, z, cand = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
            dn = d * (one - z) * (one - cand * cand)
            dr = dn * hw_n[t, b, j] * r * (one - r)
            dz = d * (h_prev[t, b, j] - cand) * z * (one - z)
            dg_in[t, b, j], dg_in[t, b, H + j], dg_in[t, b, 2 * H + j] = dr, dz, dn
            dg_sh[j], dg_sh[H + j], dg_sh[2 * H + j] = dr, dz, dn * r
            dg_rec[t, b, j], dg_rec[t, b, H + j], dg_rec[t, b, 2 * H + j] = dr, dz, dn * r
            direct = d * z
        cuda.syncthreads()
        if j < H:
            acc = direct
            for q in range(G):
                acc += dg_sh[q] * weight(w_hh, w_sh, w_shared, q, j)
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < H:
        dh0[b, j] = dh_sh[j]


# ------------------------------------------------------------------------------ Elman RNN


@cuda.jit
def rnn_forward(xw, w_hh, bias, h0, lengths, reverse, training, relu, one, w_shared,
                y, h_n, h_prev, h_new):
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    H = w_hh.shape[0]
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, w_sh = dyn[:H], dyn[H:]
    load_weights(w_hh, w_sh, w_shared)
    if j < H:
        h_sh[j] = h0[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(s, n, reverse)
        v = one * 0
        if j < H:
            if training:
                h_prev[t, b, j] = h_sh[j]
            pre = xw[t, b, j] + bias[j]
            for k in range(H):
                pre += weight(w_hh, w_sh, w_shared, j, k) * h_sh[k]
            v = (pre if pre > 0 else one * 0) if relu else math.tanh(pre)
            h_new[t if training else 0, b, j] = v
        cuda.syncthreads()
        if j < H:
            h_sh[j] = v
            y[t, b, j] = v
        cuda.syncthreads()
    if j < H:
        h_n[b, j] = h_sh[j]


@cuda.jit
def rnn_backward(dy, dh_n, w_hh, lengths, reverse, relu, one, w_shared, h_new, dpre, dh0):
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    H = w_hh.shape[0]
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dp_sh, w_sh = dyn[:H], dyn[H:2 * H], dyn[2 * H:]
    load_weights(w_hh, w_sh, w_shared)
    if j < H:
        dh_sh[j] = dh_n[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(n - 1 - s, n, reverse)
        if j < H:
            d = dh_sh[j] + dy[t, b, j]
            v = h_new[t, b, j]
            if relu:
                dp = d if v > 0 else one * 0
            else:
                dp = d * (one - v * v)
            dp_sh[j] = dp
            dpre[t, b, j] = dp
        cuda.syncthreads()
        if j < H:
            acc = one * 0
            for q in range(H):
                acc += dp_sh[q] * weight(w_hh, w_sh, w_shared, q, j)
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < H:
        dh0[b, j] = dh_sh[j]


@cuda.jit
def lstm_output(gates, tanh_c, out):
    """out = o * tanh(c), what the projection saw (for its weight gradient)."""
    t, b, j = cuda.grid(3)
    H = tanh_c.shape[2]
    if t < out.shape[0] and b < out.shape[1] and j < H:
        out[t, b, j] = gates[t, b, 3 * H + j] * tanh_c[t, b, j]
