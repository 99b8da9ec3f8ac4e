# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The ConvLSTM kernel's loops of the Cython backend (fastrnn/backends/conv_host.py runs
them): the maths of fastrnn/backends/numba_cpu/convlstm.py, with the LSTM gate passes of
gates.h (vectorised by gcc) and SciPy's BLAS, without the GIL. Arrays channels last."""

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from common cimport add, add_to, lstm_bwd, lstm_fwd, matmul_tn, matmul_w, matmul_wt


cdef void im2col(floating *a, int B, int Hh, int Ww, int Cc, int k,
                 floating *cols) noexcept nogil:
    """cols[r, (dy*k + dx)*Cc + c] = a[b, y+dy-k//2, x+dx-k//2, c] (0 outside), r = the pixel
    (b, y, x) in row-major order; a [B,Hh,Ww,Cc]."""
    cdef int b, yy, xx, dy, dx, sy, sx, p = k // 2
    cdef long K = <long>k * k * Cc, r
    cdef size_t size = Cc * sizeof(floating)
    cdef floating *dst
    for b in range(B):
        for yy in range(Hh):
            for xx in range(Ww):
                r = (<long>b * Hh + yy) * Ww + xx
                for dy in range(k):
                    sy = yy + dy - p
                    for dx in range(k):
                        sx = xx + dx - p
                        dst = cols + r * K + (dy * k + dx) * Cc
                        if 0 <= sy < Hh and 0 <= sx < Ww:
                            memcpy(dst, a + ((<long>b * Hh + sy) * Ww + sx) * Cc, size)
                        else:
                            memset(dst, 0, size)


cdef void col2im(floating *cols, int B, int Hh, int Ww, int Cc, int k,
                 floating *out) noexcept nogil:
    """The adjoint of im2col: out [B,Hh,Ww,Cc] = the windows' gradients summed back onto the
    pixels they read (out is overwritten)."""
    cdef int b, yy, xx, dy, dx, sy, sx, p = k // 2
    cdef long K = <long>k * k * Cc, r
    memset(out, 0, <size_t>B * Hh * Ww * Cc * sizeof(floating))
    for b in range(B):
        for yy in range(Hh):
            for xx in range(Ww):
                r = (<long>b * Hh + yy) * Ww + xx
                for dy in range(k):
                    sy = yy + dy - p
                    if sy < 0 or sy >= Hh:
                        continue
                    for dx in range(k):
                        sx = xx + dx - p
                        if 0 <= sx < Ww:
                            add_to(out + ((<long>b * Hh + sy) * Ww + sx) * Cc,
                                   cols + r * K + (dy * k + dx) * Cc, Cc)


def forward(floating[:, :, :, :, ::1] x, floating[:, ::1] wx, floating[:, ::1] wh,
            floating[::1] bias, floating[:, :, :, ::1] h, floating[:, :, :, ::1] c,
            const int64_t[::1] lengths, int k, bint training, floating[:, :, :, :, ::1] y,
            floating[:, ::1] cols_x, floating[:, :, ::1] cols_h, floating[:, :, ::1] gates,
            floating[:, :, ::1] c_prev, floating[:, :, ::1] tanh_c):
    """See fastrnn/backends/conv_host.py: h, c enter as h0, c0 and leave as h_n, c_n."""
    cdef int T = x.shape[0], B = x.shape[1], Hh = x.shape[2], Ww = x.shape[3], C = x.shape[4]
    cdef int F = h.shape[3], G = 4 * F, P = Hh * Ww
    cdef long rows = <long>B * P, r0
    cdef int t, s, b
    cdef long q
    cdef size_t size = sizeof(floating)
    with nogil:
        for t in range(T):
            im2col(&x[t, 0, 0, 0, 0], B, Hh, Ww, C, k, &cols_x[t * rows, 0])
        # xw: the input convolution of every frame (written into the gates' slots would need
        # T slots in inference too, so a buffer of its own)
    xw_buf = _empty_like_rows(cols_x, T * rows, G)
    cdef floating[:, ::1] xw = xw_buf
    hw_buf = _empty_like_rows(cols_x, rows, G)
    cdef floating[:, ::1] hw = hw_buf
    with nogil:
        matmul_w(&cols_x[0, 0], &wx[0, 0], &xw[0, 0], T * rows, wx.shape[0], G)
        for q in range(T * rows):
            add_to(&xw[q, 0], &bias[0], G)
        for t in range(T):
            s = t if training else 0
            im2col(&h[0, 0, 0, 0], B, Hh, Ww, F, k, &cols_h[s, 0, 0])
            matmul_w(&cols_h[s, 0, 0], &wh[0, 0], &hw[0, 0], rows, wh.shape[0], G)
            for b in range(B):
                if t >= lengths[b]:
                    continue  # this sequence ended: its state stays, its output stays 0
                r0 = <long>b * P
                memcpy(&c_prev[s, r0, 0], &c[b, 0, 0, 0], P * F * size)
                lstm_fwd(&xw[t * rows + r0, 0], &hw[r0, 0], &c[b, 0, 0, 0], &h[b, 0, 0, 0],
                         &gates[s, r0, 0], &tanh_c[s, r0, 0], P, F)
                memcpy(&y[t, b, 0, 0, 0], &h[b, 0, 0, 0], P * F * size)


def backward(floating[:, :, :, :, ::1] dy, floating[:, :, :, ::1] dh,
             floating[:, :, :, ::1] dc, floating[:, ::1] wh, const int64_t[::1] lengths,
             int k, floating[:, :, ::1] gates, floating[:, :, ::1] c_prev,
             floating[:, :, ::1] tanh_c, floating[:, :, ::1] dgates):
    """See fastrnn/backends/conv_host.py: dh, dc enter as dh_n, dc_n and leave as dh0, dc0."""
    cdef int T = dy.shape[0], B = dy.shape[1], Hh = dy.shape[2], Ww = dy.shape[3]
    cdef int F = dy.shape[4], G = 4 * F, P = Hh * Ww
    cdef long rows = <long>B * P, r0
    cdef int t, b
    cdef size_t size = sizeof(floating)
    dm_buf = _empty_like_rows(dgates[0], P, F)
    cdef floating[:, ::1] dm = dm_buf
    d_cols_buf = _empty_like_rows(dgates[0], rows, wh.shape[0])
    cdef floating[:, ::1] d_cols = d_cols_buf
    d_prev_buf = _empty_like_rows(dgates[0], rows, F)
    cdef floating[:, ::1] d_prev = d_prev_buf
    with nogil:
        for t in range(T - 1, -1, -1):
            for b in range(B):
                r0 = <long>b * P
                if t >= lengths[b]:
                    memset(&dgates[t, r0, 0], 0, P * G * size)
                    continue
                add(&dh[b, 0, 0, 0], &dy[t, b, 0, 0, 0], &dm[0, 0], P * F)
                lstm_bwd(&dm[0, 0], &gates[t, r0, 0], &c_prev[t, r0, 0], &tanh_c[t, r0, 0],
                         &dc[b, 0, 0, 0], &dgates[t, r0, 0], P, F)
            matmul_wt(&dgates[t, 0, 0], &wh[0, 0], &d_cols[0, 0], rows, wh.shape[0], G)
            col2im(&d_cols[0, 0], B, Hh, Ww, F, k, &d_prev[0, 0])
            for b in range(B):  # an ended sequence's gradient passes its step unchanged
                if t < lengths[b]:
                    memcpy(&dh[b, 0, 0, 0], &d_prev[<long>b * P, 0], P * F * size)


def weight_grads(floating[:, :, ::1] dgates, floating[:, ::1] cols_x,
                 floating[:, :, ::1] cols_h, floating[:, ::1] wx, int k, bint input_grad,
                 floating[:, :, :, :, ::1] dx, floating[:, ::1] dwx_t, floating[:, ::1] dwh_t,
                 floating[::1] dbias):
    """dwx_t = dG^T cols_x, dwh_t = dG^T cols_h (the transposed weight gradients: 1.5x the
    rate of cols^T dG here), dbias = dG's column sums and (input_grad) dx = col2im(dG wx^T),
    dG = dgates [T*B*P, 4F], over all steps at once."""
    cdef int T = dgates.shape[0], G = dgates.shape[2], K = wx.shape[0]
    cdef long rows = dgates.shape[1], R = T * rows, q
    cdef int t
    d_cols_buf = _empty_like_rows(cols_x, R if input_grad else 1, K)
    cdef floating[:, ::1] d_cols = d_cols_buf
    with nogil:
        matmul_tn(&dgates[0, 0, 0], &cols_x[0, 0], &dwx_t[0, 0], R, G, K)
        matmul_tn(&dgates[0, 0, 0], &cols_h[0, 0, 0], &dwh_t[0, 0], R, G, cols_h.shape[2])
        memset(&dbias[0], 0, G * sizeof(floating))
        for q in range(R):
            add_to(&dbias[0], &dgates[0, 0, 0] + q * G, G)
        if input_grad:
            matmul_wt(&dgates[0, 0, 0], &wx[0, 0], &d_cols[0, 0], R, K, G)
            for t in range(T):
                col2im(&d_cols[t * rows, 0], dx.shape[1], dx.shape[2], dx.shape[3],
                       dx.shape[4], k, &dx[t, 0, 0, 0, 0])


def _empty_like_rows(floating[:, ::1] like, long rows, long cols):
    import numpy as np

    return np.empty((rows, cols), np.float32 if floating is float else np.float64)
