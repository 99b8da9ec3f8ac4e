/* The per-step recurrent product on a weight packed once per call (DESIGN.md: a BLAS call per
 * step re-packs W_hh every time).
 *
 * C[m,N] = A[m,K] @ Bm[K,N], where Bm is W^T (forward: h @ W_hh^T, W [N,K]) or W itself
 * (backward: dG @ W_hh, W [K,N]). pack() lays Bm out once as panels of NR columns, each [K][NR]
 * contiguous (the last panel zero-padded); the micro-kernel keeps an MR x NR block of C in
 * registers (MR = 4 rows, NR = 3 vectors: 12 accumulators + 3 panel vectors + 1 broadcast of
 * the 16 AVX2 registers) and streams the panel once per block of rows.
 *
 * Single-threaded: the driver runs batch parts on their own cores. The kernels are compiled for
 * AVX2 + FMA whatever the build's -march (the rest of the module stays portable) and chosen at
 * run time: packed_gemm_choice() says whether this CPU gets them and why (FASTRNN_GEMM=blas or
 * =packed forces one). Instantiated for float (_f) and double (_d) by packed_impl.h. */
#ifndef FASTRNN_PACKED_H
#define FASTRNN_PACKED_H

#include <stdlib.h>
#include <string.h>

#define FASTRNN_MR 4
#define FASTRNN_NV 3

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

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define REAL float
#define SUFFIX f
#define LANES 8
#define BROADCAST(s) {s, s, s, s, s, s, s, s}
#include "packed_impl.h"
#undef REAL
#undef SUFFIX
#undef LANES
#undef BROADCAST

#define REAL double
#define SUFFIX d
#define LANES 4
#define BROADCAST(s) {s, s, s, s}
#include "packed_impl.h"
#undef REAL
#undef SUFFIX
#undef LANES
#undef BROADCAST

#pragma GCC pop_options

#endif
