"""Shared helpers of the test suite: random kernel problems and a float64 loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastrnn.cells import CELLS

#: the cells that parametrised sweeps run: every cell, the Jordan network by three of its six
#: variants (both hidden activations, every output activation; the reference's gradient
#: check and the random-shape conformance test take all six)
SWEPT_CELLS = [name for name in CELLS if not CELLS[name].output_act] + [
    "jordan_tanh_identity", "jordan_relu_tanh", "jordan_tanh_sigmoid"]


@dataclass
class Problem:
    """One kernel call's arguments (time-major, one layer, one direction) and a loss's seeds."""

    cell: str
    x: np.ndarray
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    h0: np.ndarray
    c0: np.ndarray | None
    w_hr: np.ndarray | None
    lengths: np.ndarray | None
    reverse: bool
    dy: np.ndarray = field(repr=False)
    dh_n: np.ndarray = field(repr=False)
    dc_n: np.ndarray | None = field(repr=False)
    #: the cell's own vectors (LayerNorm gains and shifts, Jordan's output bias), in
    #: cell.vector_args order (empty for other cells)
    norms: tuple = ()

    def args(self):
        return (self.cell, self.x, self.w_ih, self.w_hh, self.b_ih, self.b_hh, self.h0, self.c0)

    def kwargs(self, training=True):
        return {"w_hr": self.w_hr, "norms": self.norms, "lengths": self.lengths,
                "reverse": self.reverse, "training": training}

    def astype(self, dtype) -> Problem:
        def conv(v):
            if isinstance(v, tuple):
                return tuple(conv(a) for a in v)
            return v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v

        return Problem(**{k: conv(v) for k, v in self.__dict__.items()})


def make_problem(cell, T, B, I, H, *, P=0, bias=True, ragged=False, reverse=False,
                 dtype=np.float64, scale=1.0, seed=0) -> Problem:
    """Random arguments; weights ~ U(-scale/sqrt(H), scale/sqrt(H)) like torch's init. P: the
    projection (LSTM) or output (Jordan: 0 gives H // 2 + 1) size."""
    rng = np.random.default_rng(seed)
    spec = CELLS[cell]
    if spec.output_act and not P:  # a Jordan cell needs its output size
        P = H // 2 + 1
    G, has_c = spec.gates, "c" in spec.states
    Hp = P or H
    k = scale / np.sqrt(H)

    def u(*shape, bound=k):
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    lengths = None
    if ragged:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T  # the longest fills the padded length, as packing does
    return Problem(
        cell=cell, x=u(T, B, I, bound=1.0), w_ih=u(G * H, I), w_hh=u(G * H, Hp),
        b_ih=u(G * H) if bias else None, b_hh=u(G * H) if bias else None,
        h0=u(B, Hp, bound=0.5), c0=u(B, H, bound=0.5) if has_c else None,
        w_hr=u(P, H) if P else None, lengths=lengths, reverse=reverse,
        dy=u(T, B, Hp, bound=1.0), dh_n=u(B, Hp, bound=1.0),
        dc_n=u(B, H, bound=1.0) if has_c else None,
        # gains around 1, shifts (and Jordan's output bias) around 0, both away from their
        # initial values
        norms=tuple((1 if name.startswith("ln_") and name != "ln_c_b" else 0)
                    + u(spec.width(dict(spec.norms)[name], H, Hp), bound=0.5)
                    for name in spec.vector_args(bias)),
    )


def loss(backend, pb: Problem) -> float:
    """sum(dy*y) + sum(dh_n*h_n) (+ sum(dc_n*c_n)): its gradients are what backward returns."""
    out = backend.forward(*pb.args(), **pb.kwargs(training=False))
    total = np.sum(pb.dy * out.y) + np.sum(pb.dh_n * out.h_n)
    if out.c_n is not None:
        total += np.sum(pb.dc_n * out.c_n)
    return float(total)


def norm_grads(grads, pb: Problem) -> dict:
    """{"d<norm argument>": its gradient} of the cell's own vectors in Grads (LayerNorm
    gains and shifts, Jordan's output bias; empty for other cells)."""
    names = CELLS[pb.cell].vector_args(pb.b_ih is not None)
    return {f"d{name}": g for name, g in zip(names, grads.dnorms, strict=True)}


#: Grads field -> Problem attribute it differentiates
GRAD_OF = {"dx": "x", "dh0": "h0", "dc0": "c0", "dw_ih": "w_ih", "dw_hh": "w_hh",
           "db_ih": "b_ih", "db_hh": "b_hh", "dw_hr": "w_hr"}
