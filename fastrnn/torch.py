"""Drop-in torch.nn.LSTM / GRU / RNN that train on fastrnn's kernels, and the LayerNorm LSTM
and GRU and the ConvLSTM that torch.nn lacks, as modules of the same kind.

``fastrnn.torch.LSTM(...)`` takes torch.nn.LSTM's arguments (plus ``backend=``), registers the
same parameters under the same names with the same initialisation, accepts every input
torch.nn accepts (time-major, batch_first, unbatched, PackedSequence) and returns the same
outputs; autograd runs through one ``torch.autograd.Function`` over the layer stack of
:mod:`fastrnn.rnn`, which reads the parameters' memory directly (no copies).
``fastrnn.torch.patch()`` swaps torch.nn's classes for these so an unmodified script trains on
fastrnn. float32 and float64; CPU tensors run the stack on NumPy views of them, CUDA tensors
run it on the tensors themselves with the CUDA backend (``backend="cuda"``, chosen by itself
for a module on a GPU), which reads and writes GPU memory in place.
"""

from __future__ import annotations

import math
import threading
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence

from . import backends, cells, parallel, stack
from .backends.contract import WeightRows
from .rnn import stack_spec

__all__ = ["ConvLSTM2d", "GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "LayerNormGRU",
           "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell", "RNNBase", "RNNCell",
           "RNNCellBase", "patch"]

_TORCH_CLASSES = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")


class HostOps(stack.ArrayOps):
    """CPU tensors: the stack runs on NumPy views of them (no copies)."""

    device = torch.device("cpu")

    def from_torch(self, t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    def to_torch(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)

    def zeros(self, shape: tuple[int, ...], like: np.ndarray) -> np.ndarray:
        return np.zeros(shape, like.dtype)

    def index(self, index: np.ndarray) -> np.ndarray:
        return index


class TensorOps(stack.ArrayOps):
    """The stack's array operations on torch tensors of one device: what runs it on a GPU
    (the CUDA backend takes the tensors through ``__cuda_array_interface__`` and its results
    come back as tensors on the same memory). On the CPU it hands NumPy views to the backend,
    which tests this path without a GPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def from_torch(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach()

    def to_torch(self, a: torch.Tensor) -> torch.Tensor:
        return a

    def zeros(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(shape)

    def index(self, index: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(index, device=self.device)

    def empty_like(self, a: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(a)

    def concat(self, arrays: list, axis: int) -> torch.Tensor:
        return torch.cat(arrays, axis)

    def contiguous(self, a: torch.Tensor) -> torch.Tensor:
        return a.contiguous()

    def to_backend(self, a: torch.Tensor | None):
        if a is None or a.device.type != "cpu":
            return a
        return a.numpy()

    def from_backend(self, a: Any) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(a, device=self.device)


_HOST = HostOps()


#: torch.nn's module whose constructor checks the arguments of each fastrnn.torch module
#: (the LayerNorm ones take their plain twin's): built on the meta device (no memory, no
#: data), it raises what torch.nn raises, type and message, for the torch installed, and
#: gives torch's warnings (dropout with one layer)
_TORCH_TWIN = {"LayerNormLSTM": "LSTM", "LayerNormGRU": "GRU",
               "layernorm_lstm": torch.nn.LSTMCell, "layernorm_gru": torch.nn.GRUCell,
               "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell,
               "rnn_tanh": torch.nn.RNNCell, "rnn_relu": torch.nn.RNNCell}


def _ops_for(device: torch.device) -> stack.ArrayOps:
    """How the stack handles arrays of `device`: NumPy views on the CPU, tensors elsewhere."""
    return _HOST if device.type == "cpu" else TensorOps(device)


def _dropout_mask(p: float, dtype: torch.dtype, ops: stack.ArrayOps):
    """The stack's dropout between layers, drawn from torch's RNG (so torch.manual_seed
    governs it as it does torch.nn's): mask(shape) -> 0 or 1/(1-p)."""

    def mask(shape: tuple[int, ...]):
        keep = 1.0 - p
        m = torch.bernoulli(torch.full(shape, keep, dtype=torch.float64, device=ops.device))
        if keep > 0:
            m /= keep
        return ops.from_torch(m.to(dtype))

    return mask


def _packed_index(batch_sizes: torch.Tensor, sorted_indices: torch.Tensor | None, B: int):
    """For each row of a PackedSequence's data, its flat index t*B + b into a padded,
    time-major [T,B] grid in the original batch order; and each sequence's length."""
    sizes = batch_sizes.numpy()
    order = np.arange(B) if sorted_indices is None else sorted_indices.cpu().numpy()
    t = np.repeat(np.arange(len(sizes)), sizes)
    j = np.arange(len(t)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # rank within step t
    lengths = np.zeros(B, np.int64)
    lengths[order] = (sizes[None, :] > np.arange(B)[:, None]).sum(axis=1)
    return t * B + order[j], lengths


def _run_stack(save: bool, spec: stack.StackSpec, backend: backends.Backend, dropout: bool,
               names: list[str], lengths, index, T: int, B: int, x: torch.Tensor,
               h0: torch.Tensor | None, c0: torch.Tensor | None, *weights: torch.Tensor):
    """The stack's forward on tensors: y, h_n, c_n (tensors on the memory the stack wrote;
    c_n None for cells without a cell state) and the tape (None unless `save`). x is
    time-major and contiguous, or the data [N,I] of a PackedSequence with `index` (see
    :func:`_packed_index`) placing its rows in a padded [T,B] grid (y then comes back packed
    the same way). h0 None: every state starts at zero (hx=None); c0 None: the cell has no
    cell state or h0 is None too."""
    ops = _ops_for(x.device)
    params = {name: ops.from_torch(w) for name, w in zip(names, weights, strict=True)}
    x_a = ops.from_torch(x)
    if index is not None:  # packed rows -> padded grid, one gather
        index = ops.index(index)  # (a no-op on an index it converted already)
        padded = ops.zeros((T * B, x_a.shape[1]), x_a)
        padded[index] = x_a
        x_a = padded.reshape(T, B, -1)
    if h0 is None:
        L = spec.num_layers * spec.num_directions
        states = tuple(ops.zeros((L, B, width), x_a) for width in spec.state_sizes())
    else:
        states = (ops.from_torch(h0),) + (() if c0 is None else (ops.from_torch(c0),))
    mask = _dropout_mask(spec.dropout, x.dtype, ops) if dropout else None
    y, states_n, tape = parallel.beside_openmp(lambda: stack.forward(
        spec, params, x_a, states, lengths, backend=backend, save=save, dropout_mask=mask,
        ops=ops))
    if index is not None:
        y = y.reshape(T * B, -1)[index]
    c_n = ops.to_torch(states_n[1]) if len(states_n) > 1 else None
    return ops.to_torch(y), ops.to_torch(states_n[0]), c_n, tape


class _StackFunction(torch.autograd.Function):
    """y, h_n, c_n = stack(x, h0, c0) (:func:`_run_stack`, keeping the tape) with gradients
    for x, h0, c0 (None where they are) and every weight; c_n is an empty tensor for cells
    without a cell state."""

    @staticmethod
    def forward(ctx, spec: stack.StackSpec, backend: backends.Backend, dropout: bool,
                names: list[str], lengths, index, T, B, x, h0, c0, *weights):
        if index is not None:  # once, for backward too (_run_stack takes it as converted)
            index = _ops_for(x.device).index(index)
        y, h_n, c_n, ctx.tape = _run_stack(True, spec, backend, dropout, names, lengths,
                                           index, T, B, x, h0, c0, *weights)
        ctx.index = index
        ctx.T, ctx.names, ctx.given = T, names, (h0 is not None, c0 is not None)
        ctx.save_for_backward(*weights)  # torch refuses backward if they change in place
        if c_n is None:
            c_n = x.new_empty(0)
            ctx.mark_non_differentiable(c_n)
        return y, h_n, c_n

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        ctx.saved_tensors  # noqa: B018  (raises if a weight changed in place since forward)
        tape = ctx.tape
        ops = tape.ops
        dy_a = ops.from_torch(dy.contiguous())
        B = dh_n.shape[1]
        if ctx.index is not None:
            padded = ops.zeros((ctx.T * B, dy_a.shape[1]), dy_a)
            padded[ctx.index] = dy_a
            dy_a = padded.reshape(ctx.T, B, -1)
        dstates = (ops.from_torch(dh_n.contiguous()),)
        if len(tape.spec.cell.states) > 1:
            dstates += (ops.from_torch(dc_n.contiguous()),)
        dx, dstates0, grads = parallel.beside_openmp(
            lambda: stack.backward(tape, dy_a, dstates))
        if ctx.index is not None:
            dx = dx.reshape(ctx.T * B, -1)[ctx.index]
        weight_grads = [ops.to_torch(grads[name]) for name in ctx.names]
        dh0 = ops.to_torch(dstates0[0]) if ctx.given[0] else None
        dc0 = ops.to_torch(dstates0[1]) if ctx.given[1] else None
        return (None,) * 8 + (ops.to_torch(dx), dh0, dc0, *weight_grads)


class RNNBase(torch.nn.Module):
    """torch.nn.RNNBase's constructor, parameters and forward, on fastrnn's kernels."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None):
        super().__init__()
        torch.nn.RNNBase(_TORCH_TWIN.get(mode, mode), input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, proj_size, device="meta")
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.mode = mode
        with warnings.catch_warnings():  # torch's constructor gave its own
            warnings.simplefilter("ignore", UserWarning)
            self._spec = stack_spec(cells.by_torch_mode(mode).name, input_size, hidden_size,
                                    num_layers, bias, dropout, bool(bidirectional),
                                    proj_size)  # (torch takes any truthy bidirectional)
        self._backend_requested = backend
        self._backend = backends.get(backend)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias = int(num_layers), bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional, self.proj_size = bool(bidirectional), int(proj_size)
        shapes = self._spec.parameters()
        self._flat_weights_names = [name for name, _ in shapes]
        for name, shape in shapes:
            self.register_parameter(name, torch.nn.Parameter(
                torch.empty(shape, dtype=dtype, device=device)))
        self.reset_parameters()

    # -------------------------------------------------------------- torch.nn.RNNBase's API

    def reset_parameters(self) -> None:
        """torch.nn's init: U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), torch's RNG, in
        registration order, so a seeded torch.nn module and this one start identical;
        LayerNorm gains 1 and shifts 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        norms = self._spec.norm_parameters()
        with torch.no_grad():
            for name, weight in self.named_parameters():
                if name in norms:
                    weight.fill_(norms[name])
                else:
                    torch.nn.init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """A no-op: fastrnn's kernels read the parameters where they are."""

    @property
    def backend(self) -> str:
        """The kernel backend: the one asked for, else the fastest CPU backend for a module
        on the CPU and "cuda" for one on a GPU (chosen at each forward)."""
        return self._backend.name

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = backends.get(name)
        self._backend_requested = name

    def _select_backend(self, device: torch.device) -> None:
        """Match the backend to the parameters' device, or say why it cannot run there."""
        current = self._backend
        if device.type == "cpu":
            if current.device_arrays and self._backend_requested is None:
                self._backend = backends.get()  # back from a GPU: the default CPU backend
            return
        if device.type != "cuda":
            raise ValueError(f"{type(self).__name__}'s parameters are on {device}; fastrnn "
                             "runs on the CPU or on CUDA GPUs")
        if not current.device_arrays:
            if self._backend_requested is not None:
                raise ValueError(f"{type(self).__name__}'s parameters are on {device} but "
                                 f"backend {current.name!r} runs on the CPU: use "
                                 "backend='cuda', or move the module with .cpu()")
            self._backend = backends.get("cuda")  # a clear error if it is unavailable

    @property
    def all_weights(self) -> list[list[torch.nn.Parameter]]:
        per = len(self._flat_weights_names) // (self.num_layers * self._spec.num_directions)
        flat = [getattr(self, n) for n in self._flat_weights_names]
        return [flat[i:i + per] for i in range(0, len(flat), per)]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s + f", backend={self.backend!r}"

    # -------------------------------------------------------------- forward

    def forward(self, input: Any, hx: Any = None):
        """torch.nn's forward: input (L,N,H_in), (N,L,H_in) with batch_first, unbatched
        (L,H_in), or a PackedSequence (output packed too, states in the original order)."""
        weights = [getattr(self, n) for n in self._flat_weights_names]
        dtype, device = weights[0].dtype, weights[0].device
        self._select_backend(device)
        packed = isinstance(input, PackedSequence)
        lengths = index = None
        if packed:
            x = input.data
            B = int(input.batch_sizes[0])
            T = len(input.batch_sizes)
            index, lengths = _packed_index(input.batch_sizes, input.sorted_indices, B)
            unbatched = False
        else:
            x = input
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"input must be a Tensor or PackedSequence, got "
                                f"{type(x).__name__}")
            if x.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                                 f"{x.dim()}D tensor")
            unbatched = x.dim() == 2
            x = x.unsqueeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
            T, B = x.shape[0], x.shape[1]
        if x.dtype != dtype:  # torch.nn's check_input, type and message
            raise ValueError(f"RNN input dtype ({x.dtype}) does not match weight dtype "
                             f"({dtype}). Convert input: input.to({dtype}), or convert model: "
                             f"model.to({x.dtype})")
        self._check_tensor(x, "input", dtype, device)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        if T == 0:
            raise ValueError("input has no time steps")
        h0, c0 = self._initial_state(hx, B, unbatched, dtype, device)
        # Keep a tape only when autograd will ask for gradients: Function.forward runs with
        # grad mode off, so this is decided here (nothing is saved under no_grad/inference).
        save = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (x, h0, c0, *weights))
        args = (self._spec, self._backend, self.training, self._flat_weights_names, lengths,
                index, T, B, x.contiguous(), h0, c0, *weights)
        if save:
            y, h_n, c_n = _StackFunction.apply(*args)
        else:  # nothing to differentiate: the stack without autograd's Function (~20 us)
            y, h_n, c_n, _ = _run_stack(False, *args)
        if packed:
            y = PackedSequence(y, input.batch_sizes, input.sorted_indices,
                               input.unsorted_indices)
        elif unbatched:
            y, h_n = y.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if self._has_cell_state else c_n
        elif self.batch_first:
            y = y.transpose(0, 1)
        return y, ((h_n, c_n) if self._has_cell_state else h_n)

    @property
    def _has_cell_state(self) -> bool:
        return "c" in self._spec.cell.states

    @staticmethod
    def _check_tensor(t: torch.Tensor, name: str, dtype: torch.dtype,
                      device: torch.device) -> None:
        if t.device != device:
            raise ValueError(f"{name} is on {t.device} but the parameters are on {device}: "
                             f"move it with .to({str(device)!r})")
        if t.dtype != dtype:
            raise RuntimeError(f"{name} must have the dtype of the parameters, {dtype}, got "
                               f"{t.dtype}")

    def _initial_state(self, hx: Any, B: int, unbatched: bool, dtype: torch.dtype,
                       device: torch.device):
        """hx checked as torch.nn checks it: (h0 [L*D,B,H_out], c0 [L*D,B,H] or None for
        cells without a cell state), contiguous; (None, None) for hx None (zero states,
        made where the stack runs)."""
        if hx is None:
            return None, None
        D = self._spec.num_directions
        shape_h = (self.num_layers * D, B, self.proj_size or self.hidden_size)
        shape_c = (self.num_layers * D, B, self.hidden_size)
        is_lstm = self._has_cell_state
        if is_lstm != isinstance(hx, tuple):
            raise TypeError(f"{type(self).__name__} expects hx as a tuple (h_0, c_0)" if is_lstm
                            else f"{type(self).__name__} expects hx as a Tensor, not a tuple")
        parts = hx if is_lstm else (hx,)
        out = []
        for t, shape, name in zip(parts, (shape_h, shape_c), ("h_0", "c_0"), strict=False):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
            self._check_tensor(t, name, dtype, device)
            if unbatched:
                if t.dim() != 2:
                    raise RuntimeError(f"For unbatched 2-D input, {name} should also be 2-D "
                                       f"but got {t.dim()}-D tensor")
                t = t.unsqueeze(1)
            if tuple(t.shape) != shape:
                raise RuntimeError(f"Expected hidden size {shape}, got {tuple(t.shape)}"
                                   f" for {name}")
            out.append(t.contiguous())
        return out[0], (out[1] if is_lstm else None)


class LSTM(RNNBase):
    """torch.nn.LSTM on fastrnn's kernels (arguments, parameters, outputs as torch.nn's)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype, backend=backend)


class GRU(RNNBase):
    """torch.nn.GRU on fastrnn's kernels (arguments, parameters, outputs as torch.nn's)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None, dtype: Any = None, *,
                 backend: str | None = None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, 0, device, dtype, backend=backend)


class RNN(RNNBase):
    """torch.nn.RNN on fastrnn's kernels (arguments, parameters, outputs as torch.nn's)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, device, dtype,
                         backend=backend)


class LayerNormLSTM(RNNBase):
    """The LayerNorm LSTM of :class:`fastrnn.LayerNormLSTM` (its equations and parameters) as a
    torch module: torch.nn.LSTM's arguments, inputs and outputs (proj_size must stay 0)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None, *, backend: str | None = None):
        super().__init__("LayerNormLSTM", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, proj_size, device, dtype,
                         backend=backend)


class LayerNormGRU(RNNBase):
    """The LayerNorm GRU of :class:`fastrnn.LayerNormGRU` (its equations and parameters) as a
    torch module: torch.nn.GRU's arguments, inputs and outputs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None, dtype: Any = None, *,
                 backend: str | None = None):
        super().__init__("LayerNormGRU", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, 0, device, dtype,
                         backend=backend)


class _WeightViews:
    """NumPy views of a cell module's weights, made again only when a weight's memory or
    layout changes (``param.data = ...``): in-place updates (optimizer steps) show through
    them, and a step saves the weights' conversions (~1.5 us each). (A view not in C order,
    a transposed weight's, is copied by the kernel contract at each step.)"""

    def __init__(self):
        self._current: tuple[list, list] = ([], [])  # (addresses and strides, views): one
        # object, replaced whole

    def of(self, weights: list[torch.Tensor]) -> list[np.ndarray]:
        # (a cached view keeps its memory alive, so another tensor never has its address;
        # the strides tell a transposed view of the same memory)
        key = [(w.data_ptr(), w.stride()) for w in weights]
        current = self._current
        if current[0] != key:
            current = self._current = (key, [w.detach().numpy() for w in weights])
        return current[1]

    def __getstate__(self) -> dict:  # (copies and pickles of the module make their own)
        return {"_current": ([], [])}


def _kernel_step(cell, backend: backends.Backend, args: Iterable[str], x: torch.Tensor,
                 states: tuple, weights: list[np.ndarray], training: bool) -> tuple[list, Any]:
    """backend.step_forward on contiguous CPU tensors' NumPy views (the weights' given as
    NumPy arrays): the new states (NumPy arrays) and what step_backward needs (None unless
    training)."""
    p = dict(zip(args, weights, strict=True))
    return parallel.beside_openmp(lambda: backend.step_forward(
        cell, x.detach().numpy(), p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"),
        tuple(s.detach().numpy() for s in states), tuple(p[a] for a, _ in cell.norms),
        training))


class _StepGradients:
    """The parameters' gradients of one cell module's steps in one thread's graph, deferred:
    each step's backward leaves its weight gradients' factors here (WeightRows; vectors
    summed), and :class:`_CollectStepGradients` hands their sums to autograd once, after the
    last of those steps ran backward. Per step, autograd would otherwise get a cloned [G,I]
    gradient from a thin product and add it into the parameter's (what made a 50-step
    LSTMCell decoder 1.5x slower than torch.nn's)."""

    def __init__(self, weights: list[torch.Tensor]):
        #: the weights it serves: a step of other weights, or after an in-place update
        #: (optimizer.step()), gets a new store
        self.key = [(id(w), w._version) for w in weights]
        self.rows: list[list] = [[] for _ in weights]
        self.sums: list[np.ndarray | None] = [None] * len(weights)
        #: set once autograd has taken the sums: new steps get a new store
        self.taken = False
        self._lock = threading.Lock()

    def add(self, grads: list) -> None:
        with self._lock:
            for i, g in enumerate(grads):
                if isinstance(g, WeightRows):
                    self.rows[i].append(g)
                elif g is not None:
                    self.sums[i] = g.copy() if self.sums[i] is None else self.sums[i] + g

    def take(self) -> list[torch.Tensor | None]:
        """Every weight's gradient added so far (None: no step ran backward), emptied. The
        deferred products run on torch's matmul, on torch's threads: SciPy's BLAS threads,
        woken here, kept spinning against torch's OpenMP workers and the next steps (a
        50-step LSTMCell decoder, B=1 H=128, float32: 35 ms; on torch's matmul 14)."""
        with self._lock:
            rows, sums = self.rows, self.sums
            self.rows, self.sums = [[] for _ in rows], [None] * len(sums)
            self.taken = True
        return [_row_products(r) if r else None if s is None else torch.from_numpy(s)
                for r, s in zip(rows, sums, strict=True)]


def _row_products(rows: list[WeightRows]) -> torch.Tensor:
    """The sum of a^T @ b over `rows`, as one torch matmul of all their rows."""
    a, b = WeightRows.stacked(rows)
    return torch.from_numpy(a).T @ torch.from_numpy(b)


class _CollectStepGradients(torch.autograd.Function):
    """token = f(weights), a 0-d tensor every step of one :class:`_StepGradients` takes as an
    input: autograd runs this backward after all those steps' backward, and it returns the
    weights' gradients then (so hooks, torch.autograd.grad and non-leaf weights see what
    they see with torch.nn's cells)."""

    @staticmethod
    def forward(ctx, store: _StepGradients, *weights):
        ctx.store = store
        return weights[0].new_zeros(())

    @staticmethod
    def backward(ctx, _dtoken):
        return (None, *ctx.store.take())


#: Whether autograd tells which nodes the running backward executes (what
#: torch.utils.checkpoint asks too): a step's backward then knows whether its token's gradient
#: is wanted (not by torch.autograd.grad(loss, [x]), say). Without it the steps hand their
#: weight gradients to autograd one by one.
_DEFERRABLE = hasattr(torch._C, "_will_engine_execute_node")

#: cell module -> {thread id: (its _StepGradients, their token)}
_STEP_GRADIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _step_gradients(module: torch.nn.Module,
                    weights: list[torch.Tensor]) -> tuple[_StepGradients, torch.Tensor]:
    """The store and token of this thread's steps of `module` (a new pair where the last
    was taken by autograd or its weights changed)."""
    stores = _STEP_GRADIENTS.setdefault(module, {})
    current = stores.get(threading.get_ident())
    key = [(id(w), w._version) for w in weights]
    if current is None or current[0].taken or current[0].key != key:
        store = _StepGradients(weights)
        current = stores[threading.get_ident()] = (
            store, _CollectStepGradients.apply(store, *weights))
    return current


class _CellFunction(torch.autograd.Function):
    """h', c' = one step of `cell` (the layer kernel over T=1) on CPU tensors, with gradients
    for x, h, c and, through `store`'s token, every weight (store and token None where no
    weight wants one). c and c' are empty tensors for cells without a cell state."""

    @staticmethod
    def forward(ctx, cell, backend: backends.Backend, args: list[str], views: _WeightViews,
                store, x, h, c, token, *weights):
        new, kernel = _kernel_step(cell, backend, args, x, (h, c) if c.numel() else (h,),
                                   views.of(weights), True)
        ctx.kernel, ctx.cell, ctx.backend, ctx.args, ctx.store = kernel, cell, backend, args, \
            store
        ctx.token_node = None if token is None else token.grad_fn
        ctx.save_for_backward(*weights)  # torch refuses backward if they change in place
        c_out = torch.from_numpy(new[1]) if len(new) > 1 else x.new_empty(0)
        if len(new) == 1:
            ctx.mark_non_differentiable(c_out)
        return torch.from_numpy(new[0]), c_out

    @staticmethod
    def backward(ctx, dh, dc):
        ctx.saved_tensors  # noqa: B018  (raises if a weight changed in place since forward)
        has_c = "c" in ctx.cell.states
        # the weights' gradients wait in the store when this backward runs the token's node
        # (a backward that wants none of them leaves nothing behind there)
        defer = ctx.store is not None and torch._C._will_engine_execute_node(ctx.token_node)
        g = parallel.beside_openmp(lambda: ctx.backend.step_backward(
            ctx.cell, dh.contiguous().numpy(), dc.contiguous().numpy() if has_c else None,
            ctx.kernel, defer_weights=defer))
        if ctx.store is not None:
            if defer:
                ctx.store.add([g.of(arg, ctx.cell) for arg in ctx.args])
            weights = (None,) * len(ctx.args)
        else:  # copied: autograd would keep NumPy-backed gradients alive (page faults)
            weights = tuple(torch.from_numpy(g.of(arg, ctx.cell)).clone() if needed else None
                            for arg, needed in zip(ctx.args, ctx.needs_input_grad[9:],
                                                   strict=True))
        dc0 = torch.from_numpy(g.dc0) if has_c else None
        token = None if ctx.store is None else dh.new_zeros(())
        return ((None,) * 5 + (torch.from_numpy(g.dx), torch.from_numpy(g.dh0), dc0, token)
                + weights)


class RNNCellBase(torch.nn.Module):
    """torch.nn.RNNCellBase's constructor, parameters and forward, one step of fastrnn's
    kernels (the layer kernel over one time step). CPU tensors, float32 and float64."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__()
        extra = {"nonlinearity": cell[4:]} if cell.startswith("rnn_") else {}
        _TORCH_TWIN[cell](input_size, hidden_size, bias, **extra, device="meta")  # its checks
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self._spec = stack_spec(cell, input_size, hidden_size, 1, bool(bias))  # (torch's
        # cells take any truthy bias)
        self._backend = backends.get(backend)
        self._views = _WeightViews()
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        self._args = {}
        for arg, (name, shape) in self._spec.layer_parameters(0, 0).items():
            name = name.removesuffix("_l0")
            self._args[arg] = name
            self.register_parameter(name, torch.nn.Parameter(
                torch.empty(shape, dtype=dtype, device=device)))
        if not self._spec.bias:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's init (U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), torch's RNG, in
        registration order); LayerNorm gains 1 and shifts 0."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        with torch.no_grad():
            for arg, name in self._args.items():
                weight = getattr(self, name)
                if arg in dict(self._spec.cell.norms):
                    weight.fill_(self._spec.cell.initial_norm(arg))
                else:
                    torch.nn.init.uniform_(weight, -stdv, stdv)

    @property
    def backend(self) -> str:
        return self._backend.name

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s + f", backend={self.backend!r}"

    def _check(self, x: torch.Tensor, hx: tuple, dtype: torch.dtype) -> None:
        """The checks of torch's cell kernels, with their messages and RuntimeError."""
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} expected "
                               f"{self.input_size}")
        for i, h in enumerate(hx):
            if h.shape[0] != x.shape[0]:
                raise RuntimeError(f"Input batch size {x.shape[0]} doesn't match hidden{i} "
                                   f"batch size {h.shape[0]}")
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got "
                                   f"{h.shape[1]}, expected {self.hidden_size}")
        for t in (x, *hx):
            if t.dtype != dtype:
                raise RuntimeError(f"expected the parameters' dtype {dtype}, got {t.dtype}")
            if not t.is_cpu:
                raise ValueError(f"{type(self).__name__} runs on the CPU; got a tensor on "
                                 f"{t.device}")

    def forward(self, input: torch.Tensor, hx: Any = None):
        name = type(self).__name__
        has_c = "c" in self._spec.cell.states
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D "
                             "instead")
        if hx is not None:
            for idx, value in enumerate(hx if has_c else (hx,)):
                if value.dim() not in (1, 2):
                    what = f"hx[{idx}]" if has_c else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got "
                                     f"{value.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        weights = [self._parameters[n] for n in self._args.values()]
        dtype = weights[0].dtype
        if hx is None:
            zeros = torch.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            states = (zeros, zeros) if has_c else (zeros,)
        else:
            states = tuple(hx) if has_c else (hx,)
            states = states if batched else tuple(s.unsqueeze(0) for s in states)
            if any(s.dim() != 2 for s in states):  # a batched hx for an unbatched input
                bad = next(s for s in states if s.dim() != 2)
                raise RuntimeError(f"hidden0 has inconsistent hidden_size: got "
                                   f"{bad.shape[1]}, expected {self.hidden_size}")
        self._check(x, states, dtype)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *states, *weights)):
            store, token = _step_gradients(self, weights) if _DEFERRABLE and any(
                w.requires_grad for w in weights) else (None, None)
            h, c = _CellFunction.apply(self._spec.cell, self._backend, list(self._args),
                                       self._views, store, x.contiguous(), states[0].contiguous(),
                                       states[1].contiguous() if has_c else x.new_empty(0),
                                       token, *weights)
        else:  # nothing to differentiate: the kernel without autograd's Function (~30 us)
            new, _ = _kernel_step(self._spec.cell, self._backend, self._args, x.contiguous(),
                                  tuple(s.contiguous() for s in states),
                                  self._views.of(weights), False)
            h, c = torch.from_numpy(new[0]), (torch.from_numpy(new[1]) if has_c else None)
        if not batched:
            h, c = h.squeeze(0), (c.squeeze(0) if has_c else c)
        return (h, c) if has_c else h


class RNNCell(RNNCellBase):
    """torch.nn.RNNCell on fastrnn's kernels."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None, *,
                 backend: str | None = None):
        cell = "rnn_relu" if nonlinearity == "relu" else "rnn_tanh"
        super().__init__(cell, input_size, hidden_size, bias, device, dtype, backend=backend)
        self.nonlinearity = nonlinearity  # torch checks it at forward time

    def forward(self, input: torch.Tensor, hx: Any = None):
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        if self._spec.cell.name != "rnn_" + self.nonlinearity:  # changed after construction
            self._spec = stack_spec("rnn_" + self.nonlinearity, self.input_size,
                                    self.hidden_size, 1, self.bias)
        return super().forward(input, hx)


class LSTMCell(RNNCellBase):
    """torch.nn.LSTMCell on fastrnn's kernels; forward returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype, backend=backend)


class GRUCell(RNNCellBase):
    """torch.nn.GRUCell on fastrnn's kernels."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__("gru", input_size, hidden_size, bias, device, dtype, backend=backend)


class LayerNormLSTMCell(RNNCellBase):
    """One step of :class:`LayerNormLSTM` (its equations and parameter names, without the
    layer suffix); forward returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__("layernorm_lstm", input_size, hidden_size, bias, device, dtype,
                         backend=backend)


class LayerNormGRUCell(RNNCellBase):
    """One step of :class:`LayerNormGRU`."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__("layernorm_gru", input_size, hidden_size, bias, device, dtype,
                         backend=backend)


class patch:
    """Swap torch.nn.LSTM / GRU / RNN and LSTMCell / GRUCell / RNNCell for fastrnn's.

    As a plain call, ``fastrnn.torch.patch()`` swaps them until ``.undo()``; as a context
    manager, ``with fastrnn.torch.patch(): ...`` restores torch.nn's classes on exit.
    Modules built while patched are fastrnn.torch modules; ``backend=`` picks their kernels.
    """

    def __init__(self, backend: str | None = None):
        self._saved = {name: getattr(torch.nn, name) for name in _TORCH_CLASSES}
        for name in _TORCH_CLASSES:
            cls = globals()[name]
            if backend is not None:
                cls = type(cls.__name__, (cls,), {"__init__": _with_backend(cls, backend),
                                                  "__module__": __name__})
            setattr(torch.nn, name, cls)

    def undo(self) -> None:
        for name, cls in self._saved.items():
            setattr(torch.nn, name, cls)

    def __enter__(self) -> patch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()


def _with_backend(cls: type, backend: str):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("backend", backend)
        cls.__init__(self, *args, **kwargs)

    return __init__


class _ConvFunction(torch.autograd.Function):
    """y, h_n, c_n = ConvLSTM layers(x, h0, c0) with gradients for x, h0, c0 and the weights
    (CPU tensors, read and written through NumPy views)."""

    @staticmethod
    def forward(ctx, backend, save: bool, names: list[str], lengths, x, h0, c0, *weights):
        from .conv_lstm import stack_forward

        params = {name: w.detach().numpy() for name, w in zip(names, weights, strict=True)}
        y, h_n, c_n, ctxs = stack_forward(backend, params, h0.shape[0], x.detach().numpy(),
                                          h0.detach().numpy(), c0.detach().numpy(), lengths,
                                          save)
        ctx.ctxs, ctx.backend, ctx.names = ctxs, backend, names
        if save:
            ctx.save_for_backward(*weights)
        return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        from .conv_lstm import stack_backward

        ctx.saved_tensors  # noqa: B018  (raises if a weight changed in place since forward)
        dx, dh0, dc0, grads = stack_backward(
            ctx.backend, ctx.ctxs, dy.contiguous().numpy(), dh_n.contiguous().numpy(),
            dc_n.contiguous().numpy(), input_grad=ctx.needs_input_grad[4])
        return (None,) * 4 + (None if dx is None else torch.from_numpy(dx),
                              torch.from_numpy(dh0),
                              torch.from_numpy(dc0),
                              *(torch.from_numpy(grads[name]) for name in ctx.names))


class ConvLSTM2d(torch.nn.Module):
    """ConvLSTM layers (Shi et al. 2015) as a torch module on fastrnn's ConvLSTM kernels.

    torch has no ConvLSTM; this module computes what the common per-step composition does (a
    ``torch.nn.Conv2d(C_l + F, 4F, k, padding=k // 2)`` on ``cat([x_t, h], 1)``, gates i, f, g,
    o) and holds the same weights: ``weight_l{l}`` [4F, C_l + F, k, k] and ``bias_l{l}`` [4F],
    initialised as torch.nn.Conv2d's. ``forward(x, hx=None, lengths=None)``: x [T,B,C,Hh,Ww]
    (batch_first: [B,T,...]) -> y (the top layer's h at every step) and (h_n, c_n), each
    [num_layers, B, F, Hh, Ww]. CPU tensors, float32 or float64; ``backend`` None (the
    fastest available), "cython", "numba" or "reference". See
    :class:`fastrnn.conv_lstm.ConvLSTM2d` for the NumPy module.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False,
                 device: Any = None, dtype: Any = None, *, backend: str | None = None):
        super().__init__()
        from .conv_lstm import conv_spec

        self._spec = spec = conv_spec(in_channels, hidden_channels, kernel_size, num_layers,
                                      bias, batch_first)
        self.in_channels, self.hidden_channels = spec.in_channels, spec.hidden_channels
        self.kernel_size, self.num_layers = spec.kernel_size, spec.num_layers
        self.bias, self.batch_first = spec.bias, spec.batch_first
        self._backend = backends.conv(backend)
        factory = {"device": device, "dtype": dtype}
        for name, shape in spec.parameter_shapes():
            self.register_parameter(name, torch.nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn.Conv2d's initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        for name, p in self.named_parameters():
            bound = self._spec.init_bound(name)
            torch.nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        return s + (", batch_first=True" if self.batch_first else "")

    def forward(self, x: torch.Tensor, hx: tuple | None = None, lengths: Any = None):
        names = [name for name, _ in self.named_parameters()]
        weights = [p for _, p in self.named_parameters()]
        dtype = weights[0].dtype
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[2] != self.in_channels:
            layout = "(B, T, C, H, W)" if self.batch_first else "(T, B, C, H, W)"
            raise ValueError(f"input must be a 5-d tensor {layout} with {self.in_channels} "
                             f"channels, got {getattr(x, 'shape', type(x).__name__)}")
        if x.device.type != "cpu" or weights[0].device.type != "cpu":
            raise RuntimeError("fastrnn.torch.ConvLSTM2d runs on CPU tensors only (the "
                               "ConvLSTM kernels have no CUDA version yet)")
        if x.dtype != dtype:
            raise ValueError(f"input must have the type {dtype}, got type {x.dtype}")
        if self.batch_first:
            x = x.transpose(0, 1)
        x = x.contiguous()
        T, B, _, Hh, Ww = x.shape
        shape = (self.num_layers, B, self.hidden_channels, Hh, Ww)
        if hx is None:
            h0 = c0 = x.new_zeros(shape)
        else:
            h0, c0 = hx
            for name, s in (("h0", h0), ("c0", c0)):
                if tuple(s.shape) != shape:
                    raise RuntimeError(f"Expected hidden {name} size {shape}, got "
                                       f"{tuple(s.shape)}")
            h0, c0 = h0.contiguous(), c0.contiguous()
        save = torch.is_grad_enabled() and (x.requires_grad or h0.requires_grad
                                            or c0.requires_grad
                                            or any(w.requires_grad for w in weights))
        y, h_n, c_n = _ConvFunction.apply(self._backend, save, names, lengths, x, h0, c0,
                                          *weights)
        return (y.transpose(0, 1) if self.batch_first else y), (h_n, c_n)
