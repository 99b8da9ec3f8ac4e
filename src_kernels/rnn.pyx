# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Elman RNN time loops of the Cython backend: the same contract as the Numba backend's
fastrnn/backends/numba_cpu/rnn.py (see fastrnn/backends/fused.py), without the GIL."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from common cimport matmul_w, matmul_wt, rnn_bwd_d, rnn_bwd_f, rnn_fwd_d, rnn_fwd_f


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] bias,
            floating[:, ::1] h, const int64_t[::1] active, bint reverse, bint training,
            bint relu, floating[:, :, ::1] y, floating[:, :, ::1] h_prev,
            floating[:, :, ::1] h_new):
    cdef int T = xw.shape[0], B = xw.shape[1], H = xw.shape[2]
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] hw = np.empty((B, H), dtype)
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
            matmul_wt(&h[0, 0], &w_hh[0, 0], &hw[0, 0], n, H, H)
            if floating is float:
                rnn_fwd_f(&xw[t, 0, 0], &hw[0, 0], &bias[0], &h[0, 0], &h_new[k, 0, 0], n, H,
                          relu)
            else:
                rnn_fwd_d(&xw[t, 0, 0], &hw[0, 0], &bias[0], &h[0, 0], &h_new[k, 0, 0], n, H,
                          relu)
            memcpy(&y[t, 0, 0], &h[0, 0], n * H * size)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] w_hh,
             const int64_t[::1] active, bint reverse, bint relu, floating[:, :, ::1] h_new,
             floating[:, :, ::1] dpre):
    cdef int T = dy.shape[0], H = dy.shape[2]
    cdef int s, t, n
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            if floating is float:
                rnn_bwd_f(&dh[0, 0], &dy[t, 0, 0], &h_new[t, 0, 0], &dpre[t, 0, 0], n, H, relu)
            else:
                rnn_bwd_d(&dh[0, 0], &dy[t, 0, 0], &h_new[t, 0, 0], &dpre[t, 0, 0], n, H, relu)
            matmul_w(&dpre[t, 0, 0], &w_hh[0, 0], &dh[0, 0], n, H, H)
