# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""LSTM time loops of the Cython backend: the contract and the maths of the Numba backend's
fastrnn/backends/numba_cpu/lstm.py (see fastrnn/backends/driver.py), without the GIL."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from common cimport add, lstm_bwd, lstm_fwd, pack_weight, step_w, step_wt


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] b_rec,
            floating[:, ::1] w_hr, tuple norms, floating[:, ::1] h, floating[:, ::1] c,
            const int64_t[::1] active, bint reverse, bint training, bint relu,
            floating[:, :, ::1] y, floating[:, :, ::1] h_prev, tuple buffers):
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] c_prev = buffers[1]
    cdef floating[:, :, ::1] tanh_c = buffers[2]
    cdef int T = xw.shape[0], B = xw.shape[1], G = xw.shape[2]
    cdef int H = G // 4, Hp = h.shape[1], P = w_hr.shape[0]
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] hw = np.empty((B, G), dtype)
    cdef floating[:, ::1] m = np.empty((B, H), dtype)  # o * tanh(c), before projection
    cdef floating *w_packed = pack_weight(w_hh, True, T)
    cdef floating *wr_packed = pack_weight(w_hr, True, T)
    cdef int s, t, k, n
    cdef size_t size = sizeof(floating)
    with nogil:
        for s in range(T):
            t = T - 1 - s if reverse else s
            n = <int>active[t]
            if n == 0:
                continue
            k = t if training else 0
            if training:
                memcpy(&h_prev[k, 0, 0], &h[0, 0], n * Hp * size)
                memcpy(&c_prev[k, 0, 0], &c[0, 0], n * H * size)
            step_wt(&h[0, 0], &w_hh[0, 0], w_packed, &hw[0, 0], n, G, Hp)
            lstm_fwd(&xw[t, 0, 0], &hw[0, 0], &c[0, 0], &m[0, 0], &gates[k, 0, 0],
                     &tanh_c[k, 0, 0], n, H)
            if P > 0:
                step_wt(&m[0, 0], &w_hr[0, 0], wr_packed, &h[0, 0], n, P, H)
            else:
                memcpy(&h[0, 0], &m[0, 0], n * H * size)
            memcpy(&y[t, 0, 0], &h[0, 0], n * Hp * size)
    free(w_packed)
    free(wr_packed)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] w_hh, floating[:, ::1] w_hr, tuple norms,
             const int64_t[::1] active, bint reverse, bint relu, floating[:, :, ::1] h_prev,
             tuple buffers,
             floating[:, :, ::1] dg_in, floating[:, :, ::1] dg_rec,
             floating[:, :, ::1] dh_out, tuple grads):
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] c_prev = buffers[1]
    cdef floating[:, :, ::1] tanh_c = buffers[2]
    cdef int T = dy.shape[0], B = dy.shape[1], Hp = dy.shape[2]
    cdef int H = c_prev.shape[2], G = 4 * H, P = w_hr.shape[0]
    cdef floating[:, ::1] dm = np.empty((B, H), np.float32 if floating is float else np.float64)
    cdef floating *dm_ptr
    cdef floating *w_packed = pack_weight(w_hh, False, T)
    cdef floating *wr_packed = pack_weight(w_hr, False, T)
    cdef int s, t, n
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            add(&dh[0, 0], &dy[t, 0, 0], &dh_out[t, 0, 0], n * Hp)
            if P > 0:
                step_w(&dh_out[t, 0, 0], &w_hr[0, 0], wr_packed, &dm[0, 0], n, P, H)
                dm_ptr = &dm[0, 0]
            else:
                dm_ptr = &dh_out[t, 0, 0]
            lstm_bwd(dm_ptr, &gates[t, 0, 0], &c_prev[t, 0, 0], &tanh_c[t, 0, 0], &dc[0, 0],
                     &dg_in[t, 0, 0], n, H)
            step_w(&dg_in[t, 0, 0], &w_hh[0, 0], w_packed, &dh[0, 0], n, G, Hp)
    free(w_packed)
    free(wr_packed)
