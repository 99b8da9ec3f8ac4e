"""The one driver of the compiled backends (Numba, Cython, CUDA): the kernel contract around
per-cell time loops and a table of products.

A compiled backend supplies, for each :attr:`Cell.loop <fastrnn.cells.Cell.loop>`, a
:class:`TimeLoop` (a forward and a backward loop over one batch part) and one
:class:`Products` table (allocation, the whole-sequence GEMMs, column sums). :class:`Driver`
does everything else, identically for every such backend and every cell, reading the cell's
spec:

1. plan the batch (:class:`~fastrnn.backends.ragged.BatchPlan`): on the host, rows sorted
   longest first so a ragged batch costs only its valid steps, and a large batch dealt into
   parts that run on their own cores with a single-threaded BLAS and no barrier between steps
   (:mod:`fastrnn.parallel`); on a GPU one part in the caller's order;
2. allocate y, the state entering each step and the cell's saved buffers from the spec (one
   time slot each in inference, which every step overwrites);
3. project the inputs of all steps with one GEMM, biases folded in (GRU's b_hh stays in the
   loop: ``Cell.split_recurrent``), over the (step, row) pairs the sequences own; LayerNorm
   cells normalise the projection's rows there too (``Products.layer_norm``, gain ln_ih);
4. run the cell's time loop;
5. after the backward loop: dx, dw_ih, dw_hh (and LSTM's dw_hr) as whole-sequence GEMMs, the
   bias gradients as column sums, LayerNorm gains and shifts as column sums over their saved
   normalised rows (``Cell.norm_sites``); the parts' weight gradients summed.

The time loops, with the same signature for every cell (arguments a cell does not use are
``Products.absent``)::

    forward(xw, w_hh, b_rec, w_hr, norms, h, c, steps, reverse, training, relu, y, h_prev,
            buffers)
    backward(dy, dh, dc, w_hh, w_hr, norms, steps, reverse, relu, h_prev, buffers,
             dg_in, dg_rec, dh_out, grads)

xw [T,B,G] holds x @ w_ih^T + biases of every step; h [B,Hp] and c [B,H] enter as the initial
states and leave as the final ones (dh, dc likewise in backward); ``steps`` says which rows run
at each step (``Products.steps``); ``buffers`` are the cell's saved buffers in the order of
``Cell.saved``; dg_in / dg_rec [T,B,G] receive the gradients of the input-side and
recurrent-side pre-activations (one array unless ``Cell.split_recurrent``); dh_out [T,B,Hp]
the gradient reaching each step's output (cells with a projection). LayerNorm cells take
``norms``, their gains and shifts after ln_ih (``Cell.norms[1:]``), and write the buffers of
``Cell.loop_grads`` into ``grads``; the Jordan cells take their output bias b_hr there and
write the gradient of their output layer's pre-activation into dh_out; other cells get an
empty tuple. ``relu`` is :attr:`Cell.act_code <fastrnn.cells.Cell.act_code>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from .. import parallel
from ..cells import Cell
from .contract import WeightRows
from .ragged import BatchPlan


class TimeLoop(NamedTuple):
    """One cell's forward and backward time loops in one backend (signatures above)."""

    forward: Callable[..., None]
    backward: Callable[..., None]


class Products(Protocol):
    """What a compiled backend provides besides its time loops."""

    #: whether the batch may be sorted and split into parts on the host (CPU backends)
    splits_batch: bool
    #: the products (project, matmul_nn, matmul_tn, a loop's step) of at most this many rows
    #: call no BLAS
    blas_free_rows: int

    def is_host(self, a: Any) -> bool:
        """Whether `a` is a NumPy array (results then go back as NumPy arrays)."""
        ...

    def asarray(self, a: Any) -> Any:
        """An argument as the loops and products take it (None stays None)."""
        ...

    def output(self, a: Any, host: bool) -> Any:
        """A result as the caller gets it: a NumPy array when the inputs were (None stays)."""
        ...

    def zeros(self, shape: tuple[int, ...], dtype: np.dtype) -> Any: ...

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """An array whose entries the caller writes before anything reads them."""
        ...

    def copy(self, a: Any) -> Any:
        """A new array holding `a`'s values."""
        ...

    def absent(self, dtype: np.dtype, ndim: int) -> Any:
        """What a loop gets for an array the call does not have (no c, no w_hr, ...)."""
        ...

    def steps(self, active: np.ndarray, lengths: np.ndarray | None) -> Any:
        """What the loops take to know which rows run at each step: `active[t]` is the number
        of a sorted part's rows that own step t (host backends); `lengths` the part's own
        lengths (backends that do not split the batch; None for the others)."""
        ...

    def scratch(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """Like :meth:`empty`, for a temporary of one call: it may be a buffer of this
        thread's that the next scratch(name) on this thread reuses."""
        ...

    def project(self, x: Any, w: Any, biases: tuple, temporary: bool = False) -> Any:
        """x [T,B,I] @ w[G,I]^T + the sum of `biases` (each [G]; none: no bias): [T,B,G]
        (`temporary`: dead when the call returns; it may live in :meth:`scratch`)."""
        ...

    def matmul_nn(self, a: Any, w: Any) -> Any:
        """a [T,B,G] @ w [G,I]: [T,B,I]."""
        ...

    def matmul_tn(self, a: Any, b: Any) -> Any:
        """a^T @ b over all T*B rows: a [T,B,M], b [T,B,N] -> [M,N]."""
        ...

    def column_sums(self, a: Any) -> Any:
        """a [T,B,G] summed over T and B: [G]."""
        ...

    def multiply(self, a: Any, b: Any) -> Any:
        """a * b elementwise, [T,B,N] (either may be a view of a wider buffer)."""
        ...

    def layer_norm(self, a: Any, gain: Any, shifts: tuple) -> tuple[Any, Any, Any]:
        """Each row of a [T,B,N] normalised (:data:`~fastrnn.cells.LAYER_NORM_EPS`):
        (gain * hat + the sum of `shifts` (each [N]; none: no shift), hat [T,B,N], 1/std
        [T,B,1]); `a` may be overwritten."""
        ...

    def layer_norm_backward(self, d_out: Any, gain: Any, hat: Any, rstd: Any) -> tuple:
        """The gradients of :meth:`layer_norm`'s input [T,B,N] and gain [N] from that of its
        output."""
        ...

    def column_dots(self, a: Any, b: Any) -> Any:
        """The sum over T and B of a * b ([T,B,N] each): [N] (a LayerNorm gain's gradient)."""
        ...


@dataclass
class _Part:
    """What backward needs from one part's forward."""

    x: Any  # the part's input (sorted on the host)
    active: np.ndarray
    steps: Any
    h_prev: Any
    buffers: tuple
    #: LayerNorm cells: the normalised input projection and its rows' 1/std, over the
    #: (step, row) pairs the sequences own (as _param_grads reads them); else None
    x_hat: Any = None
    x_rstd: Any = None


@dataclass
class _Saved:
    """What a training forward keeps for backward."""

    plan: BatchPlan
    parts: list[_Part]
    host: bool
    w_ih: Any
    w_hh: Any
    w_hr: Any
    norms: tuple
    has_bias: bool
    reverse: bool


def _valid_rows(active: np.ndarray, B: int) -> np.ndarray | None:
    """Flat indices t*B + b of the (step, row) pairs a sorted part's sequences own; None when
    they own them all (no padding). With rows sorted longest first these are prefixes."""
    if int(active.sum()) == active.size * B:
        return None
    return np.flatnonzero(np.arange(B) < np.asarray(active)[:, None])


class Driver:
    """The kernel contract (:class:`~fastrnn.backends.contract.KernelModule`'s forward and
    backward) over one backend's time loops and products."""

    def __init__(self, loops: Mapping[str, TimeLoop], products: Products,
                 min_part_rows: int = 8, min_part_columns: int = 384, min_part_work: int = 0,
                 single_thread_work: int = 1 << 25,
                 single_thread_work_beside_openmp: int = 1 << 28):
        self.loops = dict(loops)
        self.products = products
        #: a part gets at least this many rows: below it a step's products are too small
        self.min_part_rows = min_part_rows
        #: parts only pay when a step's product is wide (G*H columns): measured on 2 cores,
        #: parts made GRU/LSTM (G*H >= 384) 1.1-1.3x faster but the Elman RNN at H=256 2x
        #: slower, where one multi-threaded OpenBLAS call beats two single-threaded ones.
        self.min_part_columns = min_part_columns
        #: a part must have at least this many multiply-adds of forward products
        #: (T * its rows * G * (I + Hp)): below it, handing parts to threads costs more than
        #: it gains; a single step (T=1) is faster in one part at every size measured
        self.min_part_work = min_part_work
        #: a call in one part with fewer forward multiply-adds than this runs with BLAS at
        #: one thread (host backends): a decoder's step (LSTM/GRU cell B=64 H=128 beside
        #: NumPy attention) spent most of its time with NumPy's and SciPy's BLAS pools spinning
        #: against each other (a seq2seq training batch: 463 ms, 62 ms with BLAS at 1 thread)
        self.single_thread_work = single_thread_work
        #: the same inside parallel.beside_openmp (the torch adapter's calls) where the loops'
        #: step products call BLAS: BLAS workers woken by a one-part call spun against torch's
        #: OpenMP workers (fastrnn.torch RNN T=100 B=8 I=64 H=128 training: 8.0 ms at 2^25,
        #: 3.5 at 2^28; the NumPy-level stack, with no other pool spinning, 2.4 at 2^25 and 2.8
        #: at 2^28). Where they do not (blas_free_rows), BLAS stays at one thread at any size
        #: beside OpenMP and the large products split over the team (parallel.product_shards)
        self.single_thread_work_beside_openmp = single_thread_work_beside_openmp
        self._active: dict[int, np.ndarray] = {}

    def supports(self, cell: Cell) -> bool:
        """Whether this backend has the cell's time loops."""
        return cell.loop in self.loops

    # ------------------------------------------------------------------ helpers

    def _run(self, parts: int, one: Callable[[int], Any], work: int) -> list:
        """one(p) for every part, concurrently when there are several; a single part as
        :meth:`_alone` runs it (`work`: the call's forward multiply-adds)."""
        if parts == 1:
            return [self._alone(lambda: one(0), work)]
        return parallel.run([lambda p=p: one(p) for p in range(parts)])

    def _alone(self, task: Callable[[], Any], work: int) -> Any:
        """task() of one part: a small one (< single_thread_work multiply-adds; beside
        another OpenMP pool single_thread_work_beside_openmp, or any size where the loops
        call no BLAS) with BLAS at one thread; below BLAS_THREADS_MACS BLAS stays on one
        thread by itself."""
        limit: float = self.single_thread_work
        if parallel.is_beside_openmp():
            # with the loops' step products off BLAS, nothing gains from BLAS's threads there:
            # the large products split over the team, torch's own pool, instead
            limit = math.inf if self.products.blas_free_rows else \
                self.single_thread_work_beside_openmp
        if self.products.splits_batch and parallel.BLAS_THREADS_MACS <= work < limit:
            return parallel.single_threaded(task)
        return task()

    def _project(self, cell: Cell, x, w_ih, b_ih, b_hh, norms: tuple,
                 active: np.ndarray | None):
        """x @ w_ih^T + the biases that fold, for the (step, row) pairs the sequences own
        (padding left unwritten; active None: they own them all): [T,B,G]; LayerNorm cells
        normalise it first (gain norms[0]).
        Returns it, and for LayerNorm cells the normalised rows and their 1/std over the
        pairs the sequences own (else None, None)."""
        P = self.products
        biases = () if b_ih is None else (b_ih,) if cell.split_recurrent else (b_ih, b_hh)
        T, B, I = x.shape
        rows = _valid_rows(active, B) if P.splits_batch and active is not None else None
        own = x if rows is None else x.reshape(T * B, I)[rows][None]
        hat = rstd = None
        # the projection is read by the loop only, but for LayerNorm cells, whose
        # normalisation overwrites it with what backward reads (hat)
        if cell.input_norm:
            xw, hat, rstd = P.layer_norm(P.project(own, w_ih, ()), norms[0], biases)
        else:
            xw = P.project(own, w_ih, biases, temporary=True)
        if rows is not None:  # the loops read only the pairs the sequences own: no fill
            full = P.scratch("grid", (T * B, w_ih.shape[0]), x.dtype)
            full[rows] = xw[0]
            xw = full.reshape(T, B, -1)
        return xw, hat, rstd

    def _param_grads(self, cell: Cell, saved: _Saved, part: _Part, dg_in, dg_rec, dh_out,
                     grads: tuple, defer_weights: bool = False):
        """One part's dx, dw_ih, dw_hh, db_ih, db_hh, dw_hr (None without a projection) and
        the gradients of the LayerNorm gains and shifts (a tuple, in ``cell.norms`` order):
        whole-sequence GEMMs over the (step, row) pairs the sequences own where the products
        split the batch (host), so padding costs nothing here and buffers are read only where
        the loops wrote them; device products run over the whole grid (their empty() fills).
        `defer_weights` (one step): dw_ih and dw_hh as their factors
        (:class:`~fastrnn.backends.contract.WeightRows`, the input copied: the caller's)."""
        P = self.products
        T, B, I = part.x.shape
        rows = _valid_rows(part.active, B) if P.splits_batch else None

        def own(a):  # [T,B,F] -> [1, valid rows, F]
            return a if rows is None else a.reshape(T * B, -1)[rows][None]

        g_in = own(dg_in)
        g_rec = g_in if dg_rec is dg_in else own(dg_rec)
        named = {name: own(buf) for (name, _), buf in zip(cell.saved, part.buffers,
                                                          strict=True)}
        named.update({name: own(buf) for (name, _), buf in zip(cell.loop_grads, grads,
                                                               strict=True)})
        named["dg_rec"] = g_rec
        dnorms: dict[str, Any] = {}
        g_proj = g_in  # the gradient of x @ w_ih^T
        if cell.input_norm:
            g_proj, dnorms[cell.norms[0][0]] = P.layer_norm_backward(
                g_in, saved.norms[0], part.x_hat, part.x_rstd)
            for site in cell.norm_sites:
                d_post = named[site.grad]
                dnorms[site.gain] = P.column_dots(d_post, named[site.hat])
                if site.shift is not None:
                    dnorms[site.shift] = P.column_sums(d_post)
        dx_own = P.matmul_nn(g_proj, saved.w_ih)
        if rows is None:
            dx = dx_own
        else:
            dx = np.zeros((T * B, I), dg_in.dtype)
            dx[rows] = dx_own[0]
            dx = dx.reshape(T, B, I)
        g_hw = named.get("d_hw", g_rec)
        if defer_weights:
            dw_ih = WeightRows(g_proj[0], np.array(part.x[0]))
            dw_hh = WeightRows(g_hw[0], part.h_prev[0])
        else:
            dw_ih = P.matmul_tn(g_proj, own(part.x))
            dw_hh = P.matmul_tn(g_hw, own(part.h_prev))
        db_ih = db_hh = None
        if saved.has_bias:
            db_ih = P.column_sums(g_in)
            db_hh = P.copy(db_ih) if g_rec is g_in else P.column_sums(g_rec)
        dw_hr = None
        if saved.w_hr is not None:
            H = dg_in.shape[2] // cell.gates
            factors = cell.projected_output(named, H)
            d_out = own(dh_out)
            dw_hr = P.matmul_tn(d_out, factors[0] if len(factors) == 1 else
                                P.multiply(*factors))
            if saved.has_bias and cell.output_act:  # the Jordan output layer's bias
                dnorms["b_hr"] = P.column_sums(d_out)
        return (dx, dw_ih, dw_hh, db_ih, db_hh, dw_hr,
                tuple(dnorms[name] for name in cell.vector_args(saved.has_bias)))

    def _loop_norms(self, cell: Cell, norms: tuple, Hp: int, dtype: np.dtype) -> tuple:
        """What the time loop gets as ``norms``: the cell's vectors after ln_ih; a Jordan
        cell's b_hr (zeros without a bias)."""
        if cell.input_norm:
            return norms[1:]
        if cell.output_act and not norms:
            return (self.products.zeros((Hp,), dtype),)
        return norms

    # ------------------------------------------------------------------ the contract

    def forward(self, cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states: tuple, w_hr,
                norms: tuple, lengths, reverse: bool, training: bool):
        P = self.products
        loop = self.loops[cell.loop]
        host = P.is_host(x)
        x, w_ih, w_hh, b_ih, b_hh, w_hr = map(P.asarray, (x, w_ih, w_hh, b_ih, b_hh, w_hr))
        states = [P.asarray(s) for s in states]
        norms = tuple(P.asarray(n) for n in norms)
        T, B, _ = x.shape
        G, Hp = w_hh.shape
        H, dtype = G // cell.gates, x.dtype
        b_rec = P.absent(dtype, 1)
        if cell.split_recurrent:
            b_rec = P.zeros((G,), dtype) if b_hh is None else b_hh
        w_hr_arg = P.absent(dtype, 2) if w_hr is None else w_hr
        loop_norms = self._loop_norms(cell, norms, Hp, dtype)
        parts = 1
        if G >= self.min_part_columns and P.splits_batch:
            parts = len(parallel.shards(B, parallel.cores(), self.min_part_rows))
            if T == 1 or T * (B // parts) * G * (x.shape[2] + Hp) < self.min_part_work:
                parts = 1
        plan = BatchPlan(lengths, T, B, parts, sort=P.splits_batch)
        slots = T if training else 1

        def one(p: int):
            xp = plan.gather(x, 1, p)
            own = [P.copy(plan.gather(s, 0, p)) for s in states]  # updated in place
            c = own[1] if len(own) > 1 else P.absent(dtype, 2)
            rows = xp.shape[1]
            steps = P.steps(plan.active[p], plan.lengths(p) if not P.splits_batch else None)
            y = P.zeros((T, rows, Hp), dtype)  # 0 beyond each sequence's end
            # What a step saves is read back only for the (step, row) pairs that ran: no fill
            # (a memset of every buffer, 0.5 ms of a 15 ms LSTM training step).
            h_prev = P.empty((slots, rows, Hp), dtype)
            buffers = tuple(P.empty((slots, rows, cell.width(width, H, Hp)), dtype)
                            for _, width in cell.saved)
            xw, x_hat, x_rstd = self._project(cell, xp, w_ih, b_ih, b_hh, norms,
                                              plan.active[p])
            loop.forward(xw, w_hh, b_rec, w_hr_arg, loop_norms, own[0], c, steps, reverse,
                         training, cell.act_code, y, h_prev, buffers)
            return y, own, _Part(xp, plan.active[p], steps, h_prev, buffers, x_hat, x_rstd)

        results = self._run(parts, one, T * B * G * (x.shape[2] + Hp))
        y = plan.scatter([r[0] for r in results], 1)
        states_n = tuple(P.output(plan.scatter([r[1][i] for r in results], 0), host)
                         for i in range(len(states)))
        saved = None
        if training:
            saved = _Saved(plan, [r[2] for r in results], host, w_ih, w_hh, w_hr, norms,
                           b_ih is not None, reverse)
        return P.output(y, host), states_n, saved

    # ------------------------------------------------------------------ one step

    def step_forward(self, cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states: tuple,
                     norms: tuple, training: bool):
        if x.shape[0] <= self.products.blas_free_rows:  # no BLAS thread count to switch
            return self._step_forward(cell, x, w_ih, w_hh, b_ih, b_hh, states, norms, training)
        work = x.shape[0] * w_hh.shape[0] * (x.shape[1] + w_hh.shape[1])
        return self._alone(lambda: self._step_forward(cell, x, w_ih, w_hh, b_ih, b_hh,
                                                      states, norms, training), work)

    def _step_forward(self, cell: Cell, x, w_ih, w_hh, b_ih, b_hh, states: tuple,
                      norms: tuple, training: bool):
        """One time step of B rows on a host backend: the cell's time loop over T=1, as
        :meth:`forward` runs it, without the batch plan, parts and checks a sequence call
        needs (the caller checked its arrays: x [B,I], states [B,H] of one dtype). Returns the
        new states (a list) and what :meth:`step_backward` needs (None unless training)."""
        P = self.products
        B, I = x.shape
        G, Hp = w_hh.shape
        H, dtype = G // cell.gates, x.dtype
        x3 = x.reshape(1, B, I)
        active = self._all_rows(B)
        xw, x_hat, x_rstd = self._project(cell, x3, w_ih, b_ih, b_hh, norms, None)
        b_rec = P.absent(dtype, 1)
        if cell.split_recurrent:
            b_rec = P.zeros((G,), dtype) if b_hh is None else b_hh
        own = [P.copy(s) for s in states]
        c = own[1] if len(own) > 1 else P.absent(dtype, 2)
        y, h_prev = P.empty((1, B, Hp), dtype), P.empty((1, B, Hp), dtype)
        buffers = tuple(P.empty((1, B, cell.width(width, H, Hp)), dtype)
                        for _, width in cell.saved)
        self.loops[cell.loop].forward(xw, w_hh, b_rec, P.absent(dtype, 2), norms[1:], own[0],
                                      c, active, False, training, cell.act_code, y, h_prev,
                                      buffers)
        if not training:
            return own, None
        part = _Part(x3, active, active, h_prev, buffers, x_hat, x_rstd)
        return own, _Saved(None, [part], True, w_ih, w_hh, None, norms, b_ih is not None,
                           False)

    def step_backward(self, cell: Cell, dh, dc, saved: _Saved,
                      defer_weights: bool = False) -> tuple:
        """Backward of :meth:`step_forward` from dh [B,Hp] (and dc [B,H] or None) reaching
        its new state: dx [B,I], the states' gradients (a list), and dw_ih, dw_hh, db_ih,
        db_hh, the norms' gradients as in :meth:`backward` (`defer_weights`: dw_ih and dw_hh
        as :class:`~fastrnn.backends.contract.WeightRows`, for :meth:`row_products`)."""
        x = saved.parts[0].x
        if x.shape[1] <= self.products.blas_free_rows:  # no BLAS thread count to switch
            return self._step_backward(cell, dh, dc, saved, defer_weights)
        work = 2 * x.shape[1] * saved.w_hh.shape[0] * (x.shape[2] + saved.w_hh.shape[1])
        return self._alone(lambda: self._step_backward(cell, dh, dc, saved, defer_weights),
                           work)

    def row_products(self, a, b):
        """a [R,M]^T @ b [R,N] (the deferred weight gradients of a decoder's steps); where
        the steps' products ran on the backend's own kernels, which split over the OpenMP team,
        on that team."""
        def product():
            return self.products.matmul_tn(a[None], b[None])

        return parallel.after_team_steps(product) if self.products.blas_free_rows else product()

    def _step_backward(self, cell: Cell, dh, dc, saved: _Saved, defer_weights: bool) -> tuple:
        P = self.products
        part = saved.parts[0]
        B = part.x.shape[1]
        G, Hp = saved.w_hh.shape
        dtype = dh.dtype
        own = [np.zeros((B, Hp), dtype)]
        if "c" in cell.states:
            own.append(np.zeros((B, G // cell.gates), dtype) if dc is None else P.copy(dc))
        dg_in = P.empty((1, B, G), dtype)
        dg_rec = P.empty((1, B, G), dtype) if cell.split_recurrent else dg_in
        grads = tuple(P.empty((1, B, width * (G // cell.gates)), dtype)
                      for _, width in cell.loop_grads)
        # the LSTM loops write the output's gradient there (its projection's), used or not
        dh_out = P.empty((1, B, Hp), dtype) if cell.projection else P.absent(dtype, 3)
        self.loops[cell.loop].backward(
            dh.reshape(1, B, Hp), own[0], own[1] if len(own) > 1 else P.absent(dtype, 2),
            saved.w_hh, P.absent(dtype, 2), saved.norms[1:], part.steps, False, cell.act_code,
            part.h_prev, part.buffers, dg_in, dg_rec, dh_out, grads)
        dx, dw_ih, dw_hh, db_ih, db_hh, _, dnorms = self._param_grads(
            cell, saved, part, dg_in, dg_rec, dh_out, grads, defer_weights)
        return dx[0], own, dw_ih, dw_hh, db_ih, db_hh, dnorms

    def _all_rows(self, B: int) -> np.ndarray:
        """The `active` array of one step that all B rows run (cached: the loops only read
        it)."""
        if B not in self._active:
            self._active[B] = np.full(1, B, np.int64)
        return self._active[B]

    def backward(self, cell: Cell, dy, dstates: tuple, saved: _Saved):
        P = self.products
        loop = self.loops[cell.loop]
        plan = saved.plan
        dy = P.asarray(dy)
        dstates = [P.asarray(d) for d in dstates]
        G, Hp = saved.w_hh.shape
        dtype = dy.dtype
        w_hr_arg = P.absent(dtype, 2) if saved.w_hr is None else saved.w_hr
        loop_norms = self._loop_norms(cell, saved.norms, Hp, dtype)

        def one(p: int):
            part = saved.parts[p]
            dyp = plan.gather(dy, 1, p)
            own = [P.copy(plan.gather(d, 0, p)) for d in dstates]  # updated in place
            dc = own[1] if len(own) > 1 else P.absent(dtype, 2)
            T, rows = dyp.shape[0], dyp.shape[1]
            # read (by _param_grads) only where the loop wrote them on the host: the pairs
            # that ran; temporaries of this call (what _param_grads returns is new arrays)
            dg_in = P.scratch("dg_in", (T, rows, G), dtype)
            dg_rec = P.scratch("dg_rec", (T, rows, G), dtype) if cell.split_recurrent \
                else dg_in
            dh_out = P.zeros((T, rows, Hp), dtype) if cell.projection else P.absent(dtype, 3)
            grads = tuple(P.scratch(f"loop_grad{i}", (T, rows, width * (G // cell.gates)),
                                    dtype) for i, (_, width) in enumerate(cell.loop_grads))
            loop.backward(dyp, own[0], dc, saved.w_hh, w_hr_arg, loop_norms, part.steps,
                          saved.reverse, cell.act_code, part.h_prev, part.buffers, dg_in, dg_rec,
                          dh_out, grads)
            return self._param_grads(cell, saved, part, dg_in, dg_rec, dh_out, grads), own

        work = 2 * int(np.prod(dy.shape[:2])) * G * (saved.w_ih.shape[1] + Hp)
        results = self._run(plan.parts, one, work)
        dx = plan.scatter([r[0][0] for r in results], 1)
        dstates0 = tuple(P.output(plan.scatter([r[1][i] for r in results], 0), saved.host)
                         for i in range(len(dstates)))

        def total(values: list):  # the parts' sums of one weight's gradient
            first = values[0]
            out = first if first is None or len(values) == 1 else sum(values[1:]) + first
            return P.output(out, saved.host)

        weights = [total([r[0][i] for r in results]) for i in range(1, 6)]  # dw_ih ... dw_hr
        dnorms = tuple(total([r[0][6][k] for r in results])
                       for k in range(len(results[0][0][6])))
        return (P.output(dx, saved.host), dstates0, *weights, dnorms)
