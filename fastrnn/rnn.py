"""NumPy modules over the layer stack: :class:`RNN`, :class:`LSTM`, :class:`GRU`,
:class:`LayerNormLSTM`, :class:`LayerNormGRU`, :class:`JordanRNN`.

They take torch.nn's constructor arguments and return torch.nn's shapes, but work on NumPy
arrays and run any registered kernel backend. A module owns its parameters, gradients and
dropout RNG; the computation is the stateless stack of :mod:`fastrnn.stack`, and each forward's
tape belongs to the thread that ran it, so one module may be shared by threads in training.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from . import backends, cells, stack
from .backends.contract import check_flag, check_lengths

State = np.ndarray | tuple[np.ndarray, np.ndarray]


def _to_numpy(value: Any) -> np.ndarray:
    """np.asarray that also takes torch tensors (detached, moved to the CPU)."""
    if type(value) is np.ndarray:  # the common case, first: a cell's step pays every check
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def load_parameters(params: dict[str, np.ndarray], state: dict[str, Any], owner: str) -> None:
    """Copy `state` (arrays or torch tensors) into `params` in place, checking every entry
    first (names, shapes, numeric and finite values); `owner` names the module in errors."""
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(f"state_dict does not match {owner}: missing {missing}, "
                       f"unexpected {unexpected}")
    arrays = {}
    for name, target in params.items():
        value = _to_numpy(state[name])
        if value.shape != target.shape:
            raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, "
                             f"expected {target.shape}")
        if value.dtype.kind not in "fiu":
            raise TypeError(f"state_dict[{name!r}] must be numeric, got {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"state_dict[{name!r}] holds NaN or inf")
        arrays[name] = value
    for name, value in arrays.items():
        params[name][...] = value


def stack_spec(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
               bias: bool = True, dropout: float = 0.0, bidirectional: bool = False,
               proj_size: int = 0) -> stack.StackSpec:
    """A checked :class:`~fastrnn.stack.StackSpec` from torch.nn's constructor arguments, or
    a clear error naming the argument (a warning for dropout that cannot act)."""
    spec = cells.get(cell)
    input_size = _positive_int(input_size, "input_size")
    hidden_size = _positive_int(hidden_size, "hidden_size")
    num_layers = _positive_int(num_layers, "num_layers")
    if spec.output_act:  # Jordan: proj_size is the output layer's width, which it needs
        proj_size = _positive_int(proj_size, "output_size")
    proj_size = _positive_int(proj_size, "proj_size", minimum=0)
    if proj_size and not spec.projection:
        raise ValueError(f"proj_size is only supported by LSTM, not {spec.name}")
    if proj_size >= hidden_size and not spec.output_act:
        raise ValueError(f"proj_size must be smaller than hidden_size ({hidden_size}), "
                         f"got {proj_size}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout <= 1:
        raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout acts between layers only, so it does nothing with "
                      f"num_layers=1 (got dropout={dropout})", stacklevel=4)
    return stack.StackSpec(spec, input_size, hidden_size, num_layers,
                           check_flag(bidirectional, "bidirectional"), proj_size,
                           check_flag(bias, "bias"), float(dropout))


class KernelModule:
    """What the NumPy stacks and cells share: ``params`` / ``grads`` under torch's names, the
    kernel backend, and training or eval mode."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    training: bool

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter under torch's names."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy `state` (arrays or torch tensors) into the live parameters, checking all first."""
        load_parameters(self.params, state, repr(self))

    @property
    def backend(self) -> str:
        """Name of the kernel backend; assign a name (or None for the default) to switch."""
        return self._backend.name

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = backends.get(name)

    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)


class RNNBase(KernelModule):
    """A stack of any cell of :mod:`fastrnn.cells` (use :class:`RNN`, :class:`LSTM`,
    :class:`GRU`, or give the cell's name)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: Any = np.float32,
        backend: str | None = None,
        seed: int | None = None,
    ):
        self.spec = stack_spec(cell, input_size, hidden_size, num_layers, bias, dropout,
                               bidirectional, proj_size)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.batch_first = check_flag(batch_first, "batch_first")
        self.training = True
        self.backend = backend
        self._rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self._init_parameters()
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._tapes = stack.TapeStore()
        self._grads_lock = threading.Lock()

    # torch.nn's attribute names, read from the spec
    cell = property(lambda self: self.spec.cell.name)
    input_size = property(lambda self: self.spec.input_size)
    hidden_size = property(lambda self: self.spec.hidden_size)
    num_layers = property(lambda self: self.spec.num_layers)
    bias = property(lambda self: self.spec.bias)
    dropout = property(lambda self: self.spec.dropout)
    bidirectional = property(lambda self: self.spec.bidirectional)
    proj_size = property(lambda self: self.spec.proj_size)
    num_directions = property(lambda self: self.spec.num_directions)
    output_size = property(lambda self: self.spec.output_size)

    # ---------------------------------------------------------------- parameters

    def _init_parameters(self) -> None:
        """torch's init: every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size));
        LayerNorm gains 1 and shifts 0."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        norms = self.spec.norm_parameters()
        for name, shape in self.spec.parameters():
            if name in norms:
                self.params[name] = np.full(shape, norms[name], self.dtype)
            else:
                self.params[name] = self._rng.uniform(-bound, bound, size=shape).astype(
                    self.dtype)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw every parameter again (in place, so references stay live)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        live = self.params
        self.params = {}
        self._init_parameters()
        for name, value in self.params.items():
            live[name][...] = value
        self.params = live

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        jordan = bool(self.spec.cell.output_act)
        if jordan:
            args.append(str(self.output_size))
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False),
                              ("proj_size", self.proj_size if jordan else 0)):
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        args += [f"{key}={value!r}" for key, value in self.spec.cell.torch_args
                 if (key, value) not in (("nonlinearity", "tanh"),
                                         ("output_nonlinearity", "identity"))]
        return f"{type(self).__name__}({', '.join(args)}, backend={self.backend!r})"

    # ---------------------------------------------------------------- input checking

    def _time_major(self, x: Any, name: str) -> tuple[np.ndarray, bool]:
        """x as a C-contiguous [T,B,features] array and whether it was unbatched."""
        x = _to_numpy(x)
        if x.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but the module's parameters are "
                            f"{self.dtype}; convert it with .astype(np.{self.dtype}) or build "
                            f"the module with dtype=np.{x.dtype}" if x.dtype.kind == "f" else
                            f"{name} must be a float array, got dtype {x.dtype}")
        if x.ndim == 2:
            return np.ascontiguousarray(x[:, None, :]), True
        if x.ndim != 3:
            layout = "(B, T, features)" if self.batch_first else "(T, B, features)"
            raise ValueError(f"{name} must be 3-d {layout} or 2-d unbatched (T, features), "
                             f"got shape {x.shape}")
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        return np.ascontiguousarray(x), False

    def _state(self, value: Any, name: str, size: int, B: int, unbatched: bool) -> np.ndarray:
        LD = self.num_layers * self.num_directions
        if value is None:
            return np.zeros((LD, B, size), self.dtype)
        value = _to_numpy(value)
        expected = (LD, size) if unbatched else (LD, B, size)
        if value.shape != expected:
            raise ValueError(f"{name} must have shape {expected} (num_layers * num_directions"
                             f"{'' if unbatched else ', batch'}, {size}), got {value.shape}")
        if value.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {value.dtype}, expected {self.dtype}")
        value = value[:, None, :] if unbatched else value
        return np.ascontiguousarray(value)

    def _states(self, hx: Any, B: int, unbatched: bool, names: tuple[str, ...]) -> tuple:
        """One [LD,B,width] array per cell state from hx (a tuple for several states, a
        single array for one; None: zeros), called `names` in errors."""
        sizes = self.spec.state_sizes()
        if len(names) == 1:
            if isinstance(hx, (tuple, list)):
                raise ValueError(f"{names[0]} for {type(self).__name__} must be one array, "
                                 "not a tuple")
            hx = (hx,)
        elif hx is None:
            hx = (None,) * len(names)
        elif not isinstance(hx, (tuple, list)) or len(hx) != len(names):
            raise ValueError(f"{names[0]} for {type(self).__name__} must be a tuple "
                             f"({', '.join(names)}) or None")
        return tuple(self._state(v, n, size, B, unbatched)
                     for v, n, size in zip(hx, names, sizes, strict=True))

    def _restore_layout(self, y: np.ndarray, unbatched: bool) -> np.ndarray:
        """Inverse of :meth:`_time_major` for an output [T,B,F]."""
        if unbatched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def _public_states(self, states: tuple, unbatched: bool):
        """The stack's states as torch.nn returns them: one array, or a tuple (LSTM)."""
        states = tuple(s[:, 0, :] for s in states) if unbatched else states
        return states[0] if len(states) == 1 else states

    # ---------------------------------------------------------------- forward and backward

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        return self.forward(x, hx, lengths)

    def _keep_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """Inverted-dropout mask between layers: 0 or 1/(1-p), from the module's RNG."""
        keep = 1.0 - self.dropout
        mask = (self._rng.random(shape) < keep).astype(self.dtype)
        if keep > 0:
            mask /= self.dtype.type(keep)
        return mask

    def forward(self, x: Any, hx: Any = None, lengths: Any = None):
        """Run the stack.

        x: (T,B,I), or (B,T,I) when batch_first, or unbatched (T,I); the module's dtype.
        hx: (num_layers*D, B, H_out) (LSTM: a tuple (h0, c0), c0 with hidden_size), or None.
        lengths: int array (B,), each in [0, T]: steps beyond a sequence's length give zeros
        and leave its state alone, as torch does for a PackedSequence.
        Returns y (T,B,D*H_out) in x's layout and h_n (LSTM: (h_n, c_n)) like hx. In training
        mode the forward's tape is kept for this thread's next :meth:`backward`.
        """
        x, unbatched = self._time_major(x, "x")
        T, B, I = x.shape
        if I != self.input_size:
            raise ValueError(f"x has {I} features, expected input_size={self.input_size}")
        if T == 0:
            raise ValueError("x has no time steps (T = 0)")
        if lengths is not None and unbatched:
            raise ValueError("lengths needs batched input (T, B, I); x is unbatched")
        lengths = check_lengths(lengths, T, B)
        names = self.spec.cell.states
        states = self._states(hx, B, unbatched,
                              tuple(f"{s}0" for s in names) if len(names) > 1 else ("hx",))
        y, states_n, tape = stack.forward(
            self.spec, self.params, x, states, lengths, backend=self._backend,
            save=self.training, dropout_mask=self._keep_mask if self.training else None)
        if tape is None:
            self._tapes.drop()
        else:
            self._tapes.keep((tape, y.shape, unbatched, B))
        return self._restore_layout(y, unbatched), self._public_states(states_n, unbatched)

    def step(self, x: Any, hx: Any = None):
        """One time step of the whole stack for inference (sampling, a decoder that does not
        train): x (B, input_size) or unbatched (input_size,); hx and the returned state as in
        :meth:`forward` (None: zeros). Returns (y (B, H_out), h_n).

        Each layer is its kernels' time loop over T=1 without the batch plan
        (``Backend.step_forward``, as the cells run it): several times faster than
        ``forward`` on one step. Nothing is recorded and no dropout applies, in either mode
        (the cells of :mod:`fastrnn.rnn_cell` run steps that train). Unidirectional stacks
        only: the reverse direction starts at the sequence's end.
        """
        if self.num_directions != 1:
            raise ValueError("step() needs a unidirectional stack: a bidirectional layer's "
                             "reverse direction starts at the end of the sequence")
        x = _to_numpy(x)
        if x.ndim not in (1, 2):
            raise ValueError(f"x must be 2-d (B, input_size) or 1-d unbatched (input_size,), "
                             f"got shape {x.shape}")
        if x.dtype != self.dtype:  # forward's message
            self._time_major(x[None], "x")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x has {x.shape[-1]} features, expected "
                             f"input_size={self.input_size}")
        unbatched = x.ndim == 1
        x = np.ascontiguousarray(x.reshape(1, -1) if unbatched else x)
        names = self.spec.cell.states
        states = self._states(hx, x.shape[0], unbatched,
                              tuple(f"{s}0" for s in names) if len(names) > 1 else ("hx",))
        cell = self.spec.cell
        if self.spec.proj_size:  # the lean step has no projection: the layer kernels' step
            y, states_n, _ = stack.forward(self.spec, self.params, x[None], states, None,
                                           backend=self._backend, save=False)
            y = y[0]
        else:
            y, layers = x, []
            for layer, args in enumerate(self._step_arguments()):
                p = {arg: self.params[name] for arg, name in args}
                new, _ = self._backend.step_forward(
                    cell, y, p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"),
                    tuple(s[layer] for s in states), tuple(p[arg] for arg, _ in cell.norms),
                    False)
                layers.append(new)
                y = new[0]
            states_n = tuple(np.stack(per_state) if len(per_state) > 1 else per_state[0][None]
                             for per_state in zip(*layers, strict=True))  # (stack: ~3 us)
        return (y[0] if unbatched else y), self._public_states(states_n, unbatched)

    def _step_arguments(self) -> list[list[tuple[str, str]]]:
        """Per layer (forward direction), kernel argument -> parameter name, made once (the
        spec is fixed): :meth:`step`'s per-call cost is part of every sampled character."""
        if not hasattr(self, "_step_args"):
            self._step_args = [[(arg, name) for arg, (name, _) in
                                self.spec.layer_parameters(layer, 0).items()]
                               for layer in range(self.num_layers)]
        return self._step_args

    def backward(self, dy: Any, dh_n: Any = None):
        """Gradients of this thread's last forward (training mode), accumulated into
        ``self.grads``; a forward's tape serves one backward.

        dy: like y; dh_n: like h_n, or None (LSTM: (dh_n, dc_n), either part may be None).
        Returns (dx, dhx), dx like x and dhx like hx (LSTM: (dh0, dc0)).
        """
        tape, y_shape, unbatched, B = self._tapes.peek(type(self).__name__)
        dy, dy_unbatched = self._time_major(dy, "dy")
        if dy.shape != y_shape or dy_unbatched != unbatched:
            expected = self._restore_layout(np.empty(y_shape, np.int8), unbatched).shape
            raise ValueError(f"dy must have the shape of y, {expected}, got "
                             f"{self._restore_layout(dy, dy_unbatched).shape}")
        if len(self.spec.cell.states) > 1 and not isinstance(dh_n, (tuple, list)):
            dh_n = (dh_n,) + (None,) * (len(self.spec.cell.states) - 1)
        dstates = self._states(dh_n, B, unbatched,
                               tuple(f"d{s}_n" for s in self.spec.cell.states))
        self._tapes.consume()
        dx, dstates0, grads = stack.backward(tape, dy, dstates)
        with self._grads_lock:  # threads sharing the module accumulate one at a time
            for name, grad in grads.items():
                self.grads[name] += grad
        return self._restore_layout(dx, unbatched), self._public_states(dstates0, unbatched)


class RNN(RNNBase):
    """Elman RNN, h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu (torch.nn.RNN)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *, dtype: Any = np.float32,
                 backend: str | None = None, seed: int | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype=dtype, backend=backend,
                         seed=seed)


class LSTM(RNNBase):
    """LSTM with torch.nn.LSTM's arguments (proj_size included); forward returns y, (h, c)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, *, dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, dtype=dtype, backend=backend,
                         seed=seed)


class GRU(RNNBase):
    """GRU with torch.nn.GRU's arguments and formula."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype=dtype, backend=backend, seed=seed)


class LayerNormLSTM(RNNBase):
    """LayerNorm LSTM (Ba et al. 2016) with torch.nn.LSTM's arguments but no proj_size.

    Per step, with norm(v) = (v - mean(v)) / sqrt(var(v) + 1e-5) over each row's features::

        a = g_ih * norm(x W_ih^T) + g_hh * norm(h W_hh^T) + b_ih + b_hh   (gates i, f, g, o)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(g_c * norm(c') + b_c)

    Parameters per layer k: torch.nn.LSTM's plus ``ln_ih_weight_l{k}`` / ``ln_hh_weight_l{k}``
    [4H] (g_ih, g_hh) and ``ln_c_weight_l{k}`` / ``ln_c_bias_l{k}`` [H] (g_c, b_c); gains
    start at 1 and shifts at 0. The carried state c is un-normalised. forward returns y,
    (h, c).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, *, dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("layernorm_lstm", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, proj_size, dtype=dtype,
                         backend=backend, seed=seed)  # proj_size != 0: a clear error


class LayerNormGRU(RNNBase):
    """LayerNorm GRU: torch.nn.GRU with its two products normalised (no cuDNN equivalent).

    Per step, norm as in :class:`LayerNormLSTM`, gates r, z, n::

        gi = g_ih * norm(x W_ih^T) + b_ih;  gh = g_hh * norm(h W_hh^T) + b_hh
        r = sigmoid(gi_r + gh_r);  z = sigmoid(gi_z + gh_z);  n = tanh(gi_n + r * gh_n)
        h' = (1 - z) * n + z * h

    Parameters per layer k: torch.nn.GRU's plus ``ln_ih_weight_l{k}`` / ``ln_hh_weight_l{k}``
    [3H] (g_ih, g_hh), starting at 1.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("layernorm_gru", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, dtype=dtype, backend=backend,
                         seed=seed)


class JordanRNN(RNNBase):
    """Jordan network (Jordan 1986): the recurrence goes through the output, not the hidden
    layer. Per step, per layer and direction::

        u = act(W_ih x + b_ih + W_yh y_prev + b_yh)      act: tanh or relu   [B, hidden_size]
        y = act_y(W_hy u + b_hy)             act_y: identity, tanh or sigmoid [B, output_size]

    y is both the layer's output and the state carried to the next step (y0 given, or zeros).
    Parameters per layer k: ``weight_ih_l{k}`` [H, in], ``weight_yh_l{k}`` [H, O],
    ``bias_ih_l{k}`` / ``bias_yh_l{k}`` [H], ``weight_hy_l{k}`` [O, H], ``bias_hy_l{k}`` [O]
    (``_reverse`` for the second direction), all ~ U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.RNN.
    Layers, ragged lengths and bidirectional layers (each direction its own recurrence over
    its own valid steps) work as for :class:`RNN`; forward returns y [T,B,D*O] and y_n
    [L*D,B,O]. Unlike an Elman RNN, all the network remembers is its previous output: a task
    that needs more memory than O numbers cannot be learned (examples/jordan.py shows both
    sides). torch has no Jordan network, so fastrnn.torch has no drop-in; the CUDA backend
    has no Jordan kernels yet (NotImplementedError names the CPU backends).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 num_layers: int = 1, nonlinearity: str = "tanh",
                 output_nonlinearity: str = "identity", bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 *, dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if output_nonlinearity not in cells.OUTPUT_ACTS:
            raise ValueError(f"output_nonlinearity must be one of {cells.OUTPUT_ACTS}, got "
                             f"{output_nonlinearity!r}")
        self.nonlinearity, self.output_nonlinearity = nonlinearity, output_nonlinearity
        super().__init__(f"jordan_{nonlinearity}_{output_nonlinearity}", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         output_size, dtype=dtype, backend=backend, seed=seed)
