/* The CPU backend's own products, where a BLAS call would pack the weight first (DESIGN.md: a
 * BLAS call per step re-packs W_hh every time).
 *
 * Packed once per call, for a time loop's per-step products: C[m,N] = A[m,K] @ Bm[K,N], where
 * Bm is W^T (forward: h @ W_hh^T, W [N,K]) or W itself (backward: dG @ W_hh, W [K,N]). pack()
 * lays Bm out once as panels of NR columns, each [K][NR] contiguous (the last panel
 * zero-padded); the micro-kernel keeps an MR x NR block of C in registers (MR = 4 rows, NR = 3
 * vectors: 12 accumulators + 3 panel vectors + 1 broadcast of the 16 AVX2 registers) and
 * streams the panel once per block of rows.
 *
 * In place, for products of few rows (a cell's step, a short loop): the same micro-kernel on
 * W's own columns (inplace_gemm, A @ W), and the dot form (dot_gemm, A @ W^T: 4 rows of W
 * against DOT_MR = 3 rows of A, lanes summed at the end), one pass over W and no packing.
 *
 * The packed product is single-threaded: the driver runs batch parts on their own cores.
 * dot_gemm, inplace_gemm and row_gemm split by columns over the OpenMP team where a product is
 * large enough and no region runs (team_parts: a cell's step, whose rows are too few for
 * parts; the team is torch's pool in a torch program, one libgomp per process). The kernels
 * are compiled for AVX2 + FMA whatever the build's -march (the rest of the module stays
 * portable) and chosen at run time: packed_gemm_choice() says whether this CPU gets them and
 * why (FASTRNN_GEMM=blas or =packed forces one). Instantiated for float (_f) and double (_d)
 * by packed_impl.h. */
#ifndef FASTRNN_PACKED_H
#define FASTRNN_PACKED_H

#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <pthread.h>

#define FASTRNN_MR 4
#define FASTRNN_NV 3
#define FASTRNN_DOT_MR 3

/* 1: packed kernels in use; 0: BLAS per step. *reason (static text) says why. */
static int packed_gemm_choice(const char **reason) {
    static int cached = -1;
    static const char *why = "";
    if (cached < 0) {
        const char *env = getenv("FASTRNN_GEMM");
        __builtin_cpu_init();
        const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        if (env && strcmp(env, "blas") == 0) {
            cached = 0;
            why = "FASTRNN_GEMM=blas";
        } else if (!avx2) {
            cached = 0;
            why = "the CPU lacks AVX2+FMA";
        } else if (env && strcmp(env, "packed") == 0) {
            cached = 1;
            why = "FASTRNN_GEMM=packed";
        } else if (__builtin_cpu_supports("avx512f")) {
            /* Measured to win on AVX2 CPUs only; an untested CPU must never get slower. */
            cached = 0;
            why = "AVX-512 CPU, where the AVX2 kernels are not measured "
                  "(FASTRNN_GEMM=packed forces them)";
        } else {
            cached = 1;
            why = "AVX2+FMA CPU, where it beats a BLAS call per step";
        }
    }
    if (reason) *reason = why;
    return cached;
}

/* The in-place products of few rows (a cell's step) are split by columns over the OpenMP
 * team, outside parallel regions, in parts of at least this many multiply-adds (~8 us on one
 * core). Measured on 2 cores (AVX2 EPYC, float32, one process alternating split and whole):
 * x @ W^T at 8 rows, I=256, G=1024 51 us split against 99; NumPy cell inference steps, LSTM
 * B=8 H=256 214 against 333 us, B=16 H=128 141 against 202, GRU B=8 H=128 87-94 against
 * 105-110; parts of 2^17 (LSTM B=1 H=256, B=4 H=128) gained nothing beyond the noise. */
#ifndef FASTRNN_SPLIT_MACS
#define FASTRNN_SPLIT_MACS (3L << 16)
#endif

/* 0 in a child forked after this module was loaded: libgomp's team does not survive fork (a
 * region there waits for the parent's workers forever, as torch's own regions do), so the
 * products stay on one thread there (fastrnn/parallel.py likewise leaves the team). */
static int team_usable = 1;

static void team_lost_at_fork(void) { team_usable = 0; }

__attribute__((constructor)) static void watch_forks(void) {
    pthread_atfork(NULL, NULL, team_lost_at_fork);
}

/* Team threads for a product of `macs` multiply-adds over N columns in units of `unit`: 1
 * below FASTRNN_SPLIT_MACS, inside a parallel region (a batch part already has its core), in
 * a forked child or where the team has one thread; else up to omp_get_max_threads(). */
static inline int team_parts(long macs, long N, long unit) {
    if (macs < FASTRNN_SPLIT_MACS || !team_usable || omp_in_parallel()) return 1;
    long parts = omp_get_max_threads();
    const long units = (N + unit - 1) / unit;
    if (parts > units) parts = units;
    if (parts > macs / FASTRNN_SPLIT_MACS) parts = macs / FASTRNN_SPLIT_MACS;
    return parts < 1 ? 1 : (int)parts;
}

/* Part p of `parts` of N columns: [*lo, *hi), whole units but for the last. */
static inline void part_columns(long N, int p, int parts, long unit, long *lo, long *hi) {
    const long units = (N + unit - 1) / unit;
    const long per = (units + parts - 1) / parts;
    *lo = p * per * unit;
    *hi = (p + 1) * per * unit;
    if (*lo > N) *lo = N;
    if (*hi > N) *hi = N;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

/* out[0..3] = the lane sums of a, b, c, d (8 floats each). */
static inline __attribute__((always_inline)) void reduce4_f(__m256 a, __m256 b, __m256 c,
                                                            __m256 d, float *out) {
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
}

/* out[0..3] = the lane sums of a, b, c, d (4 doubles each). */
static inline __attribute__((always_inline)) void reduce4_d(__m256d a, __m256d b, __m256d c,
                                                            __m256d d, double *out) {
    const __m256d ab = _mm256_hadd_pd(a, b), cd = _mm256_hadd_pd(c, d);
    _mm256_storeu_pd(out, _mm256_add_pd(_mm256_permute2f128_pd(ab, cd, 0x20),
                                        _mm256_permute2f128_pd(ab, cd, 0x31)));
}

#define REAL float
#define SUFFIX f
#define LANES 8
#define NATIVE __m256
#define BROADCAST(s) {s, s, s, s, s, s, s, s}
#include "packed_impl.h"
#undef REAL
#undef SUFFIX
#undef LANES
#undef NATIVE
#undef BROADCAST

#define REAL double
#define SUFFIX d
#define LANES 4
#define NATIVE __m256d
#define BROADCAST(s) {s, s, s, s}
#include "packed_impl.h"
#undef REAL
#undef SUFFIX
#undef LANES
#undef NATIVE
#undef BROADCAST

#pragma GCC pop_options

#endif
