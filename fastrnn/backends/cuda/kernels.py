"""numba.cuda kernels of the CUDA backend.

Three kinds, chosen per call by the host driver (:mod:`fastrnn.backends.cuda`):

- ``gemm``: a shared-memory tiled product (optionally adding biases) for the input projection
  of all steps and for the weight gradients after the backward loop.
- Persistent kernels (``*_forward`` / ``*_backward``), used when w_hh fits in shared memory:
  one block per sequence, one thread per hidden unit, the sequence's whole time loop in one
  launch, w_hh copied on chip once, the state in shared memory, block barriers only.
- Per-step kernels (``*_step``), used for every other size: one launch per time step whose
  (TILE x TILE) blocks each compute a tile of (sequence, unit) pairs: the recurrent product
  through shared-memory tiles (:func:`tile_dot`) fused with the gate activations. Any hidden
  size and batch, all SMs busy; the state lives in global memory, double-buffered by the host.

Every kernel follows each sequence over its own valid steps (ragged lengths, either
direction); a sequence that has ended keeps its state and its y rows stay 0. `one` (or `zero`)
is 1 (0) in the arrays' dtype, so float32 arithmetic stays float32. Arguments a call does not
use (no projection, inference's saved buffers) are 1-element placeholders, never 0-size
arrays, and flags say so.
"""

from __future__ import annotations

import math

from numba import config, cuda

#: Tile edge of the tiled kernels; the CUDA simulator runs every thread as a Python thread,
#: so it gets less.
TILE = 4 if config.ENABLE_CUDASIM else 16


# ------------------------------------------------------------------------------ shared helpers


@cuda.jit(device=True, inline=True)
def sigmoid(x, one):
    """1 / (1 + exp(-x)) as 0.5 + 0.5 tanh(x / 2), as the CPU backends: no exp to overflow
    (numba's CUDA simulator raises OverflowError there; a GPU gives inf, then 0)."""
    half = one / (one + one)  # 0.5 in the dtype of one (a literal would be float64)
    return half + half * math.tanh(half * x)


@cuda.jit(device=True, inline=True)
def step_of(s, n, reverse):
    """Time index of a sequence's s-th step (its length n)."""
    return n - 1 - s if reverse else s


@cuda.jit(device=True, inline=True)
def to_shared(w, w_sh):
    """Copy w [R,C] into the flat shared buffer w_sh (row-major), all threads of the block
    sharing the work; the caller's next barrier makes it visible."""
    C = w.shape[1]
    for i in range(cuda.threadIdx.x, w.size, cuda.blockDim.x):
        w_sh[i] = w[i // C, i % C]


#: step_cell's answers for a thread with no work: outside the grid, or its sequence has ended
OUTSIDE, ENDED = -2, -1


@cuda.jit(device=True, inline=True)
def step_cell(s, lengths, reverse, rows, cols, backward):
    """(b, j, t) of this thread in a per-step kernel: sequence b, unit j, time index t of
    step s (backward: the forward's steps counted from the last), or t = OUTSIDE when (b, j)
    lies outside [rows, cols], ENDED when sequence b has no step s."""
    b = cuda.blockIdx.x * TILE + cuda.threadIdx.y
    j = cuda.blockIdx.y * TILE + cuda.threadIdx.x
    if b >= rows or j >= cols:
        return b, j, OUTSIDE
    n = lengths[b]
    if s >= n:
        return b, j, ENDED
    return b, j, step_of(n - 1 - s if backward else s, n, reverse)


@cuda.jit(device=True, inline=True)
def tile_dot(a, trans_a, b, trans_b, M, N, K, col_off, sa, sb, zero):
    """Element (row, col) of op(a)[M,K] @ op(b)[K, col_off:col_off+N], op = transpose when
    trans_*, for the thread's row = blockIdx.x*TILE + ty and col = blockIdx.y*TILE + tx
    (rows on the grid's x axis, which has room for 2**31 - 1 blocks: all steps' rows fit).

    Every thread of the (TILE, TILE) block must call it (it has barriers); threads outside
    [M, N] get a meaningless value. sa, sb: (TILE, TILE) shared arrays. Loads run along the
    contiguous axis of each operand.
    """
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row0, col0 = cuda.blockIdx.x * TILE, cuda.blockIdx.y * TILE
    acc = zero
    for k0 in range(0, K, TILE):
        if trans_a:  # op(a)[r, k] = a[k, r]
            r, k = row0 + tx, k0 + ty
            sa[tx, ty] = a[k, r] if r < M and k < K else zero
        else:
            r, k = row0 + ty, k0 + tx
            sa[ty, tx] = a[r, k] if r < M and k < K else zero
        if trans_b:  # op(b)[k, c] = b[c, k]
            k, c = k0 + tx, col0 + ty
            sb[tx, ty] = b[col_off + c, k] if c < N and k < K else zero
        else:
            k, c = k0 + ty, col0 + tx
            sb[ty, tx] = b[k, col_off + c] if c < N and k < K else zero
        cuda.syncthreads()
        for kk in range(TILE):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    return acc


# ------------------------------------------------------------------------------ products


@cuda.jit
def gemm(a, trans_a, b, trans_b, c, bias1, use_bias1, bias2, use_bias2, zero):
    """c[M,N] = op(a) @ op(b) (+ bias1[N] when use_bias1) (+ bias2[N] when use_bias2)."""
    sa = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    acc = tile_dot(a, trans_a, b, trans_b, M, N, K, 0, sa, sb, zero)
    row = cuda.blockIdx.x * TILE + cuda.threadIdx.y
    col = cuda.blockIdx.y * TILE + cuda.threadIdx.x
    if row < M and col < N:
        if use_bias1:
            acc += bias1[col]
        if use_bias2:
            acc += bias2[col]
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


@cuda.jit
def fill_zero(flat, zero):
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = zero


@cuda.jit
def multiply(a, b, out):
    """out = a * b elementwise ([T,B,N]; a or b may be a strided view)."""
    t, i, j = cuda.grid(3)
    if t < out.shape[0] and i < out.shape[1] and j < out.shape[2]:
        out[t, i, j] = a[t, i, j] * b[t, i, j]


@cuda.jit
def recurrent_grad_step(s, dg, w_hh, dh, direct, has_direct, lengths, dh_next):
    """dh_next[b] = dg[b] @ w_hh (+ direct[b]) for sequences still running at step s; the
    others keep dh. dg [B,G]: this step's gate gradients; w_hh [G,Hp]."""
    sa = cuda.shared.array((TILE, TILE), dtype=dh.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=dh.dtype)
    B, Hp = dh.shape
    acc = tile_dot(dg, False, w_hh, False, B, Hp, w_hh.shape[0], 0, sa, sb, dh.dtype.type(0))
    b, k, t = step_cell(s, lengths, False, B, Hp, True)
    if t == ENDED:
        dh_next[b, k] = dh[b, k]
    elif t != OUTSIDE:
        dh_next[b, k] = acc + direct[b, k] if has_direct else acc


# ------------------------------------------------------------------------------ LSTM


@cuda.jit
def lstm_forward(xw, w_hh, w_hr, project, h0, c0, lengths, reverse, training, one,
                 y, h_n, c_n, h_prev, gates, c_prev, tanh_c):
    """Persistent. xw [T,B,4H] holds x @ w_ih.T + both biases. Thread j < H owns cell j (c in
    a register), thread p < Hp output p. Shared: h [Hp], m = o * tanh(c) [H], w_hh [4H*Hp]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H, Hp = G // 4, h0.shape[1]
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, m_sh, w_sh = dyn[:Hp], dyn[Hp:Hp + H], dyn[Hp + H:]
    to_shared(w_hh, w_sh)
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
            a_i, a_f = xw[t, b, j], xw[t, b, H + j]
            a_g, a_o = xw[t, b, 2 * H + j], xw[t, b, 3 * H + j]
            for k in range(Hp):
                hk = h_sh[k]
                a_i += w_sh[j * Hp + k] * hk
                a_f += w_sh[(H + j) * Hp + k] * hk
                a_g += w_sh[(2 * H + j) * Hp + k] * hk
                a_o += w_sh[(3 * H + j) * Hp + k] * hk
            i, f = sigmoid(a_i, one), sigmoid(a_f, one)
            g, o = math.tanh(a_g), sigmoid(a_o, one)
            c = f * c + i * g
            tc = math.tanh(c)
            m_sh[j] = o * tc
            if training:
                gates[t, b, j], gates[t, b, H + j] = i, f
                gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = g, o
                tanh_c[t, b, j] = tc
        cuda.syncthreads()  # every thread has read h: it may change now
        if j < Hp:
            if project:
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
def lstm_backward(dy, dh_n, dc_n, w_hh, w_hr, project, lengths, reverse, one, gates, c_prev, tanh_c,
                  dgates, dh_out, dh0, dc0):
    """Persistent BPTT of lstm_forward, block b for sequence b. Shared: dh [Hp],
    d(o tanh c) [H], the step's gate gradients [4H], w_hh [4H*Hp]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H, Hp = G // 4, dh_n.shape[1]
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dm_sh = dyn[:Hp], dyn[Hp:Hp + H]
    dg_sh, w_sh = dyn[Hp + H:Hp + H + G], dyn[Hp + H + G:]
    to_shared(w_hh, w_sh)
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
            if not project:
                dm_sh[j] = d
            else:
                dh_sh[j] = d
        cuda.syncthreads()
        if j < H:
            if project:
                dm = one * 0
                for p in range(Hp):
                    dm += dh_sh[p] * w_hr[p, j]
            else:
                dm = dm_sh[j]
            d_i, d_f, d_g, d_o, dc = lstm_cell_grads(gates, c_prev, tanh_c, t, b, j, H, dm,
                                                     dc, one)
            dg_sh[j], dg_sh[H + j], dg_sh[2 * H + j], dg_sh[3 * H + j] = d_i, d_f, d_g, d_o
            dgates[t, b, j], dgates[t, b, H + j] = d_i, d_f
            dgates[t, b, 2 * H + j], dgates[t, b, 3 * H + j] = d_g, d_o
        cuda.syncthreads()
        if j < Hp:
            acc = one * 0
            for r in range(G):
                acc += dg_sh[r] * w_sh[r * Hp + j]
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < Hp:
        dh0[b, j] = dh_sh[j]
    if j < H:
        dc0[b, j] = dc


@cuda.jit(device=True, inline=True)
def lstm_cell_grads(gates, c_prev, tanh_c, t, b, j, H, dm, dc, one):
    """Gate pre-activation gradients (d_i, d_f, d_g, d_o) of unit j of sequence b at step t
    and dL/dc of the step before; dm = dL/d(o tanh c), dc = dL/dc from later steps."""
    i, f = gates[t, b, j], gates[t, b, H + j]
    g, o = gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
    tc = tanh_c[t, b, j]
    dcn = dc + dm * o * (one - tc * tc)
    return (dcn * g * i * (one - i), dcn * c_prev[t, b, j] * f * (one - f),
            dcn * i * (one - g * g), dm * tc * o * (one - o), dcn * f)


@cuda.jit
def lstm_step(s, xw, w_hh, h, c, lengths, reverse, training, project, one,
              m, y, h_next, h_prev, gates, c_prev, tanh_c):
    """Step s of every sequence: gates from xw[t] (biases included) + h @ w_hh.T, then c in
    place and m = o * tanh(c). Without projection (`project` False) m is the new state,
    else :func:`lstm_project_step` makes it. Grid: sequence tiles x H tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    B, Hp = h.shape
    H = c.shape[1]
    zero = one * 0
    a_i = tile_dot(h, False, w_hh, True, B, H, Hp, 0, sa, sb, zero)
    a_f = tile_dot(h, False, w_hh, True, B, H, Hp, H, sa, sb, zero)
    a_g = tile_dot(h, False, w_hh, True, B, H, Hp, 2 * H, sa, sb, zero)
    a_o = tile_dot(h, False, w_hh, True, B, H, Hp, 3 * H, sa, sb, zero)
    b, j, t = step_cell(s, lengths, reverse, B, H, False)
    if t == OUTSIDE:
        return
    if t == ENDED:
        if not project:
            h_next[b, j] = h[b, j]
        return
    cj = c[b, j]
    i = sigmoid(xw[t, b, j] + a_i, one)
    f = sigmoid(xw[t, b, H + j] + a_f, one)
    g = math.tanh(xw[t, b, 2 * H + j] + a_g)
    o = sigmoid(xw[t, b, 3 * H + j] + a_o, one)
    cn = f * cj + i * g
    tc = math.tanh(cn)
    c[b, j] = cn
    if training:
        if j < Hp:
            h_prev[t, b, j] = h[b, j]
        c_prev[t, b, j] = cj
        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = i, f, g
        gates[t, b, 3 * H + j] = o
        tanh_c[t, b, j] = tc
    if project:
        m[b, j] = o * tc
    else:
        h_next[b, j] = o * tc
        y[t, b, j] = o * tc


@cuda.jit
def lstm_project_step(s, m, w_hr, h, lengths, reverse, zero, y, h_next):
    """h_next = m @ w_hr.T (the projection) for sequences running at step s; the others keep
    h. Grid: sequence tiles x Hp tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    B, Hp = h.shape
    acc = tile_dot(m, False, w_hr, True, B, Hp, m.shape[1], 0, sa, sb, zero)
    b, p, t = step_cell(s, lengths, reverse, B, Hp, False)
    if t == ENDED:
        h_next[b, p] = h[b, p]
    elif t != OUTSIDE:
        h_next[b, p] = acc
        y[t, b, p] = acc


@cuda.jit
def lstm_dh_step(s, dh, dy, lengths, reverse, d, dh_out):
    """With projection: d = dh + dy[t] (the projection's output gradient) for running
    sequences, kept in dh_out[t] for dw_hr. Grid: sequence tiles x Hp tiles."""
    b, p, t = step_cell(s, lengths, reverse, dh.shape[0], dh.shape[1], True)
    if t >= 0:
        d[b, p] = dh[b, p] + dy[t, b, p]
        dh_out[t, b, p] = d[b, p]


@cuda.jit
def lstm_grad_step(s, dy, dh, d, w_hr, dc, lengths, reverse, project, one, gates, c_prev,
                   tanh_c, dgates, dg):
    """Backward step s (the forward's steps, last first): gate gradients into dgates[t] and
    dg [B,4H] (for :func:`recurrent_grad_step`), dc in place. dm = d @ w_hr with projection,
    else dh + dy[t]. Grid: sequence tiles x H tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=dh.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=dh.dtype)
    B, H = dc.shape
    zero = one * 0
    dm = zero
    if project:
        dm = tile_dot(d, False, w_hr, False, B, H, w_hr.shape[0], 0, sa, sb, zero)
    b, j, t = step_cell(s, lengths, reverse, B, H, True)
    if t < 0:
        return
    if not project:
        dm = dh[b, j] + dy[t, b, j]
    d_i, d_f, d_g, d_o, dc_prev = lstm_cell_grads(gates, c_prev, tanh_c, t, b, j, H, dm,
                                                  dc[b, j], one)
    dc[b, j] = dc_prev
    dg[b, j], dg[b, H + j], dg[b, 2 * H + j], dg[b, 3 * H + j] = d_i, d_f, d_g, d_o
    dgates[t, b, j], dgates[t, b, H + j] = d_i, d_f
    dgates[t, b, 2 * H + j], dgates[t, b, 3 * H + j] = d_g, d_o


# ------------------------------------------------------------------------------ GRU


@cuda.jit(device=True, inline=True)
def gru_unit(xw, t, b, j, H, u_r, u_z, u_n, h_old, one):
    """r, z, candidate n and the new state of unit j; u_* = W_h* h + b_h*."""
    r = sigmoid(xw[t, b, j] + u_r, one)
    z = sigmoid(xw[t, b, H + j] + u_z, one)
    cand = math.tanh(xw[t, b, 2 * H + j] + r * u_n)
    return r, z, cand, (one - z) * cand + z * h_old


@cuda.jit(device=True, inline=True)
def gru_unit_grads(d, r, z, cand, h_old, u_n, one):
    """(dr, dz, dn) pre-activation gradients and the direct part d*z of dL/dh_old."""
    dn = d * (one - z) * (one - cand * cand)
    dr = dn * u_n * r * (one - r)
    dz = d * (h_old - cand) * z * (one - z)
    return dr, dz, dn, d * z


@cuda.jit
def gru_forward(xw, w_hh, b_hh, h0, lengths, reverse, training, one,
                y, h_n, h_prev, gates, hw_n):
    """Persistent. xw [T,B,3H] holds x @ w_ih.T + b_ih. Shared: h [H], w_hh [3H*H]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H = G // 3
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, w_sh = dyn[:H], dyn[H:]
    to_shared(w_hh, w_sh)
    if j < H:
        h_sh[j] = h0[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(s, n, reverse)
        h_new = one * 0
        if j < H:
            hj = h_sh[j]
            u_r, u_z, u_n = b_hh[j], b_hh[H + j], b_hh[2 * H + j]
            for k in range(H):
                hk = h_sh[k]
                u_r += w_sh[j * H + k] * hk
                u_z += w_sh[(H + j) * H + k] * hk
                u_n += w_sh[(2 * H + j) * H + k] * hk
            r, z, cand, h_new = gru_unit(xw, t, b, j, H, u_r, u_z, u_n, hj, one)
            if training:
                h_prev[t, b, j] = hj
                gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = r, z, cand
                hw_n[t, b, j] = u_n
        cuda.syncthreads()
        if j < H:
            h_sh[j] = h_new
            y[t, b, j] = h_new
        cuda.syncthreads()
    if j < H:
        h_n[b, j] = h_sh[j]


@cuda.jit
def gru_backward(dy, dh_n, w_hh, lengths, reverse, one, h_prev, gates, hw_n,
                 dg_in, dg_rec, dh0):
    """Persistent BPTT of gru_forward. Shared: dh [H], the step's dg_rec row [3H],
    w_hh [3H*H]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    G = w_hh.shape[0]
    H = G // 3
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dg_sh, w_sh = dyn[:H], dyn[H:H + G], dyn[H + G:]
    to_shared(w_hh, w_sh)
    if j < H:
        dh_sh[j] = dh_n[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(n - 1 - s, n, reverse)
        direct = one * 0
        if j < H:
            r, z, cand = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
            dr, dz, dn, direct = gru_unit_grads(dh_sh[j] + dy[t, b, j], r, z, cand,
                                                h_prev[t, b, j], hw_n[t, b, j], one)
            dg_in[t, b, j], dg_in[t, b, H + j], dg_in[t, b, 2 * H + j] = dr, dz, dn
            dg_sh[j], dg_sh[H + j], dg_sh[2 * H + j] = dr, dz, dn * r
            dg_rec[t, b, j], dg_rec[t, b, H + j], dg_rec[t, b, 2 * H + j] = dr, dz, dn * r
        cuda.syncthreads()
        if j < H:
            acc = direct
            for q in range(G):
                acc += dg_sh[q] * w_sh[q * H + j]
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < H:
        dh0[b, j] = dh_sh[j]


@cuda.jit
def gru_step(s, xw, w_hh, b_hh, h, lengths, reverse, training, one,
             y, h_next, h_prev, gates, hw_n):
    """Step s of every sequence. Grid: sequence tiles x H tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    B, H = h.shape
    zero = one * 0
    u_r = tile_dot(h, False, w_hh, True, B, H, H, 0, sa, sb, zero)
    u_z = tile_dot(h, False, w_hh, True, B, H, H, H, sa, sb, zero)
    u_n = tile_dot(h, False, w_hh, True, B, H, H, 2 * H, sa, sb, zero)
    b, j, t = step_cell(s, lengths, reverse, B, H, False)
    if t == OUTSIDE:
        return
    hj = h[b, j]
    if t == ENDED:
        h_next[b, j] = hj
        return
    u_n += b_hh[2 * H + j]
    r, z, cand, h_new = gru_unit(xw, t, b, j, H, u_r + b_hh[j], u_z + b_hh[H + j], u_n, hj, one)
    h_next[b, j] = h_new
    y[t, b, j] = h_new
    if training:
        h_prev[t, b, j] = hj
        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = r, z, cand
        hw_n[t, b, j] = u_n


@cuda.jit
def gru_grad_step(s, dy, dh, lengths, reverse, one, h_prev, gates, hw_n, dg_in, dg_rec,
                  dg, direct):
    """Backward step s: gate gradients into dg_in[t], dg_rec[t] and dg [B,3H], the direct
    part of dh into `direct`. Grid: sequence tiles x H tiles."""
    H = dh.shape[1]
    b, j, t = step_cell(s, lengths, reverse, dh.shape[0], H, True)
    if t < 0:
        return
    r, z, cand = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j]
    dr, dz, dn, d_direct = gru_unit_grads(dh[b, j] + dy[t, b, j], r, z, cand, h_prev[t, b, j],
                                          hw_n[t, b, j], one)
    direct[b, j] = d_direct
    dg_in[t, b, j], dg_in[t, b, H + j], dg_in[t, b, 2 * H + j] = dr, dz, dn
    dg_rec[t, b, j], dg_rec[t, b, H + j], dg_rec[t, b, 2 * H + j] = dr, dz, dn * r
    dg[b, j], dg[b, H + j], dg[b, 2 * H + j] = dr, dz, dn * r


# ------------------------------------------------------------------------------ Elman RNN


@cuda.jit(device=True, inline=True)
def activate(pre, relu, one):
    """act(pre); relu's NaN stays NaN, as np.maximum's."""
    return (one * 0 if pre < 0 else pre) if relu else math.tanh(pre)


@cuda.jit(device=True, inline=True)
def activation_grad(d, v, relu, one):
    """d * act'(pre) from the output v = act(pre) (a product: a NaN d stays NaN)."""
    if relu:
        return d * (one if v > 0 else one * 0)
    return d * (one - v * v)


@cuda.jit
def rnn_forward(xw, w_hh, h0, lengths, reverse, training, relu, one, y, h_n, h_prev, h_new):
    """Persistent. xw [T,B,H] holds x @ w_ih.T + both biases. Shared: h [H], w_hh [H*H]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    H = w_hh.shape[0]
    dyn = cuda.shared.array(0, dtype=xw.dtype)
    h_sh, w_sh = dyn[:H], dyn[H:]
    to_shared(w_hh, w_sh)
    if j < H:
        h_sh[j] = h0[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(s, n, reverse)
        v = one * 0
        if j < H:
            pre = xw[t, b, j]
            for k in range(H):
                pre += w_sh[j * H + k] * h_sh[k]
            v = activate(pre, relu, one)
            if training:
                h_prev[t, b, j] = h_sh[j]
                h_new[t, b, j] = v
        cuda.syncthreads()
        if j < H:
            h_sh[j] = v
            y[t, b, j] = v
        cuda.syncthreads()
    if j < H:
        h_n[b, j] = h_sh[j]


@cuda.jit
def rnn_backward(dy, dh_n, w_hh, lengths, reverse, relu, one, h_new, dpre, dh0):
    """Persistent BPTT of rnn_forward. Shared: dh [H], the step's dpre row [H], w_hh [H*H]."""
    b, j = cuda.blockIdx.x, cuda.threadIdx.x
    H = w_hh.shape[0]
    dyn = cuda.shared.array(0, dtype=dy.dtype)
    dh_sh, dp_sh, w_sh = dyn[:H], dyn[H:2 * H], dyn[2 * H:]
    to_shared(w_hh, w_sh)
    if j < H:
        dh_sh[j] = dh_n[b, j]
    cuda.syncthreads()
    n = lengths[b]
    for s in range(n):
        t = step_of(n - 1 - s, n, reverse)
        if j < H:
            dp = activation_grad(dh_sh[j] + dy[t, b, j], h_new[t, b, j], relu, one)
            dp_sh[j] = dp
            dpre[t, b, j] = dp
        cuda.syncthreads()
        if j < H:
            acc = one * 0
            for q in range(H):
                acc += dp_sh[q] * w_sh[q * H + j]
            dh_sh[j] = acc
        cuda.syncthreads()
    if j < H:
        dh0[b, j] = dh_sh[j]


@cuda.jit
def rnn_step(s, xw, w_hh, h, lengths, reverse, training, relu, one, y, h_next, h_prev, h_new):
    """Step s of every sequence. Grid: sequence tiles x H tiles."""
    sa = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=h.dtype)
    B, H = h.shape
    pre = tile_dot(h, False, w_hh, True, B, H, H, 0, sa, sb, one * 0)
    b, j, t = step_cell(s, lengths, reverse, B, H, False)
    if t == ENDED:
        h_next[b, j] = h[b, j]
    if t < 0:
        return
    v = activate(xw[t, b, j] + pre, relu, one)
    h_next[b, j] = v
    y[t, b, j] = v
    if training:
        h_prev[t, b, j] = h[b, j]
        h_new[t, b, j] = v


@cuda.jit
def rnn_grad_step(s, dy, dh, lengths, reverse, relu, one, h_new, dpre, dg):
    """Backward step s: pre-activation gradients into dpre[t] and dg [B,H]."""
    b, j, t = step_cell(s, lengths, reverse, dh.shape[0], dh.shape[1], True)
    if t < 0:
        return
    dp = activation_grad(dh[b, j] + dy[t, b, j], h_new[t, b, j], relu, one)
    dpre[t, b, j] = dp
    dg[b, j] = dp
