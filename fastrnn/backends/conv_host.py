"""The fast ConvLSTM kernel around compiled loops (Cython's or Numba's): layouts, buffers,
the GEMM operands, and the contract of :mod:`fastrnn.backends.conv_reference`.

The maths of the reference as GEMMs over im2col windows, channels last:

- the input convolution of all frames is one GEMM: the "same"-padded k x k windows of every
  pixel of every frame as rows ([T*B*Hh*Ww, k*k*C]) times the input half of the weight
  ([k*k*C, 4F]), the bias added once per row;
- per step, the recurrent convolution is one GEMM on h's windows ([B*Hh*Ww, k*k*F] times
  [k*k*F, 4F]) and one fused LSTM gate pass per pixel;
- backward per step: the gate pass backward, one GEMM to the windows' gradient and its
  scatter back onto h (col2im); after the loop the weight gradients, the bias gradient and the
  input gradient are whole-sequence GEMMs over the windows saved in forward.

The entry points take and return torch's layout (x [T,B,C,Hh,Ww], weight [4F, C+F, k, k]);
the transposes to channels last and back are done here, once per call. A core supplies three
loops with these signatures (arrays channels last, C-contiguous, of one dtype)::

    forward(x, wx, wh, bias, h, c, lengths, k, training, y, cols_x, cols_h, gates, c_prev,
            tanh_c)
    backward(dy, dh, dc, wh, lengths, k, gates, c_prev, tanh_c, dgates)
    weight_grads(dgates, cols_x, cols_h, wx, k, input_grad, dx, dwx_t, dwh_t, dbias)

(dwx_t [4F, k*k*C] and dwh_t [4F, k*k*F]: the transposes of wx's and wh's gradients)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import parallel

#: a call is dealt into batch parts (one per core, each with a single-threaded BLAS, no
#: barrier between them) when its forward has at least this many multiply-adds; below it one
#: part with BLAS's own threads. Measured on 2 cores (T=10 B=8 16x16 C=F=32 k=3 training,
#: 1.5e9 multiply-adds): see README's ConvLSTM table.
MIN_PART_WORK = 1 << 26


def weight_halves(weight: np.ndarray, C: int) -> tuple[np.ndarray, np.ndarray]:
    """weight [4F, C+F, k, k] -> the GEMM operands wx [k*k*C, 4F], wh [k*k*F, 4F]: row
    (dy*k + dx)*channels + channel, as the im2col windows are laid out."""
    G = weight.shape[0]
    mats = [np.ascontiguousarray(part.transpose(2, 3, 1, 0).reshape(-1, G))
            for part in (weight[:, :C], weight[:, C:])]
    return mats[0], mats[1]


def weight_from_halves(dwx: np.ndarray, dwh: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`weight_halves` for their gradients: [4F, C+F, k, k]."""
    G = dwx.shape[1]
    parts = [d.reshape(k, k, -1, G).transpose(3, 2, 0, 1) for d in (dwx, dwh)]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def channels_last(a: np.ndarray) -> np.ndarray:
    """[..., Cc, Hh, Ww] -> [..., Hh, Ww, Cc], C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))


def channels_first(a: np.ndarray) -> np.ndarray:
    """[..., Hh, Ww, Cc] -> [..., Cc, Hh, Ww], C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, -1, -3))


@dataclass
class ConvSaved:
    """What backward needs from a training forward (channels last)."""

    wx: np.ndarray
    wh: np.ndarray
    k: int
    lengths: np.ndarray
    has_bias: bool
    cols_x: np.ndarray  # [T*B*P, k*k*C]: every frame's windows
    cols_h: np.ndarray  # [T, B*P, k*k*F]: the windows of h entering each step
    gates: np.ndarray  # [T, B*P, 4F], activated
    c_prev: np.ndarray  # [T, B*P, F]
    tanh_c: np.ndarray  # [T, B*P, F]
    x_shape: tuple


@dataclass
class ConvParts:
    """What backward needs from a forward dealt into batch parts: the parts' bounds and
    their saved buffers."""

    bounds: list
    parts: list


@dataclass(frozen=True)
class ConvKernel:
    """The contract of :mod:`fastrnn.backends.conv_reference` over one core's loops."""

    loop_forward: Callable[..., None]
    loop_backward: Callable[..., None]
    weight_grads: Callable[..., None]

    def forward(self, x, weight, bias, h0, c0, lengths, training: bool):
        T, B, C, Hh, Ww = x.shape
        G, _, k, _ = weight.shape
        bounds = [(0, B)]
        if T * B * Hh * Ww * G * k * k * (C + G // 4) >= MIN_PART_WORK:
            bounds = parallel.shards(B, parallel.cores(), 1)
        lens = np.full(B, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        wx, wh = weight_halves(weight, C)
        b = np.zeros(G, x.dtype) if bias is None else bias

        def part(lo: int, hi: int):
            return self._forward(x[:, lo:hi], wx, wh, b, h0[lo:hi], c0[lo:hi], lens[lo:hi], k,
                                 training, bias is not None)

        if len(bounds) == 1:
            return part(0, B)
        results = parallel.run([lambda lo=lo, hi=hi: part(lo, hi) for lo, hi in bounds])
        y, h, c = (np.concatenate([r[i] for r in results], axis=1 if i == 0 else 0)
                   for i in range(3))
        return y, h, c, ConvParts(bounds, [r[3] for r in results]) if training else None

    def _forward(self, x, wx, wh, bias, h0, c0, lens, k, training, has_bias):
        """One part (all of the batch, or a slice of it)."""
        T, B, C, Hh, Ww = x.shape
        G = wx.shape[1]
        F = G // 4
        rows = B * Hh * Ww
        h, c = channels_last(h0), channels_last(c0)
        y = np.zeros((T, B, Hh, Ww, F), x.dtype)  # 0 beyond each sequence's end
        slots = T if training else 1  # what a step saves: one slot, overwritten, in inference
        cols_x = np.empty((T * rows, k * k * C), x.dtype)
        cols_h = np.empty((slots, rows, k * k * F), x.dtype)
        gates = np.empty((slots, rows, G), x.dtype)
        c_prev = np.empty((slots, rows, F), x.dtype)
        tanh_c = np.empty((slots, rows, F), x.dtype)
        self.loop_forward(channels_last(x), wx, wh, bias, h, c, lens, k, training, y, cols_x,
                          cols_h, gates, c_prev, tanh_c)
        saved = None
        if training:
            saved = ConvSaved(wx, wh, k, lens, has_bias, cols_x, cols_h, gates, c_prev,
                              tanh_c, x.shape)
        return channels_first(y), channels_first(h), channels_first(c), saved

    def backward(self, dy, dh_n, dc_n, saved, input_grad: bool = True):
        """Without `input_grad`, dx is None (a first layer's input is data: a sixth of the
        FLOPs saved)."""
        if isinstance(saved, ConvSaved):
            return self._backward(dy, dh_n, dc_n, saved, input_grad)
        results = parallel.run([
            lambda lo=lo, hi=hi, part=part: self._backward(
                dy[:, lo:hi], dh_n[lo:hi], dc_n[lo:hi], part, input_grad)
            for (lo, hi), part in zip(saved.bounds, saved.parts, strict=True)])
        dx = np.concatenate([r[0] for r in results], axis=1) if input_grad else None
        dh0, dc0 = (np.concatenate([r[i] for r in results]) for i in (1, 2))
        dweight = sum(r[3] for r in results[1:]) + results[0][3]
        dbias = None if results[0][4] is None else \
            sum(r[4] for r in results[1:]) + results[0][4]
        return dx, dh0, dc0, dweight, dbias

    def _backward(self, dy, dh_n, dc_n, saved: ConvSaved, input_grad: bool):
        T, B, C, Hh, Ww = saved.x_shape
        dh, dc = channels_last(dh_n), channels_last(dc_n)
        G = saved.gates.shape[2]
        dgates = np.empty((T, B * Hh * Ww, G), dy.dtype)
        self.loop_backward(channels_last(dy), dh, dc, saved.wh, saved.lengths, saved.k,
                           saved.gates, saved.c_prev, saved.tanh_c, dgates)
        dwx_t = np.empty(saved.wx.shape[::-1], dy.dtype)
        dwh_t = np.empty(saved.wh.shape[::-1], dy.dtype)
        dbias = np.empty(G, dy.dtype)
        dx = np.empty((T, B, Hh, Ww, C) if input_grad else (T, 0, 0, 0, 0), dy.dtype)
        self.weight_grads(dgates, saved.cols_x, saved.cols_h, saved.wx, saved.k, input_grad,
                          dx, dwx_t, dwh_t, dbias)
        return (channels_first(dx) if input_grad else None, channels_first(dh),
                channels_first(dc), weight_from_halves(dwx_t.T, dwh_t.T, saved.k),
                dbias if saved.has_bias else None)
