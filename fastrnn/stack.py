"""The layer stack, stateless: layers x directions x lengths x inter-layer dropout, composed
once for every cell and every backend.

:func:`forward` runs a stack described by a :class:`StackSpec` on parameters it is handed and
returns a :class:`Tape` (what backward needs) instead of keeping anything; :func:`backward`
consumes a tape. Nothing is stored between calls, so one stack may serve any number of
threads, and its callers own their tapes: the NumPy modules of :mod:`fastrnn.rnn` keep one per
thread, the torch adapter keeps it in its autograd context. Each kernel call is one layer in
one direction (:class:`~fastrnn.backends.contract.Backend`); the two directions of a layer run
concurrently on backends that release the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import parallel
from .backends.contract import Backend
from .cells import Cell


class ArrayOps:
    """The few array operations the stack does between kernel calls, on NumPy arrays.

    The torch adapter substitutes torch's (:class:`fastrnn.torch.TensorOps`) for CUDA
    tensors, so the same stack code runs with its arrays on the GPU and a backend that takes
    device arrays.
    """

    def empty_like(self, a):
        return np.empty_like(a)

    def concat(self, arrays: list, axis: int):
        return np.concatenate(arrays, axis)

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    def to_backend(self, a):
        """An array as the kernel backend takes it (None stays None)."""
        return a

    def from_backend(self, a):
        """A backend's result as the stack's array type (None stays None)."""
        return a


NUMPY = ArrayOps()


@dataclass(frozen=True)
class StackSpec:
    """What a stack is: its cell, sizes and options, with torch.nn's meaning."""

    cell: Cell
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    bias: bool = True
    dropout: float = 0.0

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """H_out of torch's docs: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        """Width of each of the cell's states (h: H_out, c: hidden_size)."""
        return tuple(self.cell.state_width(s, self.hidden_size, self.output_size)
                     for s in self.cell.states)

    def layer_parameters(self, layer: int, direction: int) -> dict[str, tuple[str, tuple]]:
        """Kernel argument -> (torch's parameter name, shape) of one layer and direction."""
        layer_input = self.input_size if layer == 0 else self.num_directions * self.output_size
        return self.cell.parameters(layer, direction, layer_input, self.hidden_size,
                                    self.proj_size, self.bias)

    def parameters(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every parameter, in torch.nn's registration order."""
        return [entry for layer in range(self.num_layers)
                for direction in range(self.num_directions)
                for entry in self.layer_parameters(layer, direction).values()]

    def norm_parameters(self) -> dict[str, float]:
        """Name -> initial value of every LayerNorm gain (1) and shift (0); empty for cells
        without LayerNorm (a Jordan cell's output bias starts as the other biases do)."""
        return {name: self.cell.initial_norm(arg) for layer in range(self.num_layers)
                for direction in range(self.num_directions)
                for arg, (name, _) in self.layer_parameters(layer, direction).items()
                if arg in dict(self.cell.norms) and self.cell.initial_norm(arg) is not None}


@dataclass
class Tape:
    """What :func:`backward` needs from one :func:`forward` in training."""

    spec: StackSpec
    backend: Backend
    ops: ArrayOps
    #: per layer: the kernels' contexts (one per direction) and the dropout mask applied to
    #: the layer's output (None: none)
    layers: list[tuple[list, Any]] = field(default_factory=list)


def _per_direction(backend: Backend, D: int, run: Callable[[int], Any]) -> list:
    """run(direction) for each direction; concurrently when the backend allows it."""
    tasks = [lambda d=d: run(d) for d in range(D)]
    return parallel.run(tasks) if backend.releases_gil else [task() for task in tasks]


def forward(spec: StackSpec, params: Mapping[str, Any], x: Any, states: tuple,
            lengths: np.ndarray | None, *, backend: Backend, save: bool,
            dropout_mask: Callable[[tuple[int, ...]], Any] | None = None,
            ops: ArrayOps = NUMPY) -> tuple[Any, tuple, Tape | None]:
    """Run the stack on checked, time-major arrays of one float dtype.

    params: parameter name -> array (torch's names); x [T,B,I] C-contiguous; states: one
    array per cell state, [L*D,B,width] (h: H_out, c: hidden_size); lengths int64 [B] or None;
    save: keep a tape for backward; dropout_mask(shape) -> the inverted-dropout mask for a
    layer's output (None: no dropout). Returns y [T,B,D*H_out], the final states like
    `states`, and the tape (None unless `save`).
    """
    cell, D = spec.cell, spec.num_directions
    states_n = tuple(ops.empty_like(s) for s in states)
    tape = Tape(spec, backend, ops) if save else None
    layer_input = x
    for layer in range(spec.num_layers):

        def run(direction: int, layer: int = layer, layer_input: Any = layer_input):
            k = layer * D + direction
            p = {arg: ops.to_backend(params[name])
                 for arg, (name, _) in spec.layer_parameters(layer, direction).items()}
            return backend.forward(
                cell, ops.to_backend(layer_input), p["w_ih"], p["w_hh"], p.get("b_ih"),
                p.get("b_hh"), *(ops.to_backend(s[k]) for s in states), w_hr=p.get("w_hr"),
                norms=tuple(p[arg] for arg in cell.vector_args(spec.bias)), lengths=lengths,
                reverse=direction == 1, training=save)

        results = _per_direction(backend, D, run)
        ys = []
        for direction, out in enumerate(results):
            k = layer * D + direction
            for i, final in enumerate((out.h_n, out.c_n)[:len(states)]):
                states_n[i][k] = ops.from_backend(final)
            ys.append(ops.from_backend(out.y))
        y = ys[0] if D == 1 else ops.concat(ys, 2)
        mask = None
        if dropout_mask is not None and spec.dropout > 0 and layer < spec.num_layers - 1:
            mask = dropout_mask(tuple(y.shape))
            y = y * mask
        if tape is not None:
            tape.layers.append(([out.ctx for out in results], mask))
        layer_input = y
    return layer_input, states_n, tape


def backward(tape: Tape, dy: Any, dstates: tuple) -> tuple[Any, tuple, dict[str, Any]]:
    """Gradients of the :func:`forward` that made `tape`: dy [T,B,D*H_out], dstates like its
    states. Returns dx [T,B,I], the initial states' gradients and {parameter name: gradient}
    (new arrays; nothing is accumulated)."""
    spec, ops, backend = tape.spec, tape.ops, tape.backend
    D, Hout = spec.num_directions, spec.output_size
    dstates0 = tuple(ops.empty_like(d) for d in dstates)
    grads: dict[str, Any] = {}
    d_out = dy
    for layer in reversed(range(spec.num_layers)):
        ctxs, mask = tape.layers[layer]
        if mask is not None:
            d_out = d_out * mask

        def run(direction: int, layer: int = layer, d_out: Any = d_out, ctxs: list = ctxs):
            k = layer * D + direction
            d_y = ops.contiguous(d_out[:, :, direction * Hout:(direction + 1) * Hout])
            d_final = [ops.to_backend(d[k]) for d in dstates] + [None]
            return backend.backward(ops.to_backend(d_y), d_final[0], d_final[1],
                                    ctxs[direction])

        d_in = None
        for direction, g in enumerate(_per_direction(backend, D, run)):
            k = layer * D + direction
            dx = ops.from_backend(g.dx)
            d_in = dx if d_in is None else d_in + dx
            for i, initial in enumerate((g.dh0, g.dc0)[:len(dstates)]):
                dstates0[i][k] = ops.from_backend(initial)
            for arg, (name, _) in spec.layer_parameters(layer, direction).items():
                grads[name] = ops.from_backend(g.of(arg, spec.cell))
        d_out = d_in
    return d_out, dstates0, grads


class TapeStore:
    """The tapes of one module's forwards, one per thread: a thread's backward uses the tape
    of its own last forward, once (a second backward is an error, as in torch)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def keep(self, entry: Any) -> None:
        self._local.entry, self._local.used = entry, False

    def drop(self) -> None:
        """Forget this thread's tape (a forward that keeps none, e.g. in eval mode)."""
        self._local.entry, self._local.used = None, False

    def peek(self, who: str) -> Any:
        """This thread's tape, or a clear error when there is none (`who`: the module)."""
        entry = getattr(self._local, "entry", None)
        if entry is None:
            if getattr(self._local, "used", False):
                raise RuntimeError(
                    f"{who}.backward() was already called for the last forward(): its tape "
                    "is consumed, as torch frees a graph after backward; run forward() again")
            raise RuntimeError(f"{who}.backward() needs a forward() in training mode first, "
                               "on the same thread (call m.train() before the forward)")
        return entry

    def consume(self) -> None:
        """Mark this thread's tape used: a backward that checked its arguments runs on it."""
        self._local.entry, self._local.used = None, True
