# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""GRU time loops of the Cython backend: the same contract as the Numba backend's
fastrnn/backends/numba_cpu/gru.py (see fastrnn/backends/fused.py), without the GIL."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from common cimport add_to, gru_bwd_d, gru_bwd_f, gru_fwd_d, gru_fwd_f, matmul_w, matmul_wt


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] b_ih,
            floating[::1] b_hh, floating[:, ::1] h, const int64_t[::1] active, bint reverse,
            bint training, floating[:, :, ::1] y, floating[:, :, ::1] h_prev,
            floating[:, :, ::1] gates, floating[:, :, ::1] hw_n):
    cdef int T = xw.shape[0], B = xw.shape[1], G = xw.shape[2], H = G // 3
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] hw = np.empty((B, G), dtype)
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
            matmul_wt(&h[0, 0], &w_hh[0, 0], &hw[0, 0], n, G, H)
            if floating is float:
                gru_fwd_f(&xw[t, 0, 0], &hw[0, 0], &b_ih[0], &b_hh[0], &h[0, 0],
                          &gates[k, 0, 0], &hw_n[k, 0, 0], n, H)
            else:
                gru_fwd_d(&xw[t, 0, 0], &hw[0, 0], &b_ih[0], &b_hh[0], &h[0, 0],
                          &gates[k, 0, 0], &hw_n[k, 0, 0], n, H)
            memcpy(&y[t, 0, 0], &h[0, 0], n * H * size)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] w_hh,
             const int64_t[::1] active, bint reverse, floating[:, :, ::1] h_prev,
             floating[:, :, ::1] gates, floating[:, :, ::1] hw_n, floating[:, :, ::1] dg_in,
             floating[:, :, ::1] dg_rec):
    cdef int T = dy.shape[0], B = dy.shape[1], H = dy.shape[2], G = 3 * H
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] direct = np.empty((B, H), dtype)
    cdef int s, t, n
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            if floating is float:
                gru_bwd_f(&dh[0, 0], &dy[t, 0, 0], &h_prev[t, 0, 0], &gates[t, 0, 0],
                          &hw_n[t, 0, 0], &dg_in[t, 0, 0], &dg_rec[t, 0, 0], &direct[0, 0],
                          n, H)
            else:
                gru_bwd_d(&dh[0, 0], &dy[t, 0, 0], &h_prev[t, 0, 0], &gates[t, 0, 0],
                          &hw_n[t, 0, 0], &dg_in[t, 0, 0], &dg_rec[t, 0, 0], &direct[0, 0],
                          n, H)
            matmul_w(&dg_rec[t, 0, 0], &w_hh[0, 0], &dh[0, 0], n, G, H)
            add_to(&dh[0, 0], &direct[0, 0], n * H)
