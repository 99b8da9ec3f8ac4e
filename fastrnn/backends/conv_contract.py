"""The ConvLSTM kernel contract, checked once for every ConvLSTM kernel.

A ConvLSTM kernel module has ``forward(x, weight, bias, h0, c0, lengths, training) -> (y, h_n,
c_n, ctx)`` and ``backward(dy, dh_n, dc_n, ctx) -> (dx, dh0, dc0, dweight, dbias)`` over one
layer, with the arrays of :mod:`fastrnn.backends.conv_reference` (time-major, channels first
as torch.nn.Conv2d, one float dtype). :class:`ConvBackend` checks the arguments (a clear error
naming the argument) and passes C-contiguous arrays on; the kernels check nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .contract import _array, check_flag, check_lengths


@dataclass
class ConvContext:
    """What a training forward hands to backward (which backend made it, the shapes)."""

    backend: str
    y_shape: tuple[int, ...]
    state_shape: tuple[int, ...]
    dtype: np.dtype
    saved: Any


class ConvBackend:
    """One ConvLSTM kernel module behind the checked contract."""

    def __init__(self, name: str, module: ModuleType):
        self.name, self.module = name, module

    def __repr__(self) -> str:
        return f"ConvBackend({self.name!r})"

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                h0: np.ndarray, c0: np.ndarray, lengths: Any = None,
                training: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        """One layer over x [T,B,C,Hh,Ww]: y [T,B,F,Hh,Ww], h_n, c_n [B,F,Hh,Ww] and the
        context backward needs (None unless training). weight [4F, C+F, k, k], k odd."""
        if not isinstance(x, np.ndarray) or x.ndim != 5:
            raise ValueError("x must be a 5-d array [T, B, channels, height, width], got "
                             + (f"shape {x.shape}" if isinstance(x, np.ndarray)
                                else type(x).__name__))
        T, B, C, Hh, Ww = x.shape
        if 0 in x.shape:
            raise ValueError(f"x must have no empty dimension, got shape {x.shape}")
        x = _array(x, "x", None, x.shape)
        w_shape = getattr(weight, "shape", None)
        if w_shape is None or len(w_shape) != 4 or w_shape[0] % 4 or w_shape[0] == 0 \
                or w_shape[2] != w_shape[3] or w_shape[2] % 2 == 0:
            raise ValueError(f"weight must be a 4-d array [4F, C+F, k, k] with k odd, got "
                             f"{w_shape if w_shape is not None else type(weight).__name__}")
        F, k = w_shape[0] // 4, w_shape[2]
        weight = _array(weight, "weight", x.dtype, (4 * F, C + F, k, k))
        if bias is not None:
            bias = _array(bias, "bias", x.dtype, (4 * F,))
        state = (B, F, Hh, Ww)
        h0 = _array(h0, "h0", x.dtype, state)
        c0 = _array(c0, "c0", x.dtype, state)
        lengths = check_lengths(lengths, T, B)
        training = check_flag(training, "training")
        x, weight, bias, h0, c0 = (None if a is None else np.require(a, requirements="CW")
                                   for a in (x, weight, bias, h0, c0))
        y, h_n, c_n, saved = self.module.forward(x, weight, bias, h0, c0, lengths, training)
        ctx = ConvContext(self.name, y.shape, state, x.dtype, saved) if training else None
        return y, h_n, c_n, ctx

    def backward(self, dy: np.ndarray, dh_n: np.ndarray | None, dc_n: np.ndarray | None,
                 ctx: ConvContext, input_grad: bool = True) -> tuple:
        """dx (None without `input_grad`), dh0, dc0, dweight, dbias (None without bias) of
        the forward that made `ctx`; dh_n / dc_n None mean zeros."""
        if not isinstance(ctx, ConvContext):
            raise ValueError("ctx must be the context of a forward with training=True")
        if ctx.backend != self.name:
            raise ValueError(f"ctx was made by backend {ctx.backend!r}, not {self.name!r}")
        dy = np.require(_array(dy, "dy", ctx.dtype, ctx.y_shape), requirements="CW")
        ds = [np.zeros(ctx.state_shape, ctx.dtype) if d is None else
              np.require(_array(d, name, ctx.dtype, ctx.state_shape), requirements="CW")
              for d, name in ((dh_n, "dh_n"), (dc_n, "dc_n"))]
        return self.module.backward(dy, ds[0], ds[1], ctx.saved,
                                    check_flag(input_grad, "input_grad"))
