"""Single-step NumPy cells: :class:`RNNCell`, :class:`LSTMCell`, :class:`GRUCell`,
:class:`LayerNormLSTMCell`, :class:`LayerNormGRUCell`.

torch.nn's cell arguments and parameter names (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``; the LayerNorm cells add ``ln_ih_weight``, ``ln_hh_weight`` and, for the LSTM,
``ln_c_weight``, ``ln_c_bias``). A step is the layer kernel over one time step: the same cell
spec, time loop and products as the layers (``Backend.step_forward``: on the CPU backends
without the batch plan a sequence call needs), so a cell and a layer cannot drift apart.

The tape (how a decoder's steps are replayed): in training every forward pushes its step's
context on this thread's tape, a stack; every backward pops the newest. A decoder calls
forward for steps 1..T and backward for T..1, each with the gradient reaching that step's
output plus what flowed back from the step after it (the returned dh, dc): exact BPTT through
the loop, and each step's saved buffers are freed as soon as its backward ran. Steps whose
backward is never called (a sequence abandoned, sampling in training mode) are dropped by
:meth:`RNNCellBase.reset_tape`; in eval mode nothing is recorded.

The weight gradients of a step (x^T dG and h^T dG: B rows each) are not added to ``grads``
one step at a time: on the compiled CPU backends (Cython, Numba) their factors wait, and the
steps' sum is formed as one product of all their rows when the tape runs empty (the decoder's
backward is done), when ``grads`` is read, or at :meth:`~RNNCellBase.reset_tape`. A thin
product per step plus a pass over the whole gradient cost 2.5-14x more (measured per step and
weight, float32: B=8 H=256 132 us against 25.5; B=1 H=256 89 against 6.5; B=8 H=128 34
against 13.6).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import backends, cells
from .backends.contract import WeightRows
from .rnn import KernelModule, _to_numpy, stack_spec


class RNNCellBase(KernelModule):
    """One step of any cell of :mod:`fastrnn.cells` (use the named subclasses)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        if cells.get(cell).output_act:
            raise ValueError(f"{cells.get(cell).name} has no single-step cell module: its step "
                             "needs the output layer; use fastrnn.JordanRNN(...).step()")
        self.spec = stack_spec(cell, input_size, hidden_size, 1, bias)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self._backend = backends.get(backend)
        self.training = True
        #: kernel argument -> parameter name (the layer's without its "_l0")
        self._names = {arg: name.removesuffix("_l0")
                       for arg, (name, _) in self.spec.layer_parameters(0, 0).items()}
        self._cell = self.spec.cell
        #: (parameter name, its field of Grads or its index in Grads.dnorms): read per step
        norm_args = [arg for arg, _ in self._cell.norms]
        self._grad_fields = [(name, norm_args.index(arg) if arg in norm_args else "d" + arg)
                             for arg, name in self._names.items()]
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(hidden_size)
        norms = {arg: self.spec.cell.initial_norm(arg) for arg, _ in self.spec.cell.norms}
        self.params: dict[str, np.ndarray] = {}
        for arg, (_, shape) in self.spec.layer_parameters(0, 0).items():
            self.params[self._names[arg]] = (
                np.full(shape, norms[arg], self.dtype) if arg in norms
                else rng.uniform(-bound, bound, size=shape).astype(self.dtype))
        self._grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        #: (parameter name, shape) in kernel-argument order, and the arrays last checked
        self._param_shapes = [(self._names[arg], shape)
                              for arg, (_, shape) in self.spec.layer_parameters(0, 0).items()]
        self._checked: tuple = ((), [], {})
        #: (backend, parameter name) -> the deferred gradients (WeightRows) of steps whose
        #: backward ran on that backend
        self._pending: dict[tuple[backends.Backend, str], list] = {}
        self._local = threading.local()
        self._grads_lock = threading.Lock()

    cell = property(lambda self: self.spec.cell.name)
    input_size = property(lambda self: self.spec.input_size)
    hidden_size = property(lambda self: self.spec.hidden_size)
    bias = property(lambda self: self.spec.bias)

    def __repr__(self) -> str:
        extra = "" if self.bias else ", bias=False"
        extra += "".join(f", {k}={v!r}" for k, v in self.spec.cell.torch_args if v != "tanh")
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"backend={self.backend!r})")

    # ---------------------------------------------------------------- the tape

    def _tape(self) -> list:
        if not hasattr(self._local, "tape"):
            self._local.tape = []
        return self._local.tape

    @property
    def recorded_steps(self) -> int:
        """Steps of this thread waiting for their backward."""
        return len(self._tape())

    def reset_tape(self) -> None:
        """Forget this thread's recorded steps (their backward will not be called)."""
        self._tape().clear()
        self._flush()

    # ---------------------------------------------------------------- gradients

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """The parameters' gradients (torch's names), every finished backward's included."""
        self._flush()
        return self._grads

    def zero_grad(self) -> None:
        with self._grads_lock:
            self._pending.clear()
            for grad in self._grads.values():
                grad.fill(0)

    def _flush(self) -> None:
        """Add the deferred weight gradients into ``grads``, one product per weight."""
        with self._grads_lock:
            pending, self._pending = self._pending, {}
            for (backend, name), rows in pending.items():
                self._grads[name] += backend.row_products(rows)

    # ---------------------------------------------------------------- one step

    def _array(self, value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
        value = _to_numpy(value)
        if value.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {value.dtype}, expected {self.dtype} (the "
                            "cell's parameters)")
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        return np.ascontiguousarray(value)

    def _states(self, hx: Any, B: int, unbatched: bool, prefix: str = "") -> list:
        """The cell's states as [B,H] arrays from hx (None: zeros)."""
        names, H = self._cell.states, self.spec.hidden_size
        shape = (H,) if unbatched else (B, H)
        if hx is None:
            return [np.zeros((B, H), self.dtype) for _ in names]
        if len(names) > 1:
            if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
                raise ValueError(f"{prefix}hx for {type(self).__name__} must be a tuple "
                                 f"({', '.join(prefix + n for n in names)}) or None")
        elif isinstance(hx, (tuple, list)):
            raise ValueError(f"{prefix}hx for {type(self).__name__} must be one array")
        else:
            hx = (hx,)
        return [self._array(v, prefix + n, shape).reshape(B, H)
                for v, n in zip(hx, names, strict=True)]

    def _kernel_params(self) -> dict[str, np.ndarray]:
        """{kernel argument: parameter}. A parameter replaced by another array
        (``cell.params[name] = ...``) is checked once, by identity: a wrong type, dtype or
        shape raises, naming it (an array not in C order is the kernel contract's to copy)."""
        arrays = [self.params[name] for name in self._names.values()]
        key = tuple(map(id, arrays))
        cached = self._checked  # (ids, the arrays (keeping those ids theirs), the dict)
        if cached[0] == key:
            return cached[2]
        for (name, shape), a in zip(self._param_shapes, arrays, strict=True):
            if not isinstance(a, np.ndarray) or a.dtype != self.dtype or a.shape != shape:
                what = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"params[{name!r}] must be a {self.dtype} array of shape "
                                 f"{shape}, got {what}")
        params = dict(zip(self._names, arrays, strict=True))
        self._checked = (key, arrays, params)
        return params

    def __call__(self, x: Any, hx: Any = None):
        return self.forward(x, hx)

    def forward(self, x: Any, hx: Any = None):
        """One step. x: (B, input_size) or unbatched (input_size,); hx: h (LSTM: (h, c)) of
        shape (B, hidden_size) or (hidden_size,), or None for zeros. Returns h' (LSTM:
        (h', c')) like hx. In training the step joins this thread's tape."""
        x = _to_numpy(x)
        if x.ndim not in (1, 2):
            raise ValueError(f"x must be 2-d (B, input_size) or 1-d unbatched, got shape "
                             f"{x.shape}")
        unbatched = x.ndim == 1
        B, I, cell = 1 if unbatched else x.shape[0], self.spec.input_size, self._cell
        x = self._array(x, "x", (I,) if unbatched else (B, I))
        states = self._states(hx, B, unbatched)
        p = self._kernel_params()
        new, ctx = self._backend.step_forward(
            cell, x.reshape(B, I), p["w_ih"], p["w_hh"], p.get("b_ih"), p.get("b_hh"),
            tuple(states), tuple(p[arg] for arg, _ in cell.norms), self.training)
        if self.training:  # the step's backward runs on the backend its forward ran on
            self._tape().append((ctx, unbatched, B, self._backend))
        new = [s[0] if unbatched else s for s in new]
        return new[0] if len(new) == 1 else tuple(new)

    def backward(self, dh: Any, dc: Any = None):
        """Backward of this thread's newest recorded step: dh (and dc for the LSTM; None:
        zeros) is the gradient reaching its h' (c'). Gradients accumulate in ``self.grads``.
        Returns (dx, dhx) shaped like the step's x and hx (LSTM: dhx = (dh, dc))."""
        tape = self._tape()
        if not tape:
            raise RuntimeError(f"{type(self).__name__}.backward() has no recorded step: every "
                               "backward needs its own forward in training mode, on this "
                               "thread (backward runs the steps newest first)")
        ctx, unbatched, B, backend = tape[-1]
        H = self.spec.hidden_size
        shape = (H,) if unbatched else (B, H)
        dh = self._array(dh, "dh", shape).reshape(B, H)
        if dc is not None:
            if "c" not in self._cell.states:
                raise ValueError(f"dc is only defined for cells with a cell state, not "
                                 f"{self.cell}")
            dc = self._array(dc, "dc", shape).reshape(B, H)
        tape.pop()
        g = backend.step_backward(self._cell, dh, dc, ctx, defer_weights=True)
        with self._grads_lock:
            for name, field in self._grad_fields:
                grad = g.dnorms[field] if isinstance(field, int) else getattr(g, field)
                if isinstance(grad, WeightRows):
                    self._pending.setdefault((backend, name), []).append(grad)
                else:
                    self._grads[name] += grad
        if not tape:  # the decoder's backward is done
            self._flush()
        dx = g.dx[0] if unbatched else g.dx
        dstates = [s[0] if unbatched else s for s in (g.dh0, g.dc0)[:len(self.spec.cell.states)]]
        return dx, dstates[0] if len(dstates) == 1 else tuple(dstates)


class RNNCell(RNNCellBase):
    """Elman cell, h' = act(W_ih x + b_ih + W_hh h + b_hh) (torch.nn.RNNCell)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", *, dtype: Any = np.float32,
                 backend: str | None = None, seed: int | None = None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("rnn_" + nonlinearity, input_size, hidden_size, bias, dtype=dtype,
                         backend=backend, seed=seed)


class LSTMCell(RNNCellBase):
    """LSTM cell (torch.nn.LSTMCell); forward returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("lstm", input_size, hidden_size, bias, dtype=dtype, backend=backend,
                         seed=seed)


class GRUCell(RNNCellBase):
    """GRU cell (torch.nn.GRUCell)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("gru", input_size, hidden_size, bias, dtype=dtype, backend=backend,
                         seed=seed)


class LayerNormLSTMCell(RNNCellBase):
    """One step of :class:`fastrnn.LayerNormLSTM`; forward returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("layernorm_lstm", input_size, hidden_size, bias, dtype=dtype,
                         backend=backend, seed=seed)


class LayerNormGRUCell(RNNCellBase):
    """One step of :class:`fastrnn.LayerNormGRU`."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype: Any = np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__("layernorm_gru", input_size, hidden_size, bias, dtype=dtype,
                         backend=backend, seed=seed)
