"""The kernel contract around fused time-loop kernels: shared by every compiled CPU backend.

A compiled backend supplies, for each cell, a forward and a backward *time loop* over one
batch part (its rows sorted longest first, so step t runs on rows [0, active[t])) and four
whole-sequence products, all through one BLAS library: two libraries mean two thread pools
whose spinning workers fight over the cores (measured 2.7x slower). :class:`FusedDriver` does
the rest, identically for every such backend:

- the batch is sorted longest first, so a ragged batch costs only its valid steps, and a
  large batch is dealt into parts, one per core (:class:`~fastrnn.backends.ragged.BatchPlan`);
- each part runs the whole problem on its own thread with a single-threaded BLAS and no
  barrier between steps (:mod:`fastrnn.parallel`): the input projection of all steps as one
  GEMM, the time loop, and after the backward loop dx, dw_ih, dw_hh as whole-sequence GEMMs.
  The parts' weight gradients are summed at the end.

The kernels, attributes of the `kernels` object given to :class:`FusedDriver`::

    rnn_forward(xw, w_hh, bias, h, active, reverse, training, relu, y, h_prev, h_new)
    rnn_backward(dy, dh, w_hh, active, reverse, relu, h_new, dpre)
    lstm_forward(xw, w_hh, bias, w_hr, h, c, active, reverse, training,
                 y, h_prev, gates, c_prev, tanh_c)
    lstm_backward(dy, dh, dc, w_hh, w_hr, active, reverse, gates, c_prev, tanh_c,
                  dgates, dh_out)
    gru_forward(xw, w_hh, b_ih, b_hh, h, active, reverse, training, y, h_prev, gates, hw_n)
    gru_backward(dy, dh, w_hh, active, reverse, h_prev, gates, hw_n, dg_in, dg_rec)
    project(x, w) -> x @ w^T     matmul_nn(a, w) -> a @ w     (x, a: [T,B,.])
    matmul_tn(a, b) -> a^T b over all T*B rows     column_sums(a) -> a summed over T and B

Time loops update h (and c, dh, dc) in place; the saved buffers have T time slots in training
and one in inference (every step overwrites it); w_hr has 0 rows without projection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import parallel
from .ragged import BatchPlan


@dataclass
class _Part:
    """What backward needs from one part's forward."""

    x: np.ndarray  # the part's input, sorted
    active: np.ndarray
    h_prev: np.ndarray
    buffers: tuple  # the cell's own saved activations


@dataclass
class _Context:
    plan: BatchPlan
    parts: list[_Part]
    w_ih: np.ndarray
    w_hh: np.ndarray
    has_bias: bool
    reverse: bool
    w_hr: np.ndarray | None = None
    relu: bool = False


def _alloc(like: np.ndarray, width: int, training: bool) -> np.ndarray:
    """A saved per-step buffer [T,B,width] (one time slot in inference), zeroed: steps a
    sequence does not own are never written, and backward multiplies them by 0, which must not
    meet uninitialised NaNs."""
    return np.zeros((like.shape[0] if training else 1, like.shape[1], width), like.dtype)


def _valid_rows(active: np.ndarray, B: int) -> np.ndarray | None:
    """Flat indices t*B + b of the (step, row) pairs a part's sequences own; None when they
    own them all (no padding). With rows sorted longest first these are prefixes per step."""
    if int(active.sum()) == active.size * B:
        return None
    return np.concatenate([t * B + np.arange(n) for t, n in enumerate(active)])


def _bias(b_ih: np.ndarray | None, b_hh: np.ndarray | None, size: int, dtype) -> np.ndarray:
    """b_ih + b_hh (zeros without bias): both enter every gate of RNN and LSTM the same way."""
    return np.zeros(size, dtype) if b_ih is None else b_ih + b_hh


class FusedDriver:
    """The per-cell functions of the kernel contract, over one backend's fused kernels."""

    def __init__(self, kernels: Any, min_part_rows: int = 8, min_part_columns: int = 384):
        self.k = kernels
        #: a part gets at least this many rows: below it a step's products are too small
        self.min_part_rows = min_part_rows
        #: parts only pay when a step's product is wide (G*H columns): measured on 2 cores,
        #: parts made GRU/LSTM (G*H >= 384) 1.1-1.3x faster but the Elman RNN at H=256 2x
        #: slower, where one multi-threaded OpenBLAS call beats two single-threaded ones.
        self.min_part_columns = min_part_columns

    # ------------------------------------------------------------------ parts

    def _forward(self, x, w_hh, states, lengths, training, run_part: Callable, ctx_args):
        """run_part(x_part, *state_parts, active) -> (y, *states_out, _Part) on every part
        concurrently, merged into (y, *states, context or None)."""
        T, B, _ = x.shape
        wide = w_hh.shape[0] >= self.min_part_columns
        parts = len(parallel.shards(B, parallel.cores(), self.min_part_rows)) if wide else 1
        plan = BatchPlan(lengths, T, B, parts)

        def one(p: int):
            own = [np.array(plan.gather(s, 0, p)) for s in states]  # updated in place
            return run_part(plan.gather(x, 1, p), *own, plan.active[p])

        results = parallel.run([lambda p=p: one(p) for p in range(parts)])
        y = plan.scatter([r[0] for r in results], 1)
        out = [plan.scatter([r[1 + i] for r in results], 0) for i in range(len(states))]
        ctx = _Context(plan, [r[-1] for r in results], *ctx_args) if training else None
        return (y, *out, ctx)

    @staticmethod
    def _backward(dy, dstates, ctx: _Context, run_part: Callable):
        """run_part(dy_part, *dstate_parts, _Part) on every part concurrently, merged: dx and
        the state gradients back in batch order, the weight gradients summed."""
        plan = ctx.plan

        def one(p: int):
            own = [np.array(plan.gather(d, 0, p)) for d in dstates]  # updated in place
            return run_part(plan.gather(dy, 1, p), *own, ctx.parts[p])

        results = parallel.run([lambda p=p: one(p) for p in range(plan.parts)])
        n = len(dstates)
        dx = plan.scatter([r[0] for r in results], 1)
        dstate0 = [plan.scatter([r[1 + i] for r in results], 0) for i in range(n)]
        weights = [None if r0 is None else sum(r[i] for r in results)
                   for i, r0 in enumerate(results[0]) if i > n]
        return (dx, *dstate0, *weights)

    def _project(self, x: np.ndarray, w_ih: np.ndarray, active: np.ndarray) -> np.ndarray:
        """x @ w_ih^T for the steps the sequences own (padding stays 0): [T,B,G*H]."""
        T, B, I = x.shape
        rows = _valid_rows(active, B)
        if rows is None:
            return self.k.project(x, w_ih)
        xw = np.zeros((T * B, w_ih.shape[0]), x.dtype)
        xw[rows] = self.k.project(x.reshape(T * B, I)[rows][None], w_ih)[0]
        return xw.reshape(T, B, -1)

    def _param_grads(self, ctx: _Context, part: _Part, dg_in, dg_rec, *dstates):
        """One part's dx, state gradients, dw_ih, dw_hh, db_ih, db_hh: whole-sequence GEMMs
        over the (step, row) pairs the sequences own, so padding costs nothing here."""
        k = self.k
        T, B, I = part.x.shape
        rows = _valid_rows(part.active, B)

        def own(a: np.ndarray) -> np.ndarray:  # [T,B,F] -> [1, valid rows, F]
            return a if rows is None else a.reshape(T * B, -1)[rows][None]

        g_in = own(dg_in)
        g_rec = g_in if dg_rec is dg_in else own(dg_rec)
        dx_own = k.matmul_nn(g_in, ctx.w_ih)
        if rows is None:
            dx = dx_own
        else:
            dx = np.zeros((T * B, I), dg_in.dtype)
            dx[rows] = dx_own[0]
            dx = dx.reshape(T, B, I)
        dw_ih = k.matmul_tn(g_in, own(part.x))
        dw_hh = k.matmul_tn(g_rec, own(part.h_prev))
        biases = (k.column_sums(g_in), k.column_sums(g_rec)) if ctx.has_bias else (None, None)
        return (dx, *dstates, dw_ih, dw_hh, *biases)

    # ------------------------------------------------------------------ RNN

    def rnn_forward(self, x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training,
                    nonlinearity):
        k, H = self.k, w_hh.shape[0]
        bias = _bias(b_ih, b_hh, H, x.dtype)
        relu = nonlinearity == "relu"

        def part(xp, h, active):
            y = np.zeros((*xp.shape[:2], H), xp.dtype)
            h_prev, h_new = _alloc(y, H, training), _alloc(y, H, training)
            k.rnn_forward(self._project(xp, w_ih, active), w_hh, bias, h, active, reverse,
                          training, relu, y, h_prev, h_new)
            return y, h, _Part(xp, active, h_prev, (h_new,))

        return self._forward(x, w_hh, (h0,), lengths, training, part,
                             (w_ih, w_hh, b_ih is not None, reverse, None, relu))

    def rnn_backward(self, dy, dh_n, ctx: _Context):
        k = self.k

        def part(dyp, dh, p: _Part):
            dpre = np.zeros((*dyp.shape[:2], ctx.w_hh.shape[0]), dyp.dtype)
            k.rnn_backward(dyp, dh, ctx.w_hh, p.active, ctx.reverse, ctx.relu, p.buffers[0],
                           dpre)
            return self._param_grads(ctx, p, dpre, dpre, dh)

        return self._backward(dy, (dh_n,), ctx, part)

    # ------------------------------------------------------------------ LSTM

    def lstm_forward(self, x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, lengths, reverse,
                     training):
        k, H = self.k, w_hh.shape[0] // 4
        bias = _bias(b_ih, b_hh, 4 * H, x.dtype)
        proj = np.empty((0, H), x.dtype) if w_hr is None else w_hr

        def part(xp, h, c, active):
            y = np.zeros((*xp.shape[:2], h.shape[1]), xp.dtype)
            h_prev = _alloc(y, h.shape[1], training)
            gates, c_prev, tanh_c = (_alloc(y, 4 * H, training), _alloc(y, H, training),
                                     _alloc(y, H, training))
            k.lstm_forward(self._project(xp, w_ih, active), w_hh, bias, proj, h, c, active, reverse,
                           training, y, h_prev, gates, c_prev, tanh_c)
            return y, h, c, _Part(xp, active, h_prev, (gates, c_prev, tanh_c))

        return self._forward(x, w_hh, (h0, c0), lengths, training, part,
                             (w_ih, w_hh, b_ih is not None, reverse, w_hr))

    def lstm_backward(self, dy, dh_n, dc_n, ctx: _Context):
        k, H = self.k, ctx.w_hh.shape[0] // 4
        proj = np.empty((0, H), dy.dtype) if ctx.w_hr is None else ctx.w_hr

        def part(dyp, dh, dc, p: _Part):
            gates, c_prev, tanh_c = p.buffers
            dgates = np.zeros_like(gates)
            dh_out = np.zeros_like(dyp)
            k.lstm_backward(dyp, dh, dc, ctx.w_hh, proj, p.active, ctx.reverse, gates, c_prev,
                            tanh_c, dgates, dh_out)
            dw_hr = None
            if ctx.w_hr is not None:
                out = gates[:, :, 3 * H:] * tanh_c  # o * tanh(c): what the projection saw
                dw_hr = k.matmul_tn(dh_out, out)
            return (*self._param_grads(ctx, p, dgates, dgates, dh, dc), dw_hr)

        return self._backward(dy, (dh_n, dc_n), ctx, part)

    # ------------------------------------------------------------------ GRU

    def gru_forward(self, x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training):
        k, H = self.k, w_hh.shape[0] // 3
        zeros = np.zeros(3 * H, x.dtype)
        bi, bh = (zeros, zeros) if b_ih is None else (b_ih, b_hh)

        def part(xp, h, active):
            y = np.zeros((*xp.shape[:2], H), xp.dtype)
            h_prev, gates, hw_n = (_alloc(y, H, training), _alloc(y, 3 * H, training),
                                   _alloc(y, H, training))
            k.gru_forward(self._project(xp, w_ih, active), w_hh, bi, bh, h, active, reverse,
                          training, y, h_prev, gates, hw_n)
            return y, h, _Part(xp, active, h_prev, (gates, hw_n))

        return self._forward(x, w_hh, (h0,), lengths, training, part,
                             (w_ih, w_hh, b_ih is not None, reverse))

    def gru_backward(self, dy, dh_n, ctx: _Context):
        k = self.k

        def part(dyp, dh, p: _Part):
            gates, hw_n = p.buffers
            dg_in, dg_rec = np.zeros_like(gates), np.zeros_like(gates)
            k.gru_backward(dyp, dh, ctx.w_hh, p.active, ctx.reverse, p.h_prev, gates, hw_n,
                           dg_in, dg_rec)
            return self._param_grads(ctx, p, dg_in, dg_rec, dh)

        return self._backward(dy, (dh_n,), ctx, part)
