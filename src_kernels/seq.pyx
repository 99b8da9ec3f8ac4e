# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Whole-sequence products of the Cython backend, over [T,B,.] arrays (one GEMM each)."""

import numpy as np

from cython cimport floating

from common cimport add_to, layer_norm_rows, layer_norm_rows_bwd, matmul_w, matmul_wt
from common cimport column_dots as _column_dots
from common cimport matmul_tn as _matmul_tn
from common cimport MAX_INPLACE_ROWS, packed_gemm_choice


def step_product():
    """(packed, reason): whether the time loops' per-step products run on weights packed once
    per call (src_kernels/packed.h) or call BLAS every step, and why."""
    cdef const char *reason
    cdef int packed = packed_gemm_choice(&reason)
    return bool(packed), reason.decode()


def blas_free_rows():
    """Products of at most this many rows (project, matmul_nn and matmul_tn, a loop's step
    product) read their operands in place instead of calling BLAS: 0 where this CPU keeps
    BLAS."""
    return MAX_INPLACE_ROWS if packed_gemm_choice(NULL) else 0


def _dtype(floating[:, :, ::1] a):
    return np.float32 if floating is float else np.float64


def project(floating[:, :, ::1] x, floating[:, ::1] w, floating[::1] bias,
            floating[:, :, ::1] o):
    """o [T,B,G] = x [T,B,I] @ w^T + bias for w [G,I], bias [G] or [0] (none)."""
    cdef int rows = x.shape[0] * x.shape[1], G = w.shape[0], I = w.shape[1]
    cdef int r
    if o.shape[0] * o.shape[1] != rows or o.shape[2] != G:
        raise ValueError("project: out must be [T,B,G]")
    cdef floating *flat
    with nogil:
        matmul_wt(&x[0, 0, 0], &w[0, 0], &o[0, 0, 0], rows, G, I)
        if bias.shape[0] > 0:
            flat = &o[0, 0, 0]
            for r in range(rows):
                add_to(flat + <size_t>r * G, &bias[0], G)


def matmul_nn(floating[:, :, ::1] a, floating[:, ::1] w, floating[:, :, ::1] o):
    """o [T,B,I] = a [T,B,G] @ w [G,I]."""
    cdef int rows = a.shape[0] * a.shape[1], G = w.shape[0], I = w.shape[1]
    if o.shape[0] * o.shape[1] != rows or o.shape[2] != I:
        raise ValueError("matmul_nn: out must be [T,B,I]")
    with nogil:
        matmul_w(&a[0, 0, 0], &w[0, 0], &o[0, 0, 0], rows, G, I)


def matmul_tn(floating[:, :, ::1] a, floating[:, :, ::1] b):
    """a^T @ b over all T*B rows: a [T,B,M], b [T,B,N] -> [M,N]."""
    cdef int rows = a.shape[0] * a.shape[1], M = a.shape[2], N = b.shape[2]
    out = np.empty((M, N), _dtype(a))
    cdef floating[:, ::1] o = out
    with nogil:
        _matmul_tn(&a[0, 0, 0], &b[0, 0, 0], &o[0, 0], rows, M, N)
    return out


def column_sums(floating[:, :, ::1] a):
    """a [T,B,G] summed over T and B: [G]."""
    cdef Py_ssize_t t, b, j
    out = np.zeros(a.shape[2], _dtype(a))
    cdef floating[::1] o = out
    with nogil:
        for t in range(a.shape[0]):
            for b in range(a.shape[1]):
                for j in range(a.shape[2]):
                    o[j] += a[t, b, j]
    return out


def layer_norm(floating[:, :, ::1] a, floating[::1] gain, tuple shifts):
    """Each row of a [T,B,N] normalised: (gain * hat + sum(shifts), hat, 1/std [T,B,1]);
    hat overwrites a."""
    cdef long R = a.shape[0] * a.shape[1], N = a.shape[2]
    out = np.empty((a.shape[0], a.shape[1], N), _dtype(a))
    rstd = np.empty((a.shape[0], a.shape[1], 1), _dtype(a))
    cdef floating[:, :, ::1] o = out
    cdef floating[:, :, ::1] s = rstd
    cdef floating[::1] s1
    cdef floating[::1] s2
    cdef floating *p1 = NULL
    cdef floating *p2 = NULL
    if len(shifts) > 0:
        s1 = shifts[0]
        p1 = &s1[0]
    if len(shifts) > 1:
        s2 = shifts[1]
        p2 = &s2[0]
    if R:
        with nogil:
            layer_norm_rows(&a[0, 0, 0], &gain[0], p1, p2, &o[0, 0, 0], &s[0, 0, 0], R, N)
    return out, np.asarray(a), rstd


def layer_norm_backward(floating[:, :, ::1] d_out, floating[::1] gain,
                        floating[:, :, ::1] hat, floating[:, :, ::1] rstd):
    """(the gradient of layer_norm's input, of its gain) from that of its output."""
    cdef long R = d_out.shape[0] * d_out.shape[1], N = d_out.shape[2]
    d_in = np.empty((d_out.shape[0], d_out.shape[1], N), _dtype(d_out))
    d_gain = np.zeros(N, _dtype(d_out))
    cdef floating[:, :, ::1] di = d_in
    cdef floating[::1] dg = d_gain
    if R:
        with nogil:
            layer_norm_rows_bwd(&d_out[0, 0, 0], &gain[0], &hat[0, 0, 0], &rstd[0, 0, 0],
                                &di[0, 0, 0], &dg[0], R, N)
    return d_in, d_gain


def column_dots(floating[:, :, ::1] a, floating[:, :, ::1] b):
    """The sum over T and B of a * b ([T,B,N] each): [N]."""
    out = np.zeros(a.shape[2], _dtype(a))
    cdef floating[::1] o = out
    if a.shape[0] * a.shape[1]:
        with nogil:
            _column_dots(&a[0, 0, 0], &b[0, 0, 0], &o[0], a.shape[0] * a.shape[1], a.shape[2])
    return out
