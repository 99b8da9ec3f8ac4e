# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""LayerNorm LSTM time loops of the Cython backend: the contract and the maths of the Numba
backend's fastrnn/backends/numba_cpu/ln_lstm.py (see fastrnn/backends/driver.py), without the
GIL; each row's LayerNorms are fused into its gate pass (gates.h)."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from common cimport ln_lstm_bwd, ln_lstm_fwd, pack_weight, step_w, step_wt


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] b_rec,
            floating[:, ::1] w_hr, tuple norms, floating[:, ::1] h, floating[:, ::1] c,
            const int64_t[::1] active, bint reverse, bint training, bint relu,
            floating[:, :, ::1] y, floating[:, :, ::1] h_prev, tuple buffers):
    cdef floating[::1] g_hh = norms[0]
    cdef floating[::1] g_c = norms[1]
    cdef floating[::1] b_c = norms[2]
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] c_prev = buffers[1]
    cdef floating[:, :, ::1] hw_hat = buffers[2]
    cdef floating[:, :, ::1] c_hat = buffers[3]
    cdef floating[:, :, ::1] tanh_c = buffers[4]
    cdef floating[:, :, ::1] rstd = buffers[5]
    cdef int T = xw.shape[0], B = xw.shape[1], G = xw.shape[2], H = G // 4
    cdef floating[:, ::1] hw = np.empty((B, G), np.float32 if floating is float else np.float64)
    cdef floating *w_packed = pack_weight(w_hh, True, T)
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
                memcpy(&h_prev[k, 0, 0], &h[0, 0], n * H * size)
                memcpy(&c_prev[k, 0, 0], &c[0, 0], n * H * size)
            step_wt(&h[0, 0], &w_hh[0, 0], w_packed, &hw[0, 0], n, G, H)
            ln_lstm_fwd(&xw[t, 0, 0], &hw[0, 0], &g_hh[0], &g_c[0], &b_c[0], &c[0, 0],
                        &h[0, 0], &gates[k, 0, 0], &hw_hat[k, 0, 0], &c_hat[k, 0, 0],
                        &tanh_c[k, 0, 0], &rstd[k, 0, 0], n, H)
            memcpy(&y[t, 0, 0], &h[0, 0], n * H * size)
    free(w_packed)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] w_hh, floating[:, ::1] w_hr, tuple norms,
             const int64_t[::1] active, bint reverse, bint relu, floating[:, :, ::1] h_prev,
             tuple buffers, floating[:, :, ::1] dg_in, floating[:, :, ::1] dg_rec,
             floating[:, :, ::1] dh_out, tuple grads):
    cdef floating[::1] g_hh = norms[0]
    cdef floating[::1] g_c = norms[1]
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] c_prev = buffers[1]
    cdef floating[:, :, ::1] hw_hat = buffers[2]
    cdef floating[:, :, ::1] c_hat = buffers[3]
    cdef floating[:, :, ::1] tanh_c = buffers[4]
    cdef floating[:, :, ::1] rstd = buffers[5]
    cdef floating[:, :, ::1] d_hw = grads[0]
    cdef floating[:, :, ::1] d_cn = grads[1]
    cdef int T = dy.shape[0], H = dy.shape[2], G = 4 * H
    cdef floating[::1] d_c = np.empty(H, np.float32 if floating is float else np.float64)
    cdef floating *w_packed = pack_weight(w_hh, False, T)
    cdef int s, t, n
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            ln_lstm_bwd(&dh[0, 0], &dy[t, 0, 0], &gates[t, 0, 0], &c_prev[t, 0, 0],
                        &hw_hat[t, 0, 0], &c_hat[t, 0, 0], &tanh_c[t, 0, 0], &rstd[t, 0, 0],
                        &g_hh[0], &g_c[0], &dc[0, 0], &dg_in[t, 0, 0], &d_hw[t, 0, 0],
                        &d_cn[t, 0, 0], &d_c[0], n, H)
            step_w(&d_hw[t, 0, 0], &w_hh[0, 0], w_packed, &dh[0, 0], n, G, H)
    free(w_packed)
