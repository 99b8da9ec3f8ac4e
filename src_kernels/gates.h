/* Fused gate passes of the Cython kernels, in C so that gcc can vectorise them: restrict
 * pointers (no aliasing) and -fno-trapping-math (DESIGN.md: 17 -> 2 ns per element).
 * gates_impl.h is instantiated twice: float (suffix _f, rational tanh) and double (_d, libm).
 * Row b of a [n, W] buffer starts at b * W. */
#ifndef FASTRNN_GATES_H
#define FASTRNN_GATES_H

#include <math.h>

/* Eigen's clamped rational tanh: <= ~3e-7 from tanh, vectorisable (same as the Numba backend),
 * exactly +-1 from |x| = FASTRNN_TANH_ONE on, where float32's tanh rounds to 1: a saturated unit
 * then has a derivative of exactly 0 (the clamped form tops out at 0.99999976, whose derivative
 * 4.8e-7 an input of 1e5 turns into a weight gradient of 0.05). NaN stays NaN. */
#define FASTRNN_TANH_ONE 9.01f
static inline float tanh_f(float x) {
    const float clamp = 7.90531110763549805f;
    if (x >= FASTRNN_TANH_ONE) return 1.0f;
    if (x <= -FASTRNN_TANH_ONE) return -1.0f;
    x = x < -clamp ? -clamp : (x > clamp ? clamp : x);
    const float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    return x * p / q;
}

static inline double tanh_d(double x) { return tanh(x); }

static inline float sqrt_f(float x) { return sqrtf(x); }
static inline double sqrt_d(double x) { return sqrt(x); }

/* LayerNorm's epsilon (fastrnn.cells.LAYER_NORM_EPS) */
#define FASTRNN_LN_EPS 1e-5

#define REAL float
#define SUFFIX f
#include "gates_impl.h"
#undef REAL
#undef SUFFIX

#define REAL double
#define SUFFIX d
#include "gates_impl.h"
#undef REAL
#undef SUFFIX

#endif
