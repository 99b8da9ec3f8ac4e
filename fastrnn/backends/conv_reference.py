"""NumPy reference of the ConvLSTM layer (Shi et al. 2015): the ground truth of the fast
ConvLSTM kernel (:mod:`fastrnn.backends.numba_cpu.convlstm`), written as the common per-step
PyTorch module is: one "same"-padded convolution over the concatenation [x_t, h_{t-1}] per
step, then LSTM's gates (PyTorch order i, f, g, o)::

    z = conv(cat(x_t, h), weight) + bias;  i, f, g, o = split(z, 4 channels blocks)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')

Arrays (one float dtype, C-contiguous, time-major, channels first as torch.nn.Conv2d):
x [T,B,C,Hh,Ww]; weight [4F, C+F, k, k] (k odd, stride 1); bias [4F] or None; h0, c0
[B,F,Hh,Ww]; lengths [B] or None (sequence b runs steps [0, lengths[b]); its state stops there
and its output is 0 beyond). Convolutions are plain shifted-window products: independent of
the fast kernel's im2col layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit as sigmoid


def _pad(a: np.ndarray, p: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))


def conv_same(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """a [B,Ci,Hh,Ww] convolved (cross-correlated, as torch) with w [Co,Ci,k,k], zero padding
    k // 2: [B,Co,Hh,Ww]."""
    B, _, Hh, Ww = a.shape
    k = w.shape[2]
    ap = _pad(a, k // 2)
    out = np.zeros((B, w.shape[0], Hh, Ww), a.dtype)
    for dy in range(k):
        for dx in range(k):
            window = ap[:, :, dy:dy + Hh, dx:dx + Ww]
            out += np.einsum("oc,bcyx->boyx", w[:, :, dy, dx], window, optimize=True)
    return out


def conv_same_grads(d_out: np.ndarray, a: np.ndarray, w: np.ndarray):
    """The gradients of :func:`conv_same` with respect to a and w, from that of its output."""
    Hh, Ww = a.shape[2:]
    k = w.shape[2]
    p = k // 2
    ap = _pad(a, p)
    d_ap = np.zeros_like(ap)
    d_w = np.zeros_like(w)
    for dy in range(k):
        for dx in range(k):
            window = ap[:, :, dy:dy + Hh, dx:dx + Ww]
            d_w[:, :, dy, dx] = np.einsum("boyx,bcyx->oc", d_out, window, optimize=True)
            d_ap[:, :, dy:dy + Hh, dx:dx + Ww] += np.einsum("oc,boyx->bcyx", w[:, :, dy, dx],
                                                            d_out, optimize=True)
    return d_ap[:, :, p:p + Hh, p:p + Ww], d_w


@dataclass
class ConvSaved:
    """What backward needs from a training forward."""

    x: np.ndarray
    weight: np.ndarray
    has_bias: bool
    valid: np.ndarray  # [T,B] bool
    h_prev: np.ndarray  # [T,B,F,Hh,Ww]
    c_prev: np.ndarray
    gates: np.ndarray  # [T,B,4F,Hh,Ww], after their nonlinearities
    tanh_c: np.ndarray


def available() -> tuple[bool, str]:
    return True, "NumPy reference"


def forward(x, weight, bias, h0, c0, lengths, training: bool):
    """Returns y [T,B,F,Hh,Ww], h_n, c_n [B,F,Hh,Ww], ctx (None unless training)."""
    T, B = x.shape[:2]
    F = weight.shape[0] // 4
    valid = np.ones((T, B), bool) if lengths is None else \
        np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    h, c = h0.copy(), c0.copy()
    y = np.zeros((T, *h.shape), x.dtype)
    h_prev, c_prev, tanh_c = np.empty_like(y), np.empty_like(y), np.empty_like(y)
    gates = np.empty((T, B, 4 * F, *h.shape[2:]), x.dtype)
    for t in range(T):
        h_prev[t], c_prev[t] = h, c
        z = conv_same(np.concatenate([x[t], h], axis=1), weight)
        if bias is not None:
            z += bias[:, None, None]
        i, f, g, o = sigmoid(z[:, :F]), sigmoid(z[:, F:2 * F]), np.tanh(z[:, 2 * F:3 * F]), \
            sigmoid(z[:, 3 * F:])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        tanh_c[t] = tc
        keep = valid[t][:, None, None, None]
        y[t] = np.where(keep, h_new, 0)
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
    if not training:
        return y, h, c, None
    return y, h, c, ConvSaved(x, weight, bias is not None, valid, h_prev, c_prev, gates,
                              tanh_c)


def backward(dy, dh_n, dc_n, ctx: ConvSaved, input_grad: bool = True):
    """Returns dx (None without `input_grad`), dh0, dc0, dweight, dbias (None without
    bias)."""
    T = dy.shape[0]
    C = ctx.x.shape[2]
    F = ctx.weight.shape[0] // 4
    dh, dc = dh_n.copy(), dc_n.copy()
    dx = np.zeros_like(ctx.x)
    dweight = np.zeros_like(ctx.weight)
    dbias = np.zeros(4 * F, dy.dtype)
    for t in reversed(range(T)):
        keep = ctx.valid[t][:, None, None, None]
        i, f, g, o = (ctx.gates[t][:, j * F:(j + 1) * F] for j in range(4))
        tc = ctx.tanh_c[t]
        d_h = np.where(keep, dh + dy[t], 0)
        d_c = np.where(keep, dc, 0) + d_h * o * (1 - tc * tc)
        dz = np.concatenate([d_c * g * i * (1 - i), d_c * ctx.c_prev[t] * f * (1 - f),
                             d_c * i * (1 - g * g), d_h * tc * o * (1 - o)], axis=1)
        d_cat, d_w = conv_same_grads(dz, np.concatenate([ctx.x[t], ctx.h_prev[t]], axis=1),
                                     ctx.weight)
        dweight += d_w
        dbias += dz.sum(axis=(0, 2, 3))
        dx[t] = d_cat[:, :C]
        dh = np.where(keep, d_cat[:, C:], dh)
        dc = np.where(keep, d_c * f, dc)
    return dx if input_grad else None, dh, dc, dweight, dbias if ctx.has_bias else None
