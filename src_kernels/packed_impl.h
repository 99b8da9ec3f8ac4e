/* One precision of the products; included by packed.h with REAL, SUFFIX, LANES (the REALs in
 * one 256-bit vector), NATIVE (that vector's intrinsics type) and BROADCAST(s) (an initializer of LANES copies of s: gcc
 * turns it into one vbroadcast, where a loop over the lanes or 0 + s costs instructions). */
#define FP_CAT2(a, b) a##_##b
#define FP_CAT(a, b) FP_CAT2(a, b)
#define FP(name) FP_CAT(name, SUFFIX)
#define FP_NR (FASTRNN_NV * LANES)

/* A 256-bit vector that may sit at any address of a REAL. */
typedef REAL FP(vec) __attribute__((vector_size(32), aligned(sizeof(REAL))));

/* REALs pack() writes for Bm [K,N]. */
static inline long FP(packed_size)(long K, long N) {
    return (N + FP_NR - 1) / FP_NR * FP_NR * K;
}

/* Bm[k,n] = transposed ? w[n*K + k] : w[k*N + n], laid out as panels [N/NR][K][NR]. */
static void FP(pack)(const REAL *restrict w, long K, long N, int transposed,
                     REAL *restrict out) {
    const long panels = (N + FP_NR - 1) / FP_NR;
    for (long p = 0; p < panels; p++) {
        REAL *restrict panel = out + p * K * FP_NR;
        const long n0 = p * FP_NR;
        const long width = N - n0 < FP_NR ? N - n0 : FP_NR;
        if (width < FP_NR) memset(panel, 0, sizeof(REAL) * K * FP_NR);
        if (transposed) {  /* row n of w is column n of Bm: read rows, write strided */
            for (long j = 0; j < width; j++) {
                const REAL *restrict row = w + (n0 + j) * K;
                for (long k = 0; k < K; k++) panel[k * FP_NR + j] = row[k];
            }
        } else {
            for (long k = 0; k < K; k++)
                memcpy(panel + k * FP_NR, w + k * N + n0, sizeof(REAL) * width);
        }
    }
}

/* C[rows, width] = A[rows, K] @ panel, rows <= MR (a constant after inlining); A[i,k] is
 * a[i * lda + k * ldk]; the panel's rows are ldp REALs apart (NR when packed, the weight's row
 * length when read in place) and hold NR readable REALs each. */
static inline __attribute__((always_inline)) void FP(block)(
        const int rows, const REAL *restrict a, long lda, long ldk,
        const REAL *restrict panel, long ldp, long K, REAL *restrict c, long ldc, long width) {
    FP(vec) acc[FASTRNN_MR][FASTRNN_NV];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < FASTRNN_NV; v++) acc[i][v] = (FP(vec)){0};
    for (long k = 0; k < K; k++) {
        FP(vec) b[FASTRNN_NV];
        for (int v = 0; v < FASTRNN_NV; v++) {
            b[v] = *(const FP(vec) *)(panel + k * ldp + v * LANES);
            /* Keep the panel vector in a register: tuned for znver3, gcc folds the load into
             * each row's FMA instead (4 loads where 1 will do: measured 2x slower). */
            __asm__("" : "+x"(b[v]));
        }
        for (int i = 0; i < rows; i++) {
            const REAL s = a[i * lda + k * ldk];
            const FP(vec) bcast = BROADCAST(s);
            for (int v = 0; v < FASTRNN_NV; v++) acc[i][v] += bcast * b[v];
        }
    }
    for (int i = 0; i < rows; i++) {
        if (width == FP_NR) {
            for (int v = 0; v < FASTRNN_NV; v++)
                *(FP(vec) *)(c + i * ldc + v * LANES) = acc[i][v];
        } else {
            REAL tail[FP_NR];
            for (int v = 0; v < FASTRNN_NV; v++) *(FP(vec) *)(tail + v * LANES) = acc[i][v];
            memcpy(c + i * ldc, tail, sizeof(REAL) * width);
        }
    }
}

/* Blocks of MR rows of C[m, width] = A[m,K] @ panel (the last block's row count a constant
 * for the compiler; inlined, so a constant ldk stays one). */
static inline __attribute__((always_inline)) void FP(panel_rows)(
        const REAL *a, long m, long lda, long ldk, const REAL *panel, long ldp, long K,
        REAL *c, long ldc, long width) {
    long i = 0;
    for (; i + FASTRNN_MR <= m; i += FASTRNN_MR)
        FP(block)(FASTRNN_MR, a + i * lda, lda, ldk, panel, ldp, K, c + i * ldc, ldc, width);
    const REAL *ai = a + i * lda;
    REAL *ci = c + i * ldc;
    switch (m - i) {
        case 1: FP(block)(1, ai, lda, ldk, panel, ldp, K, ci, ldc, width); break;
        case 2: FP(block)(2, ai, lda, ldk, panel, ldp, K, ci, ldc, width); break;
        case 3: FP(block)(3, ai, lda, ldk, panel, ldp, K, ci, ldc, width); break;
        default: break;
    }
}

/* C[m,N] (row stride ldc) = A[m,K] (row stride lda) @ Bm, Bm as pack() left it. */
static void FP(packed_gemm)(const REAL *a, long m, long lda, const REAL *packed, long K,
                            long N, REAL *c, long ldc) {
    const long panels = (N + FP_NR - 1) / FP_NR;
    for (long p = 0; p < panels; p++) {
        const long n0 = p * FP_NR;
        const long width = N - n0 < FP_NR ? N - n0 : FP_NR;
        FP(panel_rows)(a, m, lda, 1, packed + p * K * FP_NR, FP_NR, K, c + n0, ldc, width);
    }
}

/* C[m,N] = A[m,K] @ W[K,N] (row-major, C's rows ldc apart, W's ldw; A[i,k] at a[i * lda + k
 * * ldk]), W read in place: its full panels of NR columns are the micro-kernel's panels with
 * row stride ldw; the last, narrower panel is packed (zero-padded), so nothing past W's end is
 * read. Returns 0 when the tail panel's memory could not be had (nothing written then). */
static inline __attribute__((always_inline)) int FP(inplace)(
        const REAL *a, long m, long lda, long ldk, const REAL *w, long ldw, long K, long N,
        REAL *c, long ldc) {
    const long full = N / FP_NR * FP_NR;
    REAL *tail = NULL;
    if (full < N) {
        tail = (REAL *)malloc(sizeof(REAL) * K * FP_NR);
        if (!tail) return 0;
        memset(tail, 0, sizeof(REAL) * K * FP_NR);
        for (long k = 0; k < K; k++)
            memcpy(tail + k * FP_NR, w + k * ldw + full, sizeof(REAL) * (N - full));
    }
    for (long n0 = 0; n0 < full; n0 += FP_NR)
        FP(panel_rows)(a, m, lda, ldk, w + n0, ldw, K, c + n0, ldc, FP_NR);
    if (tail) {
        FP(panel_rows)(a, m, lda, ldk, tail, FP_NR, K, c + full, ldc, N - full);
        free(tail);
    }
    return 1;
}

/* C[m,N] = A[m,K] @ W[K,N], A's rows lda apart (a step's dG @ W_hh), split by columns over
 * the OpenMP team where the product is large enough (team_parts). */
static int FP(inplace_gemm)(const REAL *a, long m, long lda, const REAL *w, long K, long N,
                            REAL *c, long ldc) {
    const int parts = team_parts(m * K * N, N, FP_NR);
    if (parts == 1) return FP(inplace)(a, m, lda, 1, w, N, K, N, c, ldc);
    int done = 1;  /* 0 where a part's tail panel found no memory: BLAS then does it all */
#pragma omp parallel for num_threads(parts) schedule(static, 1) reduction(&& : done)
    for (int p = 0; p < parts; p++) {
        long lo, hi;
        part_columns(N, p, parts, FP_NR, &lo, &hi);
        if (lo < hi && !FP(inplace)(a, m, lda, 1, w + lo, N, K, hi - lo, c + lo, ldc))
            done = 0;
    }
    return done;
}

/* c[N] = a[K] @ W[K,N] for one row a (W row-major, rows ldw apart), the axpy form over 4 of
 * W's rows at a time: c += a[k..k+3] @ W[k..k+3, :], c staying in L1 and W's rows streaming
 * past once, in order (gemv is a BLAS call that may wake BLAS's threads). */
static void FP(row_part)(const REAL *restrict a, const REAL *restrict w, long ldw, long K,
                         long N, REAL *restrict c) {
    const long full = N / LANES * LANES;
    memset(c, 0, sizeof(REAL) * N);
    long k = 0;
    for (; k + 4 <= K; k += 4) {
        const FP(vec) s0 = BROADCAST(a[k]), s1 = BROADCAST(a[k + 1]);
        const FP(vec) s2 = BROADCAST(a[k + 2]), s3 = BROADCAST(a[k + 3]);
        const REAL *restrict w0 = w + k * ldw;
        for (long n = 0; n < full; n += LANES) {
            FP(vec) acc = *(FP(vec) *)(c + n);
            acc += s0 * *(const FP(vec) *)(w0 + n);
            acc += s1 * *(const FP(vec) *)(w0 + ldw + n);
            acc += s2 * *(const FP(vec) *)(w0 + 2 * ldw + n);
            acc += s3 * *(const FP(vec) *)(w0 + 3 * ldw + n);
            *(FP(vec) *)(c + n) = acc;
        }
    }
    for (; k < K; k++) {
        const FP(vec) s0 = BROADCAST(a[k]);
        for (long n = 0; n < full; n += LANES)
            *(FP(vec) *)(c + n) += s0 * *(const FP(vec) *)(w + k * ldw + n);
    }
    for (long n = full; n < N; n++) {
        REAL sum = 0;
        for (k = 0; k < K; k++) sum += a[k] * w[k * ldw + n];
        c[n] = sum;
    }
}

/* c[N] = a[K] @ W[K,N] (rows N apart), split by columns over the team (team_parts). */
static void FP(row_gemm)(const REAL *a, const REAL *w, long K, long N, REAL *c) {
    const int parts = team_parts(K * N, N, LANES);
    if (parts == 1) {
        FP(row_part)(a, w, N, K, N, c);
        return;
    }
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        long lo, hi;
        part_columns(N, p, parts, LANES, &lo, &hi);
        if (lo < hi) FP(row_part)(a, w + lo, N, K, hi - lo, c + lo);
    }
}

/* C[M,N] = A[K,M]^T @ B[K,N] (row-major, C's rows N apart) for few rows K (a step's weight
 * gradient dG^T @ h): B read in place, A through its transpose's strides. */
static int FP(inplace_tn_gemm)(const REAL *a, long K, long M, const REAL *b, long N,
                               REAL *c) {
    return FP(inplace)(a, M, 1, M, b, N, K, N, c, N);
}

/* C[rows, 4] = A[rows, K] @ [w0 w1 w2 w3]^T, the dot form: 4 weight rows against `rows` <=
 * DOT_MR rows of A (a constant after inlining), one vector of K per accumulator, the K % LANES
 * tail from zero-padded copies; the lanes summed at the end (REDUCE4). Only the first `count`
 * of the 4 columns are stored (the rest repeat a real row). */
static inline __attribute__((always_inline)) void FP(dot_block)(
        const int rows, const REAL *restrict a, long lda, const REAL *const w[4], long K,
        REAL *restrict c, long ldc, int count) {
    FP(vec) acc[FASTRNN_DOT_MR][4];
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = (FP(vec)){0};
    long k = 0;
    for (; k + LANES <= K; k += LANES) {
        FP(vec) x[FASTRNN_DOT_MR];
        for (int i = 0; i < rows; i++) x[i] = *(const FP(vec) *)(a + i * lda + k);
        for (int j = 0; j < 4; j++) {
            const FP(vec) wj = *(const FP(vec) *)(w[j] + k);
            for (int i = 0; i < rows; i++) acc[i][j] += x[i] * wj;
        }
    }
    if (k < K) {
        REAL pad[LANES] = {0};
        const size_t bytes = sizeof(REAL) * (K - k);
        FP(vec) x[FASTRNN_DOT_MR];
        for (int i = 0; i < rows; i++) {
            memcpy(pad, a + i * lda + k, bytes);
            x[i] = *(const FP(vec) *)pad;
        }
        for (int j = 0; j < 4; j++) {
            memcpy(pad, w[j] + k, bytes);
            const FP(vec) wj = *(const FP(vec) *)pad;
            for (int i = 0; i < rows; i++) acc[i][j] += x[i] * wj;
        }
    }
    for (int i = 0; i < rows; i++) {
        REAL sums[4];
        FP(reduce4)((NATIVE)acc[i][0], (NATIVE)acc[i][1], (NATIVE)acc[i][2], (NATIVE)acc[i][3],
                    sums);
        if (count == 4) memcpy(c + i * ldc, sums, sizeof(sums));
        else memcpy(c + i * ldc, sums, sizeof(REAL) * count);
    }
}

/* C[m,N] = A[m,K] @ W[N,K]^T (row-major, rows ldc / lda / K apart), W read in place: no
 * packing, so a product of few rows costs one pass over W (a BLAS call packs W first). */
static void FP(dot_part)(const REAL *a, long m, long lda, const REAL *w, long K, long N,
                         REAL *c, long ldc) {
    for (long n = 0; n < N; n += 4) {
        const int count = N - n < 4 ? (int)(N - n) : 4;
        const REAL *rows[4];
        for (int j = 0; j < 4; j++) rows[j] = w + (n + (j < count ? j : 0)) * K;
        long i = 0;
        for (; i + FASTRNN_DOT_MR <= m; i += FASTRNN_DOT_MR)
            FP(dot_block)(FASTRNN_DOT_MR, a + i * lda, lda, rows, K, c + i * ldc + n, ldc,
                          count);
        switch (m - i) {
            case 1: FP(dot_block)(1, a + i * lda, lda, rows, K, c + i * ldc + n, ldc, count);
                    break;
            case 2: FP(dot_block)(2, a + i * lda, lda, rows, K, c + i * ldc + n, ldc, count);
                    break;
            default: break;
        }
    }
}

/* dot_part split by columns (W's rows) over the team (team_parts). */
static void FP(dot_gemm)(const REAL *a, long m, long lda, const REAL *w, long K, long N,
                         REAL *c, long ldc) {
    const int parts = team_parts(m * K * N, N, 4);
    if (parts == 1) {
        FP(dot_part)(a, m, lda, w, K, N, c, ldc);
        return;
    }
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        long lo, hi;
        part_columns(N, p, parts, 4, &lo, &hi);
        if (lo < hi) FP(dot_part)(a, m, lda, w + lo * K, K, hi - lo, c + lo, ldc);
    }
}

#undef FP_CAT2
#undef FP_CAT
#undef FP
#undef FP_NR
