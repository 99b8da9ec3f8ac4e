/* One precision of the packed product; included by packed.h with REAL, SUFFIX, LANES (the
 * REALs in one 256-bit vector) and BROADCAST(s) (an initializer of LANES copies of s: gcc
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

/* C[rows, width] = A[rows, K] @ panel, rows <= MR (a constant after inlining). */
static inline __attribute__((always_inline)) void FP(block)(
        const int rows, const REAL *restrict a, long lda, const REAL *restrict panel, long K,
        REAL *restrict c, long ldc, long width) {
    FP(vec) acc[FASTRNN_MR][FASTRNN_NV];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < FASTRNN_NV; v++) acc[i][v] = (FP(vec)){0};
    for (long k = 0; k < K; k++) {
        FP(vec) b[FASTRNN_NV];
        for (int v = 0; v < FASTRNN_NV; v++) {
            b[v] = *(const FP(vec) *)(panel + k * FP_NR + v * LANES);
            /* Keep the panel vector in a register: tuned for znver3, gcc folds the load into
             * each row's FMA instead (4 loads where 1 will do: measured 2x slower). */
            __asm__("" : "+x"(b[v]));
        }
        for (int i = 0; i < rows; i++) {
            const REAL s = a[i * lda + k];
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

/* C[m,N] (row stride ldc) = A[m,K] (row stride lda) @ Bm, Bm as pack() left it. */
static void FP(packed_gemm)(const REAL *a, long m, long lda, const REAL *packed, long K,
                            long N, REAL *c, long ldc) {
    const long panels = (N + FP_NR - 1) / FP_NR;
    for (long p = 0; p < panels; p++) {
        const long n0 = p * FP_NR;
        const long width = N - n0 < FP_NR ? N - n0 : FP_NR;
        const REAL *panel = packed + p * K * FP_NR;
        long i = 0;
        for (; i + FASTRNN_MR <= m; i += FASTRNN_MR)
            FP(block)(FASTRNN_MR, a + i * lda, lda, panel, K, c + i * ldc + n0, ldc, width);
        const REAL *ai = a + i * lda;
        REAL *ci = c + i * ldc + n0;
        switch (m - i) {  /* the last rows, with the row count a constant for the compiler */
            case 1: FP(block)(1, ai, lda, panel, K, ci, ldc, width); break;
            case 2: FP(block)(2, ai, lda, panel, K, ci, ldc, width); break;
            case 3: FP(block)(3, ai, lda, panel, K, ci, ldc, width); break;
            default: break;
        }
    }
}

#undef FP_CAT2
#undef FP_CAT
#undef FP
#undef FP_NR
