"""Building blocks shared by the Numba kernels: the jit flags, activations, small products.

Flags (DESIGN.md, measured pitfalls): ``error_model='numpy'`` so divisions vectorise; a fastmath
set without ``nnan``/``ninf`` so saturated sigmoids stay 0 instead of NaN; ``nogil`` so the
stack can run the two directions of a layer on two threads; ``cache=True`` so a second process
pays no compile.

Numba keys a cached kernel on its own file only, not on the helpers here that it inlines:
:class:`KernelCacheLocator` adds this file's hash to the stamp of every kernel of the backend,
so that a changed helper recompiles them (nothing on disk is touched).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from numba import njit, types
from numba.core import caching
from numba.extending import overload

_HERE = Path(__file__).parent


def helpers_hash() -> str:
    """The hash of this file: part of every kernel's cache stamp."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


class _HelpersStamp:
    """A cache locator mixin for this backend's kernel files: the source stamp also covers
    the helpers they inline (this module)."""

    def get_source_stamp(self):
        return super().get_source_stamp(), helpers_hash()

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).parent != _HERE:
            return None
        return super().from_function(py_func, py_file)


class DirKernelCacheLocator(_HelpersStamp, caching.UserProvidedCacheLocator):
    """The folder $NUMBA_CACHE_DIR names, when it is set."""


class KernelCacheLocator(_HelpersStamp, caching.InTreeCacheLocator):
    """The package's __pycache__ (editable and writable installs)."""


class UserKernelCacheLocator(_HelpersStamp, caching.UserWideCacheLocator):
    """The user's cache folder (read-only installs)."""


for _position, _locator in enumerate((DirKernelCacheLocator, KernelCacheLocator,
                                      UserKernelCacheLocator)):
    # Ahead of numba's own locators, in numba's order of preference; files elsewhere fall
    # through to numba's.
    if _locator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(_position, _locator)

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
jit = njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
inline_jit = njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH, inline="always")

# ------------------------------------------------------------------------- activations


#: |x| from which the float32 tanh is exactly +-1 (src_kernels/gates.h: FASTRNN_TANH_ONE)
TANH_ONE = 9.01


def tanh(x):
    """tanh: exact in float64; in float32 a clamped rational approximation that vectorises.

    The float32 form is Eigen's (x * P(x^2) / Q(x^2), clamped at |x| = 7.905), at most ~3e-7
    from the true value (~2 float32 ulps), far inside the float32 conformance bound, and
    exactly +-1 from |x| = TANH_ONE on, where float32's tanh rounds to 1: a saturated unit then
    has a derivative of exactly 0 (the clamped form tops out at 0.99999976, whose derivative
    4.8e-7 an input of 1e5 turns into a weight gradient of 0.05). NaN stays NaN.
    """
    return math.tanh(x)


@overload(tanh, inline="always", fastmath=FASTMATH)
def _tanh_overload(x):
    if x == types.float32:
        a1, a3, a5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), \
            np.float32(1.48572235717979e-05)
        a7, a9, a11 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11), \
            np.float32(2.00018790482477e-13)
        a13 = np.float32(-2.76076847742355e-16)
        b0, b2, b4, b6 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03), \
            np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06)
        clamp = np.float32(7.90531110763549805)
        one, saturated = np.float32(1.0), np.float32(TANH_ONE)

        def tanh_f32(x):
            if x >= saturated:
                return one
            if x <= -saturated:
                return -one
            x = -clamp if x < -clamp else (clamp if x > clamp else x)  # NaN stays NaN
            x2 = x * x
            p = x2 * a13 + a11
            p = x2 * p + a9
            p = x2 * p + a7
            p = x2 * p + a5
            p = x2 * p + a3
            p = x2 * p + a1
            q = x2 * b6 + b4
            q = x2 * q + b2
            q = x2 * q + b0
            return x * p / q

        return tanh_f32
    return lambda x: math.tanh(x)


def one_like(x):
    """1 in the type of scalar x (a float64 literal would silently promote float32 math)."""
    return 1.0


@overload(one_like, inline="always")
def _one_like_overload(x):
    if x == types.float32:
        return lambda x: np.float32(1.0)
    return lambda x: 1.0


def cast_like(x, v):
    """v (a Python number) in the type of scalar x, so float32 maths stays float32."""
    return float(v)


@overload(cast_like, inline="always")
def _cast_like_overload(x, v):
    if x == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: np.float64(v)


def sigmoid(x):
    """1 / (1 + exp(-x)) as 0.5 + 0.5 tanh(x / 2): overflow-free and vectorisable."""
    return 0.5 + 0.5 * math.tanh(0.5 * x)


@overload(sigmoid, inline="always", fastmath=FASTMATH)
def _sigmoid_overload(x):
    half = np.float32(0.5) if x == types.float32 else 0.5
    return lambda x: half + half * tanh(half * x)


# ------------------------------------------------------------------------- gate passes


@inline_jit
def lstm_row(xw, hw, c, m, gates, tanh_c, H):
    """One row's LSTM gate pass (gates i, f, g, o; xw and hw [4H] the two halves of the
    pre-activations, biases in xw): c [H] enters as c and leaves as c', m [H] = o * tanh(c');
    saves the activated gates [4H] and tanh(c') [H]."""
    for j in range(H):
        i = sigmoid(xw[j] + hw[j])
        f = sigmoid(xw[H + j] + hw[H + j])
        g = tanh(xw[2 * H + j] + hw[2 * H + j])
        o = sigmoid(xw[3 * H + j] + hw[3 * H + j])
        c_new = f * c[j] + i * g
        tc = tanh(c_new)
        c[j] = c_new
        m[j] = o * tc
        gates[j] = i
        gates[H + j] = f
        gates[2 * H + j] = g
        gates[3 * H + j] = o
        tanh_c[j] = tc


@inline_jit
def lstm_row_grads(dm, gates, c_prev, tanh_c, dc, dgates, H, one):
    """Backward of :func:`lstm_row` for one row: dm [H] reaches o * tanh(c'); dc [H] enters
    as the gradient of c' and leaves as that of c; writes the pre-activations' dgates [4H]."""
    for j in range(H):
        i = gates[j]
        f = gates[H + j]
        g = gates[2 * H + j]
        o = gates[3 * H + j]
        tc = tanh_c[j]
        dc_new = dc[j] + dm[j] * o * (one - tc * tc)
        dgates[j] = dc_new * g * i * (one - i)
        dgates[H + j] = dc_new * c_prev[j] * f * (one - f)
        dgates[2 * H + j] = dc_new * i * (one - g * g)
        dgates[3 * H + j] = dm[j] * tc * o * (one - o)
        dc[j] = dc_new * f


@inline_jit
def gru_row_grads(dh, dy, t, b, gates, hw_n, h_prev, dg_in, dg_rec, direct, one):
    """GRU backward of row b at step t: the input-side and recurrent-side pre-activation
    gradients (r, z, n; the recurrent n scaled by r) and the direct path dh' * z."""
    H = dh.shape[1]
    for j in range(H):
        d = dh[b, j] + dy[t, b, j]
        r = gates[t, b, j]
        z = gates[t, b, H + j]
        cand = gates[t, b, 2 * H + j]
        dn = d * (one - z) * (one - cand * cand)
        dr = dn * hw_n[t, b, j] * r * (one - r)
        dz = d * (h_prev[t, b, j] - cand) * z * (one - z)
        dg_in[t, b, j] = dr
        dg_in[t, b, H + j] = dz
        dg_in[t, b, 2 * H + j] = dn
        dg_rec[t, b, j] = dr
        dg_rec[t, b, H + j] = dz
        dg_rec[t, b, 2 * H + j] = dn * r
        direct[b, j] = d * z


@inline_jit
def row_stats(v, one):
    """(mean, 1/std) of a 1-d row for LayerNorm, in the row's dtype: two passes, so no
    cancellation, summed in float64, so a float32 row of values up to 3e38 (squares past
    float32's range) keeps its statistics (as the reference's and the Cython backend's)."""
    N = v.shape[0]
    total = 0.0
    for j in range(N):
        total += v[j]
    mean = total / N
    var = 0.0
    for j in range(N):
        d = v[j] - mean
        var += d * d
    return cast_like(one, mean), cast_like(one, 1.0 / math.sqrt(var / N + 1e-5))


@inline_jit
def row_norm_grad(d_post, gain, hat, s, out, one):
    """LayerNorm's backward over one row: out = s (d - mean(d) - hat mean(d hat)) for
    d = d_post * gain (1-d rows; s = the row's 1/std)."""
    N = d_post.shape[0]
    inv = one / N
    sum_d = one * 0
    sum_du = one * 0
    for j in range(N):
        d = d_post[j] * gain[j]
        sum_d += d
        sum_du += d * hat[j]
    mean_d, mean_du = sum_d * inv, sum_du * inv
    for j in range(N):
        out[j] = s * (d_post[j] * gain[j] - mean_d - hat[j] * mean_du)


# ------------------------------------------------------------------------- products


@inline_jit
def matmul_wt(a, w, out, n):
    """out[:n] = a[:n] @ w.T for w [N,K] row-major: the recurrent product of a step.

    One row goes to gemv: sgemm with one row is several times slower (DESIGN.md), and
    hand-written loops measured no faster than gemv here for H >= 64.
    """
    if n == 1:
        np.dot(w, a[0], out[0])
    elif n > 1:
        np.dot(a[:n], w.T, out[:n])


@inline_jit
def matmul_w(a, w, out, n):
    """out[:n] = a[:n] @ w for w [N,K] row-major: the recurrent gradient of a step."""
    if n == 1:
        np.dot(a[0], w, out[0])
    elif n > 1:
        np.dot(a[:n], w, out[:n])


# Whole-sequence products go through Numba's np.dot too, so that every BLAS call of this
# backend uses one library (SciPy's OpenBLAS): NumPy's own OpenBLAS is a second thread pool,
# and the two pools' spinning workers fight over the cores (measured: 2.7x slower).


@jit
def project(x, w, bias, out):
    """out [T,B,G] = x [T,B,I] @ w^T + bias for w [G,I], bias [G] or [0] (none): the input
    projection of every step."""
    T, B, I = x.shape
    G = w.shape[0]
    flat = out.reshape(T * B, G)
    if I == 0:  # no input features: numba's np.dot refuses the empty inner dimension
        flat[:] = 0
    else:
        np.dot(x.reshape(T * B, I), w.T, flat)
    if bias.size:
        for r in range(T * B):
            for j in range(G):
                flat[r, j] += bias[j]


@jit
def matmul_tn(a, b):
    """a^T @ b over all leading rows: a [...,M], b [...,N] -> [M,N] (a weight gradient)."""
    M, N = a.shape[-1], b.shape[-1]
    if M == 0 or N == 0:  # (a.size // M would divide by zero; np.dot refuses empty sides)
        return np.zeros((M, N), a.dtype)
    return np.dot(a.reshape(a.size // M, M).T, b.reshape(b.size // N, N))


@jit
def matmul_nn(a, w, out):
    """out [T,B,I] = a [T,B,G] @ w [G,I] (the input gradient)."""
    T, B, G = a.shape
    if w.shape[1] > 0:  # (no input features: nothing to compute)
        np.dot(a.reshape(T * B, G), w, out.reshape(T * B, w.shape[1]))


@jit
def column_sums(a):
    """a [T,B,G] summed over T and B: [G] (a bias gradient)."""
    T, B, G = a.shape
    out = np.zeros(G, a.dtype)
    for t in range(T):
        for b in range(B):
            for j in range(G):
                out[j] += a[t, b, j]
    return out


# The input side's LayerNorm (the driver's, before and after the loops): one pass per row for
# its statistics and one for its output, the gain's gradient in the backward's pass.


@jit
def _layer_norm(a, gain, s1, s2, out, rstd):
    T, B, N = a.shape
    one = one_like(gain[0])  # gain has N >= 1 entries; a may have no rows
    for t in range(T):
        for b in range(B):
            mean, s = row_stats(a[t, b], one)
            rstd[t, b, 0] = s
            for j in range(N):
                u = (a[t, b, j] - mean) * s
                a[t, b, j] = u
                out[t, b, j] = gain[j] * u + s1[j] + s2[j]


def layer_norm(a, gain, shifts: tuple):
    """Each row of a [T,B,N] normalised: (gain * hat + sum(shifts), hat, 1/std [T,B,1]);
    hat overwrites a."""
    zero = np.zeros(a.shape[2], a.dtype)
    s1, s2 = (*shifts, zero, zero)[:2]
    out = np.empty_like(a)
    rstd = np.empty((a.shape[0], a.shape[1], 1), a.dtype)
    _layer_norm(a, gain, s1, s2, out, rstd)
    return out, a, rstd


@jit
def layer_norm_backward(d_out, gain, hat, rstd):
    """(the gradient of layer_norm's input, of its gain) from that of its output."""
    T, B, N = d_out.shape
    d_in = np.empty_like(d_out)
    d_gain = np.zeros(N, d_out.dtype)
    one = one_like(gain[0])
    for t in range(T):
        for b in range(B):
            row_norm_grad(d_out[t, b], gain, hat[t, b], rstd[t, b, 0], d_in[t, b], one)
            for j in range(N):
                d_gain[j] += d_out[t, b, j] * hat[t, b, j]
    return d_in, d_gain


@jit
def column_dots(a, b):
    """The sum over T and B of a * b ([T,B,N] each): [N]."""
    T, B, N = a.shape
    out = np.zeros(N, a.dtype)
    for t in range(T):
        for r in range(B):
            for j in range(N):
                out[j] += a[t, r, j] * b[t, r, j]
    return out
