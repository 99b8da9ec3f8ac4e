"""The layer stack: layers x directions x lengths x inter-layer dropout, composed once.

:class:`RNN`, :class:`LSTM` and :class:`GRU` take torch.nn's constructor arguments and return
torch.nn's shapes, but work on NumPy arrays and run any registered kernel backend. Each kernel
call is one layer in one direction; everything else (batch_first, unbatched input, the hidden
state layout, concatenating directions, dropout between layers) happens here, for every
backend alike.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from . import backends, parallel
from .backends.contract import GATES, check_lengths

State = np.ndarray | tuple[np.ndarray, np.ndarray]


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


def _to_numpy(value: Any) -> np.ndarray:
    """np.asarray that also takes torch tensors (detached, moved to the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class RNNBase:
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU` (use those)."""

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
        self.cell = cell
        self.input_size = _positive_int(input_size, "input_size")
        self.hidden_size = _positive_int(hidden_size, "hidden_size")
        self.num_layers = _positive_int(num_layers, "num_layers")
        self.proj_size = _positive_int(proj_size, "proj_size", minimum=0)
        if self.proj_size and cell != "lstm":
            raise ValueError(f"proj_size is only supported by LSTM, not {cell}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size ({self.hidden_size}), "
                             f"got {self.proj_size}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn("dropout acts between layers only, so it does nothing with "
                          f"num_layers=1 (got dropout={dropout})", stacklevel=3)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.proj_size or self.hidden_size  # H_out of torch's docs
        self.training = True
        self.backend = backend
        self._rng = np.random.default_rng(seed)
        self.params: dict[str, np.ndarray] = {}
        self._init_parameters()
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._saved: list | None = None
        self._last_shapes: tuple | None = None

    # ---------------------------------------------------------------- parameters

    def _names(self, layer: int, direction: int) -> dict[str, str]:
        """Kernel argument -> parameter name, torch's names (suffix _reverse for direction 1)."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = {"w_ih": "weight_ih" + suffix, "w_hh": "weight_hh" + suffix}
        if self.bias:
            names.update(b_ih="bias_ih" + suffix, b_hh="bias_hh" + suffix)
        if self.proj_size:
            names["w_hr"] = "weight_hr" + suffix
        return names

    def _shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        G, H, Hout = GATES[self.cell], self.hidden_size, self.output_size
        layer_in = self.input_size if layer == 0 else self.num_directions * Hout
        return {"w_ih": (G * H, layer_in), "w_hh": (G * H, Hout), "b_ih": (G * H,),
                "b_hh": (G * H,), "w_hr": (self.proj_size, H)}

    def _init_parameters(self) -> None:
        """torch's init: every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / np.sqrt(self.hidden_size)
        for layer in range(self.num_layers):
            shapes = self._shapes(layer)
            for direction in range(self.num_directions):
                for arg, name in self._names(layer, direction).items():
                    values = self._rng.uniform(-bound, bound, size=shapes[arg])
                    self.params[name] = values.astype(self.dtype)

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

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter under torch's names."""
        return {name: value.copy() for name, value in self.params.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy `state` (arrays or torch tensors) into the live parameters, checking all first."""
        missing = sorted(set(self.params) - set(state))
        unexpected = sorted(set(state) - set(self.params))
        if missing or unexpected:
            raise KeyError(f"state_dict does not match {self!r}: missing {missing}, "
                           f"unexpected {unexpected}")
        arrays = {}
        for name, target in self.params.items():
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
            self.params[name][...] = value

    # ---------------------------------------------------------------- modes and backend

    @property
    def backend(self) -> str:
        """Name of the kernel backend; assign a name (or None for the default) to switch."""
        return self._backend.name

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = backends.get(name)

    def train(self, mode: bool = True) -> RNNBase:
        self.training = bool(mode)
        return self

    def eval(self) -> RNNBase:
        return self.train(False)

    def __repr__(self) -> str:
        args = [str(self.input_size), str(self.hidden_size)]
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False), ("proj_size", 0)):
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        if self.cell == "rnn_relu":
            args.append("nonlinearity='relu'")
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

    def _states(self, hx: Any, B: int, unbatched: bool, names: tuple[str, str]):
        """(h [LD,B,H_out], c [LD,B,H] or None) from hx, zeros where hx is None."""
        if self.cell == "lstm":
            if hx is None:
                hx = (None, None)
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError(f"{names[0]} for LSTM must be a tuple ({names[0]}, {names[1]}) "
                                 "or None")
            return (self._state(hx[0], names[0], self.output_size, B, unbatched),
                    self._state(hx[1], names[1], self.hidden_size, B, unbatched))
        if isinstance(hx, (tuple, list)):
            raise ValueError(f"{names[0]} for {type(self).__name__} must be one array, "
                             "not a tuple")
        return self._state(hx, names[0], self.output_size, B, unbatched), None

    def _restore_layout(self, y: np.ndarray, unbatched: bool) -> np.ndarray:
        """Inverse of :meth:`_time_major` for an output [T,B,F]."""
        if unbatched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    # ---------------------------------------------------------------- forward and backward

    def _per_direction(self, run) -> list:
        """run(direction) for each direction; concurrently when the backend allows it."""
        tasks = [lambda d=d: run(d) for d in range(self.num_directions)]
        if self._backend.releases_gil:
            return parallel.run(tasks)
        return [task() for task in tasks]

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        return self.forward(x, hx, lengths)

    def forward(self, x: Any, hx: Any = None, lengths: Any = None):
        """Run the stack.

        x: (T,B,I), or (B,T,I) when batch_first, or unbatched (T,I); the module's dtype.
        hx: (num_layers*D, B, H_out) (LSTM: a tuple (h0, c0), c0 with hidden_size), or None.
        lengths: int array (B,), each in [0, T]: steps beyond a sequence's length give zeros
        and leave its state alone, as torch does for a PackedSequence.
        Returns y (T,B,D*H_out) in x's layout and h_n (LSTM: (h_n, c_n)) like hx.
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
        h0, c0 = self._states(hx, B, unbatched, ("h0", "c0") if self.cell == "lstm" else ("hx", ""))
        y, h_n, c_n, saved = self.forward_time_major(x, h0, c0, lengths, save=self.training,
                                                     dropout=self.training)
        self._saved = saved
        self._last_shapes = (y.shape, unbatched, B)
        y = self._restore_layout(y, unbatched)
        if unbatched:
            h_n = h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        return y, ((h_n, c_n) if self.cell == "lstm" else h_n)

    def backward(self, dy: Any, dh_n: Any = None):
        """Gradients of the last forward (training mode), accumulated into ``self.grads``.

        dy: like y; dh_n: like h_n, or None (LSTM: (dh_n, dc_n), either part may be None).
        Returns (dx, dhx), dx like x and dhx like hx (LSTM: (dh0, dc0)).
        """
        if self._saved is None:
            raise RuntimeError("backward() needs a forward() in training mode first "
                               "(call m.train() before the forward)")
        y_shape, unbatched, B = self._last_shapes
        dy, dy_unbatched = self._time_major(dy, "dy")
        if dy.shape != y_shape or dy_unbatched != unbatched:
            expected = self._restore_layout(np.empty(y_shape, np.int8), unbatched).shape
            raise ValueError(f"dy must have the shape of y, {expected}, got "
                             f"{self._restore_layout(dy, dy_unbatched).shape}")
        if self.cell == "lstm" and not isinstance(dh_n, (tuple, list)):
            dh_n = (dh_n, None)
        dh, dc = self._states(dh_n, B, unbatched, ("dh_n", "dc_n"))
        dx, dh0, dc0, grads = self.backward_time_major(self._saved, dy, dh, dc)
        for name, grad in grads.items():
            self.grads[name] += grad
        dx = self._restore_layout(dx, unbatched)
        if unbatched:
            dh0 = dh0[:, 0, :]
            dc0 = None if dc0 is None else dc0[:, 0, :]
        return dx, ((dh0, dc0) if self.cell == "lstm" else dh0)

    # ---------------------------------------------------------------- the time-major core

    def _keep_mask(self, shape: tuple[int, ...], ops: ArrayOps) -> np.ndarray:
        """Inverted-dropout mask between layers: 0 or 1/(1-p), drawn from the module's RNG
        (NumPy arrays: `ops` matters only to the torch adapter's override)."""
        keep = 1.0 - self.dropout
        mask = (self._rng.random(shape) < keep).astype(self.dtype)
        if keep > 0:
            mask /= self.dtype.type(keep)
        return mask

    def forward_time_major(self, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None,
                           lengths: np.ndarray | None, save: bool, dropout: bool,
                           ops: ArrayOps = NUMPY):
        """The stack on checked, time-major arrays of the module's dtype, with self.params.

        x [T,B,I] C-contiguous, h0 [L*D,B,H_out], c0 [L*D,B,H] (LSTM) or None, lengths int64
        [B] or None; `dropout`: apply dropout between layers; `ops`: the arrays' operations
        (NumPy unless the torch adapter runs it on tensors). Returns y [T,B,D*H_out], h_n,
        c_n (or None) and what :meth:`backward_time_major` needs (None unless `save`).
        Keeps no state.
        """
        h_n, c_n = ops.empty_like(h0), None if c0 is None else ops.empty_like(c0)
        saved = []
        layer_input = x
        for layer in range(self.num_layers):

            def run(direction: int, layer: int = layer, layer_input: np.ndarray = layer_input):
                k = layer * self.num_directions + direction
                p = {arg: ops.to_backend(self.params[name])
                     for arg, name in self._names(layer, direction).items()}
                return self._backend.forward(
                    self.cell, ops.to_backend(layer_input), p["w_ih"], p["w_hh"],
                    p.get("b_ih"), p.get("b_hh"), ops.to_backend(h0[k]),
                    None if c0 is None else ops.to_backend(c0[k]), w_hr=p.get("w_hr"),
                    lengths=lengths, reverse=direction == 1, training=save)

            results = self._per_direction(run)
            ys = []
            for direction, out in enumerate(results):
                k = layer * self.num_directions + direction
                h_n[k] = ops.from_backend(out.h_n)
                if c_n is not None:
                    c_n[k] = ops.from_backend(out.c_n)
                ys.append(ops.from_backend(out.y))
            y = ys[0] if len(ys) == 1 else ops.concat(ys, 2)
            mask = None
            if dropout and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._keep_mask(tuple(y.shape), ops)
                y = y * mask
            saved.append(([out.ctx for out in results], mask))
            layer_input = y
        return layer_input, h_n, c_n, (saved if save else None)

    def backward_time_major(self, saved: list, dy: np.ndarray, dh: np.ndarray,
                            dc: np.ndarray | None, ops: ArrayOps = NUMPY):
        """Gradients of a :meth:`forward_time_major` from its `saved`; dy [T,B,D*H_out],
        dh [L*D,B,H_out], dc [L*D,B,H] (LSTM) or None, `ops` as in the forward. Returns dx
        [T,B,I], dh0, dc0 (or None) and {parameter name: gradient} (new arrays; nothing is
        accumulated)."""
        dh0, dc0 = ops.empty_like(dh), None if dc is None else ops.empty_like(dc)
        grads: dict[str, np.ndarray] = {}
        Hout = self.output_size
        d_out = dy
        for layer in reversed(range(self.num_layers)):
            ctxs, mask = saved[layer]
            if mask is not None:
                d_out = d_out * mask

            def run(direction: int, layer: int = layer, d_out: np.ndarray = d_out,
                    ctxs: list = ctxs):
                k = layer * self.num_directions + direction
                d_y = ops.contiguous(d_out[:, :, direction * Hout:(direction + 1) * Hout])
                return self._backend.backward(
                    ops.to_backend(d_y), ops.to_backend(dh[k]),
                    None if dc is None else ops.to_backend(dc[k]), ctxs[direction])

            d_in = None
            for direction, g in enumerate(self._per_direction(run)):
                k = layer * self.num_directions + direction
                dx = ops.from_backend(g.dx)
                d_in = dx if d_in is None else d_in + dx
                dh0[k] = ops.from_backend(g.dh0)
                if dc0 is not None:
                    dc0[k] = ops.from_backend(g.dc0)
                for arg, name in self._names(layer, direction).items():
                    grads[name] = ops.from_backend(getattr(g, "d" + arg))
            d_out = d_in
        return d_out, dh0, dc0, grads


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
