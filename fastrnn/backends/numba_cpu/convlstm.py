"""The ConvLSTM kernel's loops compiled by Numba (the fallback where the Cython extensions
were not built): the reference's maths (:mod:`fastrnn.backends.conv_reference`) as GEMMs over
im2col windows, channels last; :class:`fastrnn.backends.conv_host.ConvKernel` runs them.

- The input convolution of all frames is one GEMM: the "same"-padded k x k windows of every
  pixel of every frame as rows ([T*B*Hh*Ww, k*k*C], im2col) times the input half of the
  weight ([k*k*C, 4F]), bias folded in.
- Per step, the recurrent convolution is one GEMM on h's windows ([B*Hh*Ww, k*k*F] times
  [k*k*F, 4F]) and one fused pass over the gates (LSTM's, per pixel).
- Backward per step: the fused gate pass backward, one GEMM to the windows' gradient and its
  scatter back onto h (col2im); after the loop the weight gradients, the bias gradient and
  the input gradient are whole-sequence GEMMs over the windows saved in forward.
"""

from __future__ import annotations

import numpy as np

from ..conv_host import ConvKernel
from ._common import jit, lstm_row, lstm_row_grads, one_like


@jit
def _im2col(a, k, cols):
    """cols[r, (dy*k + dx)*Cc + c] = a[b, y+dy-k//2, x+dx-k//2, c] (0 outside), r = the pixel
    (b, y, x) in row-major order; a [B,Hh,Ww,Cc] channels last."""
    B, Hh, Ww, Cc = a.shape
    p = k // 2
    zero = one_like(cols[0, 0]) * 0
    for b in range(B):
        for yy in range(Hh):
            for xx in range(Ww):
                r = (b * Hh + yy) * Ww + xx
                for dy in range(k):
                    sy = yy + dy - p
                    for dx in range(k):
                        sx = xx + dx - p
                        base = (dy * k + dx) * Cc
                        if 0 <= sy < Hh and 0 <= sx < Ww:
                            for c in range(Cc):
                                cols[r, base + c] = a[b, sy, sx, c]
                        else:
                            for c in range(Cc):
                                cols[r, base + c] = zero


@jit
def _col2im(cols, k, out):
    """The adjoint of :func:`_im2col`: out [B,Hh,Ww,Cc] = the windows' gradients summed back
    onto the pixels they read (out is overwritten)."""
    B, Hh, Ww, Cc = out.shape
    p = k // 2
    out[...] = 0
    for b in range(B):
        for yy in range(Hh):
            for xx in range(Ww):
                r = (b * Hh + yy) * Ww + xx
                for dy in range(k):
                    sy = yy + dy - p
                    if sy < 0 or sy >= Hh:
                        continue
                    for dx in range(k):
                        sx = xx + dx - p
                        if sx < 0 or sx >= Ww:
                            continue
                        base = (dy * k + dx) * Cc
                        for c in range(Cc):
                            out[b, sy, sx, c] += cols[r, base + c]


@jit
def _forward(x, wx, wh, bias, h, c, lengths, k, training, y, cols_x, cols_h, gates, c_prev,
             tanh_c):
    """x [T,B,Hh,Ww,C] channels last; h, c [B,Hh,Ww,F] enter as h0, c0 and leave as h_n,
    c_n; y [T,B,Hh,Ww,F] (zeros beyond each sequence's end on entry). Saves, per step, the
    windows of x (cols_x [T*B*P, k*k*C]) and of h (cols_h), the activated gates, c entering
    the step and tanh of the new c (one slot each, overwritten, when not training)."""
    T, B, Hh, Ww, C = x.shape
    F = h.shape[3]
    P = Hh * Ww
    rows = B * P
    for t in range(T):
        _im2col(x[t], k, cols_x[t * rows:(t + 1) * rows])
    xw = np.dot(cols_x, wx)  # [T*rows, 4F]: the input convolution of every frame
    for q in range(T * rows):
        for j in range(4 * F):
            xw[q, j] += bias[j]
    hf = h.reshape(rows, F)
    cf = c.reshape(rows, F)
    hw = np.empty((rows, 4 * F), x.dtype)
    for t in range(T):
        s = t if training else 0
        _im2col(h, k, cols_h[s])
        np.dot(cols_h[s], wh, hw)
        for b in range(B):
            if t < lengths[b]:  # else this sequence ended: its state stays, its output 0
                for r in range(b * P, (b + 1) * P):
                    c_prev[s, r] = cf[r]
                    lstm_row(xw[t * rows + r], hw[r], cf[r], hf[r], gates[s, r], tanh_c[s, r],
                             F)
                y[t, b] = h[b]


@jit
def _backward(dy, dh, dc, wh, lengths, k, gates, c_prev, tanh_c, dgates):
    """BPTT of :func:`_forward`'s time loop: dh, dc [B,Hh,Ww,F] enter as dh_n, dc_n and leave
    as dh0, dc0; writes dgates [T, B*P, 4F], the gradient of every step's pre-activations
    (0 beyond a sequence's end)."""
    T, B, Hh, Ww, F = dy.shape
    P = Hh * Ww
    rows = B * P
    one = one_like(dy[0, 0, 0, 0, 0])
    dhf = dh.reshape(rows, F)
    dcf = dc.reshape(rows, F)
    d_cols = np.empty((rows, wh.shape[0]), dy.dtype)
    d_prev = np.empty_like(dh)
    dm = np.empty(F, dy.dtype)
    whT = wh.T
    for t in range(T - 1, -1, -1):
        dyt = dy[t].reshape(rows, F)
        for b in range(B):
            live = t < lengths[b]
            for r in range(b * P, (b + 1) * P):
                if live:
                    for j in range(F):
                        dm[j] = dhf[r, j] + dyt[r, j]
                    lstm_row_grads(dm, gates[t, r], c_prev[t, r], tanh_c[t, r], dcf[r],
                                   dgates[t, r], F, one)
                else:
                    dgates[t, r] = 0
        np.dot(dgates[t], whT, d_cols)
        _col2im(d_cols, k, d_prev)
        for b in range(B):
            if t < lengths[b]:  # an ended sequence's gradient passes its step unchanged
                dh[b] = d_prev[b]


@jit
def _weight_grads(dgates, cols_x, cols_h, wx, k, input_grad, dx, dwx_t, dwh_t, dbias):
    """After the time loop, over all steps at once: dwx_t = dG^T cols_x and dwh_t = dG^T
    cols_h (the weight gradients transposed: 1.5x the rate of cols^T dG on this BLAS),
    dbias = the column sums of dG and (when `input_grad`) dx [T,B,Hh,Ww,C] = col2im(dG wx^T),
    dG = dgates [T*B*P, 4F]. One function, so that every GEMM of the kernel runs on one BLAS
    (SciPy's, through Numba): NumPy's own pool spinning beside it cost 30% here."""
    T = dx.shape[0]
    rows = dgates.shape[1]
    flat = dgates.reshape(T * rows, dgates.shape[2])
    np.dot(flat.T, cols_x, dwx_t)
    np.dot(flat.T, cols_h.reshape(T * rows, cols_h.shape[2]), dwh_t)
    for j in range(flat.shape[1]):
        dbias[j] = 0
    for r in range(flat.shape[0]):
        for j in range(flat.shape[1]):
            dbias[j] += flat[r, j]
    if input_grad:
        d_cols = np.dot(flat, wx.T)
        for t in range(T):
            _col2im(d_cols[t * rows:(t + 1) * rows], k, dx[t])


def available() -> tuple[bool, str]:
    import numba

    return True, f"numba {numba.__version__}, loops JIT-compiled on first use and cached"


_kernel = ConvKernel(_forward, _backward, _weight_grads)
forward, backward = _kernel.forward, _kernel.backward
