# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""GRU time loops of the Cython backend: the contract and the maths of the Numba backend's
fastrnn/backends/numba_cpu/gru.py (see fastrnn/backends/driver.py), without the GIL."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from common cimport add_to, gru_bwd, gru_fwd, pack_weight, step_w, step_wt


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] b_rec,
            floating[:, ::1] w_hr, tuple norms, floating[:, ::1] h, floating[:, ::1] c,
            const int64_t[::1] active, bint reverse, bint training, bint relu,
            floating[:, :, ::1] y, floating[:, :, ::1] h_prev, tuple buffers):
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] hw_n = buffers[1]
    cdef int T = xw.shape[0], B = xw.shape[1], G = xw.shape[2], H = G // 3
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
            step_wt(&h[0, 0], &w_hh[0, 0], w_packed, &hw[0, 0], n, G, H)
            gru_fwd(&xw[t, 0, 0], &hw[0, 0], &b_rec[0], &h[0, 0], &gates[k, 0, 0],
                    &hw_n[k, 0, 0], n, H)
            memcpy(&y[t, 0, 0], &h[0, 0], n * H * size)
    free(w_packed)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] w_hh, floating[:, ::1] w_hr, tuple norms,
             const int64_t[::1] active, bint reverse, bint relu, floating[:, :, ::1] h_prev,
             tuple buffers,
             floating[:, :, ::1] dg_in, floating[:, :, ::1] dg_rec,
             floating[:, :, ::1] dh_out, tuple grads):
    cdef floating[:, :, ::1] gates = buffers[0]
    cdef floating[:, :, ::1] hw_n = buffers[1]
    cdef int T = dy.shape[0], B = dy.shape[1], H = dy.shape[2], G = 3 * H
    cdef floating[:, ::1] direct = np.empty((B, H),
                                            np.float32 if floating is float else np.float64)
    cdef floating *w_packed = pack_weight(w_hh, False, T)
    cdef int s, t, n
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            gru_bwd(&dh[0, 0], &dy[t, 0, 0], &h_prev[t, 0, 0], &gates[t, 0, 0],
                    &hw_n[t, 0, 0], &dg_in[t, 0, 0], &dg_rec[t, 0, 0], &direct[0, 0], n, H)
            step_w(&dg_rec[t, 0, 0], &w_hh[0, 0], w_packed, &dh[0, 0], n, G, H)
            add_to(&dh[0, 0], &direct[0, 0], n * H)
    free(w_packed)
