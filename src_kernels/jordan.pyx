# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Jordan network time loops of the Cython backend: the contract and the maths of the Numba
backend's fastrnn/backends/numba_cpu/jordan.py (see fastrnn/backends/driver.py), without the
GIL. The state h is the output y [B,O]; w_hh is W_yh [H,O], w_hr is W_hy [O,H], norms =
(b_hy,); ``relu`` is the cell's act code (bit 0: relu hidden layer; relu // 2: the output
activation, 0 identity, 1 tanh, 2 sigmoid)."""

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from common cimport jordan_out_bwd, jordan_out_fwd, pack_weight, rnn_bwd, rnn_fwd, step_w, step_wt


def forward(floating[:, :, ::1] xw, floating[:, ::1] w_hh, floating[::1] b_rec,
            floating[:, ::1] w_hr, tuple norms, floating[:, ::1] h, floating[:, ::1] c,
            const int64_t[::1] active, bint reverse, bint training, int relu,
            floating[:, :, ::1] y, floating[:, :, ::1] h_prev, tuple buffers):
    cdef floating[:, :, ::1] hidden = buffers[0]
    cdef floating[:, :, ::1] y_out = buffers[1]
    cdef floating[::1] b_hr = norms[0]
    cdef int T = xw.shape[0], B = xw.shape[1], H = xw.shape[2], O = h.shape[1]
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] hw = np.empty((B, H), dtype)
    cdef floating[:, ::1] u = np.empty((B, H), dtype)
    cdef floating[:, ::1] a = np.empty((B, O), dtype)
    cdef floating *w_packed = pack_weight(w_hh, True, T)
    cdef floating *r_packed = pack_weight(w_hr, True, T)
    cdef int s, t, k, n, hidden_relu = relu % 2, out_act = relu // 2
    cdef size_t size = sizeof(floating)
    with nogil:
        for s in range(T):
            t = T - 1 - s if reverse else s
            n = <int>active[t]
            if n == 0:
                continue
            k = t if training else 0
            if training:
                memcpy(&h_prev[k, 0, 0], &h[0, 0], n * O * size)
            step_wt(&h[0, 0], &w_hh[0, 0], w_packed, &hw[0, 0], n, H, O)
            rnn_fwd(&xw[t, 0, 0], &hw[0, 0], &u[0, 0], &hidden[k, 0, 0], n, H, hidden_relu)
            step_wt(&u[0, 0], &w_hr[0, 0], r_packed, &a[0, 0], n, O, H)
            jordan_out_fwd(&a[0, 0], &b_hr[0], &h[0, 0], &y_out[k, 0, 0], n, O, out_act)
            memcpy(&y[t, 0, 0], &h[0, 0], n * O * size)
    free(w_packed)
    free(r_packed)


def backward(floating[:, :, ::1] dy, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, ::1] w_hh, floating[:, ::1] w_hr, tuple norms,
             const int64_t[::1] active, bint reverse, int relu, floating[:, :, ::1] h_prev,
             tuple buffers,
             floating[:, :, ::1] dg_in, floating[:, :, ::1] dg_rec,
             floating[:, :, ::1] dh_out, tuple grads):
    cdef floating[:, :, ::1] hidden = buffers[0]
    cdef floating[:, :, ::1] y_out = buffers[1]
    cdef int T = dy.shape[0], B = dy.shape[1], O = dy.shape[2], H = w_hh.shape[0]
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, ::1] du = np.empty((B, H), dtype)
    cdef floating[:, ::1] no_dy = np.zeros((B, H), dtype)  # rnn_bwd adds a dy: none here
    cdef floating *w_packed = pack_weight(w_hh, False, T)
    cdef floating *r_packed = pack_weight(w_hr, False, T)
    cdef int s, t, n, hidden_relu = relu % 2, out_act = relu // 2
    with nogil:
        for s in range(T):
            t = s if reverse else T - 1 - s
            n = <int>active[t]
            if n == 0:
                continue
            jordan_out_bwd(&dh[0, 0], &dy[t, 0, 0], &y_out[t, 0, 0], &dh_out[t, 0, 0], n, O,
                           out_act)
            step_w(&dh_out[t, 0, 0], &w_hr[0, 0], r_packed, &du[0, 0], n, O, H)
            rnn_bwd(&du[0, 0], &no_dy[0, 0], &hidden[t, 0, 0], &dg_in[t, 0, 0], n, H,
                    hidden_relu)
            step_w(&dg_in[t, 0, 0], &w_hh[0, 0], w_packed, &dh[0, 0], n, H, O)
    free(w_packed)
    free(r_packed)
