# cython: language_level=3
"""Shared by the Cython kernels: BLAS products (SciPy's cython_blas, the same OpenBLAS that
Numba calls) on row-major buffers, the per-step product on a weight packed once per call
(packed.h), and fused-type wrappers of the C gate passes (gates.h)."""

cimport cython
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv


from libc.string cimport memset


cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


cdef extern from "packed.h" nogil:
    int packed_gemm_choice(const char **reason)
    long packed_size_f(long K, long N)
    long packed_size_d(long K, long N)
    void pack_f(const float *w, long K, long N, int transposed, float *out)
    void pack_d(const double *w, long K, long N, int transposed, double *out)
    void packed_gemm_f(const float *a, long m, long lda, const float *packed, long K, long N,
                       float *c, long ldc)
    void packed_gemm_d(const double *a, long m, long lda, const double *packed, long K,
                       long N, double *c, long ldc)
    int inplace_gemm_f(const float *a, long m, long lda, const float *w, long K, long N,
                       float *c, long ldc)
    int inplace_gemm_d(const double *a, long m, long lda, const double *w, long K, long N,
                       double *c, long ldc)
    void row_gemm_f(const float *a, const float *w, long K, long N, float *c)
    void row_gemm_d(const double *a, const double *w, long K, long N, double *c)
    int inplace_tn_gemm_f(const float *a, long K, long M, const float *b, long N, float *c)
    int inplace_tn_gemm_d(const double *a, long K, long M, const double *b, long N,
                          double *c)
    void dot_gemm_f(const float *a, long m, long lda, const float *w, long K, long N,
                    float *c, long ldc)
    void dot_gemm_d(const double *a, long m, long lda, const double *w, long K, long N,
                    double *c, long ldc)


cdef extern from "gates.h" nogil:
    void add_f(const float *a, const float *b, float *out, long count)
    void add_d(const double *a, const double *b, double *out, long count)
    void add_to_f(float *out, const float *b, long count)
    void add_to_d(double *out, const double *b, long count)
    void rnn_fwd_f(const float *xw, const float *hw, float *h, float *h_new, long n, long H,
                   int relu)
    void rnn_fwd_d(const double *xw, const double *hw, double *h, double *h_new, long n,
                   long H, int relu)
    void rnn_bwd_f(const float *dh, const float *dy, const float *h_new, float *dpre, long n,
                   long H, int relu)
    void rnn_bwd_d(const double *dh, const double *dy, const double *h_new, double *dpre,
                   long n, long H, int relu)
    void jordan_out_fwd_f(const float *a, const float *b_hr, float *h, float *y_out, long n,
                          long O, int act)
    void jordan_out_fwd_d(const double *a, const double *b_hr, double *h, double *y_out,
                          long n, long O, int act)
    void jordan_out_bwd_f(const float *dh, const float *dy, const float *y_out, float *d_a,
                          long n, long O, int act)
    void jordan_out_bwd_d(const double *dh, const double *dy, const double *y_out,
                          double *d_a, long n, long O, int act)
    void lstm_fwd_f(const float *xw, const float *hw, float *c, float *m, float *gates,
                    float *tanh_c, long n, long H)
    void lstm_fwd_d(const double *xw, const double *hw, double *c, double *m, double *gates,
                    double *tanh_c, long n, long H)
    void lstm_bwd_f(const float *dm, const float *gates, const float *c_prev,
                    const float *tanh_c, float *dc, float *dgates, long n, long H)
    void lstm_bwd_d(const double *dm, const double *gates, const double *c_prev,
                    const double *tanh_c, double *dc, double *dgates, long n, long H)
    void gru_fwd_f(const float *xw, const float *hw, const float *b_hh, float *h,
                   float *gates, float *hw_n, long n, long H)
    void gru_fwd_d(const double *xw, const double *hw, const double *b_hh, double *h,
                   double *gates, double *hw_n, long n, long H)
    void gru_bwd_f(const float *dh, const float *dy, const float *h_prev, const float *gates,
                   const float *hw_n, float *dg_in, float *dg_rec, float *direct, long n,
                   long H)
    void gru_bwd_d(const double *dh, const double *dy, const double *h_prev,
                   const double *gates, const double *hw_n, double *dg_in, double *dg_rec,
                   double *direct, long n, long H)
    void layer_norm_rows_f(float *a, const float *gain, const float *s1, const float *s2,
                           float *out, float *rstd, long R, long N)
    void layer_norm_rows_d(double *a, const double *gain, const double *s1, const double *s2,
                           double *out, double *rstd, long R, long N)
    void layer_norm_rows_bwd_f(const float *d_out, const float *gain, const float *hat,
                               const float *rstd, float *d_in, float *d_gain, long R, long N)
    void layer_norm_rows_bwd_d(const double *d_out, const double *gain, const double *hat,
                               const double *rstd, double *d_in, double *d_gain, long R,
                               long N)
    void column_dots_f(const float *a, const float *b, float *out, long R, long N)
    void column_dots_d(const double *a, const double *b, double *out, long R, long N)
    void ln_lstm_fwd_f(const float *xw, float *hw, const float *g_hh, const float *g_c,
                       const float *b_c, float *c, float *h, float *gates, float *hw_hat,
                       float *c_hat, float *tanh_c, float *rstd, long n, long H)
    void ln_lstm_fwd_d(const double *xw, double *hw, const double *g_hh, const double *g_c,
                       const double *b_c, double *c, double *h, double *gates,
                       double *hw_hat, double *c_hat, double *tanh_c, double *rstd, long n,
                       long H)
    void ln_lstm_bwd_f(const float *dh, const float *dy, const float *gates,
                       const float *c_prev, const float *hw_hat, const float *c_hat,
                       const float *tanh_c, const float *rstd, const float *g_hh,
                       const float *g_c, float *dc, float *dg, float *d_hw, float *d_cn,
                       float *d_c, long n, long H)
    void ln_lstm_bwd_d(const double *dh, const double *dy, const double *gates,
                       const double *c_prev, const double *hw_hat, const double *c_hat,
                       const double *tanh_c, const double *rstd, const double *g_hh,
                       const double *g_c, double *dc, double *dg, double *d_hw, double *d_cn,
                       double *d_c, long n, long H)
    void ln_gru_fwd_f(const float *xw, float *hw, const float *g_hh, const float *b_hh,
                      float *h, float *gates, float *hw_n, float *hw_hat, float *rstd, long n,
                      long H)
    void ln_gru_fwd_d(const double *xw, double *hw, const double *g_hh, const double *b_hh,
                      double *h, double *gates, double *hw_n, double *hw_hat, double *rstd,
                      long n, long H)
    void ln_gru_bwd_f(const float *dh, const float *dy, const float *h_prev,
                      const float *gates, const float *hw_n, const float *hw_hat,
                      const float *rstd, const float *g_hh, float *dg_in, float *dg_rec,
                      float *d_hw, float *direct, long n, long H)
    void ln_gru_bwd_d(const double *dh, const double *dy, const double *h_prev,
                      const double *gates, const double *hw_n, const double *hw_hat,
                      const double *rstd, const double *g_hh, double *dg_in, double *dg_rec,
                      double *d_hw, double *direct, long n, long H)


cdef inline void _gemm(char ta, char tb, int M, int N, int K, floating *A, int lda,
                       floating *B, int ldb, floating *C, int ldc) noexcept nogil:
    """C[M,N] = op(A) @ op(B), column-major BLAS (a row-major product is its transpose)."""
    cdef floating one = 1
    cdef floating zero = 0
    if floating is float:
        sgemm(&ta, &tb, &M, &N, &K, &one, A, &lda, B, &ldb, &zero, C, &ldc)
    else:
        dgemm(&ta, &tb, &M, &N, &K, &one, A, &lda, B, &ldb, &zero, C, &ldc)


cdef inline void _gemv(char t, int M, int N, floating *A, floating *x,
                       floating *y) noexcept nogil:
    """y = op(A) @ x for A column-major [M,N] (lda M), unit strides."""
    cdef int inc = 1
    cdef floating one = 1
    cdef floating zero = 0
    if floating is float:
        sgemv(&t, &M, &N, &one, A, &M, x, &inc, &zero, y, &inc)
    else:
        dgemv(&t, &M, &N, &one, A, &M, x, &inc, &zero, y, &inc)


cdef enum:
    # products of at most this many rows read the weight in place (packed.h) where the CPU has
    # the packed kernels: a BLAS call packs the whole weight first
    MAX_INPLACE_ROWS = 16


cdef inline void matmul_wt(floating *a, floating *w, floating *out, int n, int N,
                           int K) noexcept nogil:
    """out[n,N] = a[n,K] @ w[N,K]^T (row-major). Few rows read w in place (dot_gemm: as fast
    as gemv at one row, 2.5-6x a BLAS call at 2-16, I=H=128/256, float32, on an AVX2 EPYC);
    where the CPU keeps BLAS one row goes to gemv (DESIGN.md: sgemm with one row is several
    times slower)."""
    if K == 0:  # BLAS refuses a leading dimension of 0 ("illegal value") and writes nothing
        memset(out, 0, <size_t>n * N * sizeof(floating))
    elif 0 < n <= MAX_INPLACE_ROWS and packed_gemm_choice(NULL):
        if floating is float:
            dot_gemm_f(a, n, K, w, K, N, out, N)
        else:
            dot_gemm_d(a, n, K, w, K, N, out, N)
    elif n == 1:
        _gemv(c'T', K, N, w, a, out)
    elif n > 1:
        _gemm(c'T', c'N', N, n, K, w, K, a, K, out, N)


cdef inline void matmul_w(floating *a, floating *w, floating *out, int n, int N,
                          int K) noexcept nogil:
    """out[n,K] = a[n,N] @ w[N,K] (row-major); a few rows read w in place (one: row_gemm, as
    fast as gemv and no BLAS call that wakes BLAS's threads, which fought torch's spinning
    OpenMP workers in a fastrnn.torch cell's backward; more: inplace_gemm, as fast as
    dot_gemm); one row goes to gemv where the CPU keeps BLAS."""
    cdef int done = 0
    if N == 0:
        memset(out, 0, <size_t>n * K * sizeof(floating))
        return
    if n == 1 and packed_gemm_choice(NULL):
        if floating is float:
            row_gemm_f(a, w, N, K, out)
        else:
            row_gemm_d(a, w, N, K, out)
        return
    if 1 < n <= MAX_INPLACE_ROWS and packed_gemm_choice(NULL):
        if floating is float:
            done = inplace_gemm_f(a, n, N, w, N, K, out, K)
        else:
            done = inplace_gemm_d(a, n, N, w, N, K, out, K)
    if done:
        return
    if n == 1:
        _gemv(c'N', K, N, w, a, out)
    elif n > 1:
        _gemm(c'N', c'N', K, n, N, w, K, a, N, out, K)


cdef inline void matmul_tn(floating *a, floating *b, floating *out, int rows, int M,
                           int N) noexcept nogil:
    """out[M,N] = a[rows,M]^T @ b[rows,N] (row-major); few rows read both in place
    (inplace_tn_gemm: a step's weight gradient, where BLAS packs both first)."""
    cdef int done = 0
    if rows == 0:
        memset(out, 0, <size_t>M * N * sizeof(floating))
        return
    if rows <= MAX_INPLACE_ROWS and packed_gemm_choice(NULL):
        if floating is float:
            done = inplace_tn_gemm_f(a, rows, M, b, N, out)
        else:
            done = inplace_tn_gemm_d(a, rows, M, b, N, out)
    if not done:
        _gemm(c'N', c'T', N, M, rows, b, N, a, M, out, N)


cdef enum:
    # a loop of fewer steps keeps the BLAS call per step: packing costs about one step's product
    MIN_PACKED_STEPS = 4


cdef inline floating *pack_weight(floating[:, ::1] w, bint transposed,
                                  long steps) noexcept nogil:
    """w [R,C] packed once for a time loop's per-step products (packed.h): for step_wt when
    `transposed` (a @ w^T), for step_w otherwise (a @ w); the caller frees it. NULL where BLAS
    serves: packed kernels not chosen for this CPU, no weight, too few steps to pay for
    packing, or no memory."""
    cdef long R = w.shape[0], C = w.shape[1]
    cdef long K = C if transposed else R
    cdef long N = R if transposed else C
    cdef void *out = NULL
    if steps < MIN_PACKED_STEPS or R == 0 or C == 0 or not packed_gemm_choice(NULL):
        return NULL
    cdef long size = packed_size_f(K, N) if floating is float else packed_size_d(K, N)
    if posix_memalign(&out, 64, size * sizeof(floating)) != 0:
        return NULL
    with cython.boundscheck(False):
        if floating is float:
            pack_f(&w[0, 0], K, N, transposed, <float *>out)
        else:
            pack_d(&w[0, 0], K, N, transposed, <double *>out)
    return <floating *>out


cdef inline void packed_product(floating *a, floating *packed, floating *out, int n, int K,
                                int N) noexcept nogil:
    """out[n,N] = a[n,K] @ Bm[K,N], Bm packed by pack_weight."""
    if floating is float:
        packed_gemm_f(a, n, K, packed, K, N, out, N)
    else:
        packed_gemm_d(a, n, K, packed, K, N, out, N)


cdef inline void step_wt(floating *a, floating *w, floating *packed, floating *out, int n,
                         int N, int K) noexcept nogil:
    """out[n,N] = a[n,K] @ w[N,K]^T, on `packed` (pack_weight(w, True)) unless it is NULL."""
    if packed == NULL:
        matmul_wt(a, w, out, n, N, K)
    else:
        packed_product(a, packed, out, n, K, N)


cdef inline void step_w(floating *a, floating *w, floating *packed, floating *out, int n,
                        int N, int K) noexcept nogil:
    """out[n,K] = a[n,N] @ w[N,K], on `packed` (pack_weight(w, False)) unless it is NULL."""
    if packed == NULL:
        matmul_w(a, w, out, n, N, K)
    else:
        packed_product(a, packed, out, n, N, K)


cdef inline void add(floating *a, floating *b, floating *out, long count) noexcept nogil:
    if floating is float:
        add_f(a, b, out, count)
    else:
        add_d(a, b, out, count)


cdef inline void add_to(floating *out, floating *b, long count) noexcept nogil:
    if floating is float:
        add_to_f(out, b, count)
    else:
        add_to_d(out, b, count)


# Fused-type entry points of the gate passes (gates.h): one name per pass for both precisions.

cdef inline void rnn_fwd(floating *xw, floating *hw, floating *h, floating *h_new, long n,
                         long H, int relu) noexcept nogil:
    if floating is float:
        rnn_fwd_f(xw, hw, h, h_new, n, H, relu)
    else:
        rnn_fwd_d(xw, hw, h, h_new, n, H, relu)


cdef inline void rnn_bwd(floating *dh, floating *dy, floating *h_new, floating *dpre, long n,
                         long H, int relu) noexcept nogil:
    if floating is float:
        rnn_bwd_f(dh, dy, h_new, dpre, n, H, relu)
    else:
        rnn_bwd_d(dh, dy, h_new, dpre, n, H, relu)


cdef inline void jordan_out_fwd(floating *a, floating *b_hr, floating *h, floating *y_out,
                                long n, long O, int act) noexcept nogil:
    if floating is float:
        jordan_out_fwd_f(a, b_hr, h, y_out, n, O, act)
    else:
        jordan_out_fwd_d(a, b_hr, h, y_out, n, O, act)


cdef inline void jordan_out_bwd(floating *dh, floating *dy, floating *y_out, floating *d_a,
                                long n, long O, int act) noexcept nogil:
    if floating is float:
        jordan_out_bwd_f(dh, dy, y_out, d_a, n, O, act)
    else:
        jordan_out_bwd_d(dh, dy, y_out, d_a, n, O, act)


cdef inline void lstm_fwd(floating *xw, floating *hw, floating *c, floating *m,
                          floating *gates, floating *tanh_c, long n, long H) noexcept nogil:
    if floating is float:
        lstm_fwd_f(xw, hw, c, m, gates, tanh_c, n, H)
    else:
        lstm_fwd_d(xw, hw, c, m, gates, tanh_c, n, H)


cdef inline void lstm_bwd(floating *dm, floating *gates, floating *c_prev, floating *tanh_c,
                          floating *dc, floating *dgates, long n, long H) noexcept nogil:
    if floating is float:
        lstm_bwd_f(dm, gates, c_prev, tanh_c, dc, dgates, n, H)
    else:
        lstm_bwd_d(dm, gates, c_prev, tanh_c, dc, dgates, n, H)


cdef inline void gru_fwd(floating *xw, floating *hw, floating *b_hh, floating *h,
                         floating *gates, floating *hw_n, long n, long H) noexcept nogil:
    if floating is float:
        gru_fwd_f(xw, hw, b_hh, h, gates, hw_n, n, H)
    else:
        gru_fwd_d(xw, hw, b_hh, h, gates, hw_n, n, H)


cdef inline void gru_bwd(floating *dh, floating *dy, floating *h_prev, floating *gates,
                         floating *hw_n, floating *dg_in, floating *dg_rec, floating *direct,
                         long n, long H) noexcept nogil:
    if floating is float:
        gru_bwd_f(dh, dy, h_prev, gates, hw_n, dg_in, dg_rec, direct, n, H)
    else:
        gru_bwd_d(dh, dy, h_prev, gates, hw_n, dg_in, dg_rec, direct, n, H)


cdef inline void ln_lstm_fwd(floating *xw, floating *hw, floating *g_hh, floating *g_c,
                             floating *b_c, floating *c, floating *h, floating *gates,
                             floating *hw_hat, floating *c_hat, floating *tanh_c,
                             floating *rstd, long n, long H) noexcept nogil:
    if floating is float:
        ln_lstm_fwd_f(xw, hw, g_hh, g_c, b_c, c, h, gates, hw_hat, c_hat, tanh_c, rstd, n, H)
    else:
        ln_lstm_fwd_d(xw, hw, g_hh, g_c, b_c, c, h, gates, hw_hat, c_hat, tanh_c, rstd, n, H)


cdef inline void ln_lstm_bwd(floating *dh, floating *dy, floating *gates, floating *c_prev,
                             floating *hw_hat, floating *c_hat, floating *tanh_c,
                             floating *rstd, floating *g_hh, floating *g_c, floating *dc,
                             floating *dg, floating *d_hw, floating *d_cn, floating *d_c,
                             long n, long H) noexcept nogil:
    if floating is float:
        ln_lstm_bwd_f(dh, dy, gates, c_prev, hw_hat, c_hat, tanh_c, rstd, g_hh, g_c, dc, dg,
                      d_hw, d_cn, d_c, n, H)
    else:
        ln_lstm_bwd_d(dh, dy, gates, c_prev, hw_hat, c_hat, tanh_c, rstd, g_hh, g_c, dc, dg,
                      d_hw, d_cn, d_c, n, H)


cdef inline void ln_gru_fwd(floating *xw, floating *hw, floating *g_hh, floating *b_hh,
                            floating *h, floating *gates, floating *hw_n, floating *hw_hat,
                            floating *rstd, long n, long H) noexcept nogil:
    if floating is float:
        ln_gru_fwd_f(xw, hw, g_hh, b_hh, h, gates, hw_n, hw_hat, rstd, n, H)
    else:
        ln_gru_fwd_d(xw, hw, g_hh, b_hh, h, gates, hw_n, hw_hat, rstd, n, H)


cdef inline void ln_gru_bwd(floating *dh, floating *dy, floating *h_prev, floating *gates,
                            floating *hw_n, floating *hw_hat, floating *rstd, floating *g_hh,
                            floating *dg_in, floating *dg_rec, floating *d_hw,
                            floating *direct, long n, long H) noexcept nogil:
    if floating is float:
        ln_gru_bwd_f(dh, dy, h_prev, gates, hw_n, hw_hat, rstd, g_hh, dg_in, dg_rec, d_hw,
                     direct, n, H)
    else:
        ln_gru_bwd_d(dh, dy, h_prev, gates, hw_n, hw_hat, rstd, g_hh, dg_in, dg_rec, d_hw,
                     direct, n, H)


cdef inline void layer_norm_rows(floating *a, floating *gain, floating *s1, floating *s2,
                                 floating *out, floating *rstd, long R,
                                 long N) noexcept nogil:
    if floating is float:
        layer_norm_rows_f(a, gain, s1, s2, out, rstd, R, N)
    else:
        layer_norm_rows_d(a, gain, s1, s2, out, rstd, R, N)


cdef inline void layer_norm_rows_bwd(floating *d_out, floating *gain, floating *hat,
                                     floating *rstd, floating *d_in, floating *d_gain, long R,
                                     long N) noexcept nogil:
    if floating is float:
        layer_norm_rows_bwd_f(d_out, gain, hat, rstd, d_in, d_gain, R, N)
    else:
        layer_norm_rows_bwd_d(d_out, gain, hat, rstd, d_in, d_gain, R, N)


cdef inline void column_dots(floating *a, floating *b, floating *out, long R,
                             long N) noexcept nogil:
    if floating is float:
        column_dots_f(a, b, out, R, N)
    else:
        column_dots_d(a, b, out, R, N)
