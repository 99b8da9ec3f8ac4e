"""ConvLSTM (Shi et al. 2015) as a NumPy module: :class:`ConvLSTM2d`.

A stack of ConvLSTM layers whose products are "same"-padded 2-D convolutions (stride 1, k
odd): per step and layer, z = conv(cat(x_t, h), weight) + bias, gates i, f, g, o (PyTorch's
order), c' = f * c + i * g, h' = o * tanh(c'). The kernels (:func:`fastrnn.backends.conv`):
the NumPy reference :mod:`fastrnn.backends.conv_reference` and the fast CPU kernel
(:mod:`fastrnn.backends.conv_host` on Cython's or Numba's loops). :func:`stack_forward` /
:func:`stack_backward` compose the layers statelessly (the torch module uses them too); like
the recurrent modules, a forward's tape belongs to the thread that ran it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backends
from .backends.contract import check_flag
from .rnn import KernelModule, _positive_int, _to_numpy
from .stack import TapeStore


@dataclass(frozen=True)
class ConvSpec:
    """What a ConvLSTM stack is (checked by :func:`conv_spec`)."""

    in_channels: int
    hidden_channels: int
    kernel_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False

    def parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every parameter, layer by layer: ``weight_l{l}`` [4F, C_l + F, k,
        k] and ``bias_l{l}`` [4F]; C_0 = in_channels, C_l = F above."""
        F, k = self.hidden_channels, self.kernel_size
        shapes = []
        for layer in range(self.num_layers):
            shapes.append((f"weight_l{layer}", (4 * F, self._layer_input(layer) + F, k, k)))
            if self.bias:
                shapes.append((f"bias_l{layer}", (4 * F,)))
        return shapes

    def init_bound(self, name: str) -> float:
        """torch.nn.Conv2d's initialisation of parameter `name`: U(-b, b), b = 1 /
        sqrt(fan_in), fan_in = (C_l + F) k^2."""
        layer = int(name.rsplit("_l", 1)[1])
        fan_in = (self._layer_input(layer) + self.hidden_channels) * self.kernel_size ** 2
        return 1.0 / math.sqrt(fan_in)

    def _layer_input(self, layer: int) -> int:
        return self.in_channels if layer == 0 else self.hidden_channels


def conv_spec(in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, int],
              num_layers: int = 1, bias: bool = True, batch_first: bool = False) -> ConvSpec:
    """A checked :class:`ConvSpec`, or a clear error naming the argument."""
    k = kernel_size
    if isinstance(k, (tuple, list)) and len(k) == 2 and k[0] == k[1]:
        k = k[0]
    k = _positive_int(k, "kernel_size")
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd ('same' padding k // 2 keeps the frame "
                         f"size only for odd k), got {kernel_size!r}")
    return ConvSpec(_positive_int(in_channels, "in_channels"),
                    _positive_int(hidden_channels, "hidden_channels"), k,
                    _positive_int(num_layers, "num_layers"), check_flag(bias, "bias"),
                    check_flag(batch_first, "batch_first"))


class ConvLSTM2d(KernelModule):
    """ConvLSTM layers over frame sequences.

    Arguments: in_channels C, hidden_channels F, kernel_size k (odd), num_layers, bias,
    batch_first (x [B,T,C,Hh,Ww] instead of [T,B,C,Hh,Ww]); keyword-only dtype, backend
    (None: the fastest available of "cython", "numba"; or "reference") and seed.

    Parameters per layer l (:meth:`ConvSpec.parameter_shapes`): ``weight_l{l}`` [4F, C_l + F,
    k, k] (the weight of a torch.nn.Conv2d(C_l + F, 4F, k, padding=k // 2) applied to cat(x,
    h), so a per-step torch module's weights load as they are) and ``bias_l{l}`` [4F], both
    initialised as torch.nn.Conv2d's.

    ``forward(x, hx=None, lengths=None)`` returns y (the top layer's h at every step, [T,B,F,
    Hh,Ww] or batch first) and (h_n, c_n), each [num_layers, B, F, Hh, Ww]; hx = (h0, c0) of
    that shape (None: zeros). ``lengths`` [B]: sequence b runs steps [0, lengths[b]); its
    state stops there and its output is 0 beyond. ``backward(dy, dstates=None,
    input_grad=True)`` returns dx and (dh0, dc0), and adds the parameters' gradients to
    ``grads``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int,
                 num_layers: int = 1, bias: bool = True, batch_first: bool = False, *,
                 dtype: Any = np.float32, backend: str | None = None, seed: int | None = None):
        self.spec = conv_spec(in_channels, hidden_channels, kernel_size, num_layers, bias,
                              batch_first)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.backend = backend
        self.training = True
        rng = np.random.default_rng(seed)
        self.params = {}
        for name, shape in self.spec.parameter_shapes():
            bound = self.spec.init_bound(name)
            self.params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._tapes = TapeStore()
        self._grads_lock = threading.Lock()

    # the constructor's arguments, read from the spec
    in_channels = property(lambda self: self.spec.in_channels)
    hidden_channels = property(lambda self: self.spec.hidden_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    num_layers = property(lambda self: self.spec.num_layers)
    bias = property(lambda self: self.spec.bias)
    batch_first = property(lambda self: self.spec.batch_first)

    @property
    def backend(self) -> str:
        return self._backend.name

    @backend.setter
    def backend(self, name: str | None) -> None:
        self._backend = backends.conv(name)

    def __repr__(self) -> str:
        args = [str(self.in_channels), str(self.hidden_channels), str(self.kernel_size)]
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False)):
            if getattr(self, name) != default:
                args.append(f"{name}={getattr(self, name)}")
        return f"ConvLSTM2d({', '.join(args)}, backend={self.backend!r})"

    # ---------------------------------------------------------------- forward / backward

    def _states(self, hx: Any, B: int, Hh: int, Ww: int, name: str) -> list[np.ndarray]:
        shape = (self.num_layers, B, self.hidden_channels, Hh, Ww)
        if hx is None:
            return [np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)]
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError(f"{name} must be a tuple (h, c), got {type(hx).__name__}")
        out = []
        for value, part in zip(hx, "hc", strict=True):
            value = _to_numpy(value)
            if value.shape != shape:
                raise ValueError(f"{name}[{'hc'.index(part)}] ({part}) must have shape {shape} "
                                 f"(num_layers, batch, hidden_channels, height, width), got "
                                 f"{value.shape}")
            if value.dtype != self.dtype:
                raise TypeError(f"{name} has dtype {value.dtype}, expected {self.dtype}")
            out.append(np.ascontiguousarray(value))
        return out

    def forward(self, x: Any, hx: Any = None, lengths: Any = None):
        x = _to_numpy(x)
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the module's parameters are "
                            f"{self.dtype}; convert it or build the module with "
                            f"dtype=np.{x.dtype}" if x.dtype.kind == "f" else
                            f"x must be a float array, got dtype {x.dtype}")
        layout = "(B, T, C, H, W)" if self.batch_first else "(T, B, C, H, W)"
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"x must be 5-d {layout} with {self.in_channels} channels, got "
                             f"shape {x.shape}")
        if self.batch_first:
            x = x.transpose(1, 0, 2, 3, 4)
        x = np.ascontiguousarray(x)
        T, B, _, Hh, Ww = x.shape
        h0, c0 = self._states(hx, B, Hh, Ww, "hx")
        y, h_n, c_n, ctxs = stack_forward(self._backend, self.params, self.num_layers, x, h0,
                                          c0, lengths, self.training)
        if self.training:
            self._tapes.keep((ctxs, x.shape))
        else:
            self._tapes.drop()
        y = y.transpose(1, 0, 2, 3, 4) if self.batch_first else y
        return np.ascontiguousarray(y), (h_n, c_n)

    __call__ = forward

    def backward(self, dy: Any, dstates: Any = None, input_grad: bool = True):
        """Gradients of this thread's last training forward: dy like its y, dstates (dh_n,
        dc_n) like its final states (None: zeros). Returns dx (None with ``input_grad=False``:
        frames that are data need none, which saves a sixth of the work) and (dh0, dc0)."""
        ctxs, x_shape = self._tapes.peek(repr(self))
        dy = _to_numpy(dy)
        T, B, _, Hh, Ww = x_shape
        y_shape = (T, B, self.hidden_channels, Hh, Ww)
        expected = (B, T, *y_shape[2:]) if self.batch_first else y_shape
        if dy.shape != expected or dy.dtype != self.dtype:
            raise ValueError(f"dy must be a {self.dtype} array of shape {expected} (like y), "
                             f"got {dy.dtype} {dy.shape}")
        if self.batch_first:
            dy = dy.transpose(1, 0, 2, 3, 4)
        dh_n, dc_n = self._states(dstates, B, Hh, Ww, "dstates")
        self._tapes.consume()
        d_out, dh0, dc0, grads = stack_backward(self._backend, ctxs, np.ascontiguousarray(dy),
                                                dh_n, dc_n, check_flag(input_grad, "input_grad"))
        with self._grads_lock:
            for name, grad in grads.items():
                self.grads[name] += grad
        if d_out is None:
            return None, (dh0, dc0)
        dx = d_out.transpose(1, 0, 2, 3, 4) if self.batch_first else d_out
        return np.ascontiguousarray(dx), (dh0, dc0)


def stack_forward(backend: Any, params: dict, num_layers: int, x: np.ndarray, h0: np.ndarray,
                  c0: np.ndarray, lengths: Any, training: bool) -> tuple:
    """The layers over x [T,B,C,Hh,Ww] (stateless; `params` by torch-style name, h0 / c0
    [L,B,F,Hh,Ww]): y [T,B,F,Hh,Ww], h_n, c_n like h0, and the kernels' contexts (one per
    layer; None unless training)."""
    h_n, c_n = np.empty_like(h0), np.empty_like(c0)
    ctxs = []
    y = x
    for layer in range(num_layers):
        y, h_n[layer], c_n[layer], ctx = backend.forward(
            y, params[f"weight_l{layer}"], params.get(f"bias_l{layer}"), h0[layer], c0[layer],
            lengths, training)
        ctxs.append(ctx)
    return y, h_n, c_n, ctxs


def stack_backward(backend: Any, ctxs: list, dy: np.ndarray, dh_n: np.ndarray,
                   dc_n: np.ndarray, input_grad: bool = True) -> tuple:
    """Backward of :func:`stack_forward` from dy and the final states' gradients: dx (None
    without `input_grad`), dh0, dc0 and {parameter name: gradient} (new arrays)."""
    dh0, dc0 = np.empty_like(dh_n), np.empty_like(dc_n)
    grads = {}
    d_out = dy
    for layer in reversed(range(len(ctxs))):
        d_out, dh0[layer], dc0[layer], grads[f"weight_l{layer}"], db = backend.backward(
            d_out, dh_n[layer], dc_n[layer], ctxs[layer], input_grad or layer > 0)
        if db is not None:
            grads[f"bias_l{layer}"] = db
    return d_out, dh0, dc0, grads
