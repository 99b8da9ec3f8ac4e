"""The kernel contract, checked once for every backend.

A backend module implements, for one layer, one direction and one cell:

    rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training, nonlinearity)
        -> y, h_n, ctx
    rnn_backward(dy, dh_n, ctx) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh
    lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr, lengths, reverse, training)
        -> y, h_n, c_n, ctx
    lstm_backward(dy, dh_n, dc_n, ctx) -> dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr
    gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse, training) -> y, h_n, ctx
    gru_backward(dy, dh_n, ctx) -> dx, dh0, dw_ih, dw_hh, db_ih, db_hh

and trusts its arguments. :class:`Backend` wraps such a module behind one uniform
``forward``/``backward`` pair and validates every argument first, so that bad input raises a
clear error naming the argument instead of crashing a compiled kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

#: Gate count of each cell; the two Elman nonlinearities are separate cells as in PyTorch.
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Forward(NamedTuple):
    """Result of :meth:`Backend.forward`: y[T,B,Hp], h_n[B,Hp], c_n[B,H] (LSTM only), ctx."""

    y: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None
    ctx: KernelContext | None


class Grads(NamedTuple):
    """Result of :meth:`Backend.backward`; entries a cell or configuration lacks are None."""

    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray | None
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray | None
    db_hh: np.ndarray | None
    dw_hr: np.ndarray | None


@dataclass(frozen=True)
class KernelContext:
    """What a backend's forward saved for backward, tagged with what produced it."""

    backend: str
    cell: str
    y_shape: tuple[int, ...]
    c_shape: tuple[int, ...] | None
    dtype: np.dtype
    saved: Any


def _is_device_array(value: Any) -> bool:
    """A GPU array: anything with __cuda_array_interface__, or a numba device array (whose
    simulated form, under NUMBA_ENABLE_CUDASIM, has only __cuda_ndarray__)."""
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "__cuda_ndarray__")


def _device_meta(value: Any) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, C-contiguous) of a device array, read without touching its data."""
    if not hasattr(value, "__cuda_array_interface__"):  # numba's simulated device array
        return tuple(value.shape), np.dtype(value.dtype), True
    iface = value.__cuda_array_interface__
    shape, dtype = tuple(iface["shape"]), np.dtype(iface["typestr"])
    strides = iface.get("strides")
    return shape, dtype, strides is None or strides == np.empty(shape, dtype).strides


def _array(value: Any, name: str, dtype: np.dtype | None, shape: tuple[int, ...],
           device: bool = False) -> Any:
    """`value` as a C-contiguous float array of `shape` (and `dtype`), or a clear error.

    With `device`, GPU arrays (``__cuda_array_interface__``) are checked by their interface
    and passed through untouched (they must be C-contiguous already).
    """
    if device and _is_device_array(value):
        got_shape, got_dtype, contiguous = _device_meta(value)
        if not contiguous:
            raise ValueError(f"{name} must be a C-contiguous device array")
    elif not isinstance(value, np.ndarray):
        kinds = "a numpy.ndarray or a CUDA device array" if device else "a numpy.ndarray"
        raise TypeError(f"{name} must be {kinds}, got {type(value).__name__}")
    else:
        got_dtype, got_shape = value.dtype, value.shape
    if got_dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {got_dtype}")
    if dtype is not None and got_dtype != dtype:
        raise TypeError(f"{name} has dtype {got_dtype} but x has {dtype}; all arrays of one "
                        "call must share the dtype")
    if got_shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {got_shape}")
    return value if not isinstance(value, np.ndarray) else np.ascontiguousarray(value)


def _shape(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, np.ndarray):
        return value.shape
    if _is_device_array(value):
        return _device_meta(value)[0]
    return None


def check_lengths(lengths: Any, T: int, B: int) -> np.ndarray | None:
    """lengths as an int64 array [B] with every entry in [0, T], or a clear error."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    integral = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(arr == np.round(arr)))
    if not integral:
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per sequence), got {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"lengths must lie in [0, {T}] (T = number of time steps), "
                         f"got min {arr.min()} and max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


class Backend:
    """One backend behind the uniform, validated kernel contract."""

    def __init__(self, name: str, module: ModuleType):
        self.name = name
        self.module = module
        #: whether calls may run concurrently on several threads (compiled, GIL released)
        self.releases_gil = bool(getattr(module, "RELEASES_GIL", False))
        #: whether GPU arrays (__cuda_array_interface__) are accepted without a copy
        self.device_arrays = bool(getattr(module, "DEVICE_ARRAYS", False))

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def __reduce__(self):
        """Pickled by name: unpickling asks the registry again (the module is not pickled)."""
        from . import get

        return get, (self.name,)

    def forward(
        self,
        cell: str,
        x: np.ndarray,
        w_ih: np.ndarray,
        w_hh: np.ndarray,
        b_ih: np.ndarray | None,
        b_hh: np.ndarray | None,
        h0: np.ndarray,
        c0: np.ndarray | None = None,
        *,
        w_hr: np.ndarray | None = None,
        lengths: Any = None,
        reverse: bool = False,
        training: bool = True,
    ) -> Forward:
        """Run one layer in one direction over x[T,B,I]; see the module docstring for shapes.

        h0 is [B,Hp] and c0 [B,H] (LSTM only), where Hp = P when w_hr[P,H] is given (LSTM
        projection), else H. Returns :class:`Forward`; its ctx is None unless ``training``.
        """
        if cell not in GATES:
            raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
        dev = self.device_arrays
        x_shape = _shape(x) if dev or isinstance(x, np.ndarray) else None
        if x_shape is None or len(x_shape) != 3:
            raise ValueError(f"x must be a 3-d array [T,B,I], got "
                             f"{x_shape if x_shape is not None else type(x).__name__}")
        T, B, I = x_shape
        if T == 0 or B == 0:
            raise ValueError(f"x must have at least one time step and one sequence, got "
                             f"{x_shape}")
        x = _array(x, "x", None, x_shape, dev)
        dtype = x.dtype if isinstance(x, np.ndarray) else _device_meta(x)[1]
        G = GATES[cell]
        hh_shape = _shape(w_hh)
        if hh_shape is None or len(hh_shape) != 2 or hh_shape[0] % G:
            raise ValueError(f"w_hh must be a 2-d array [{G}*H, Hp] for {cell}, got "
                             f"{hh_shape if hh_shape is not None else type(w_hh).__name__}")
        H = hh_shape[0] // G
        if H == 0:
            raise ValueError("w_hh has no rows: hidden size must be at least 1")
        if w_hr is not None and cell != "lstm":
            raise ValueError(f"w_hr (projection) is only defined for lstm, not {cell}")
        if w_hr is not None:
            hr_shape = _shape(w_hr)
            if hr_shape is None or len(hr_shape) != 2 or hr_shape[1] != H:
                raise ValueError(f"w_hr must be a 2-d array [P, {H}], got "
                                 f"{hr_shape if hr_shape is not None else type(w_hr).__name__}")
            Hp = hr_shape[0]
            w_hr = _array(w_hr, "w_hr", dtype, (Hp, H), dev)
        else:
            Hp = H
        w_ih = _array(w_ih, "w_ih", dtype, (G * H, I), dev)
        w_hh = _array(w_hh, "w_hh", dtype, (G * H, Hp), dev)
        if (b_ih is None) != (b_hh is None):
            raise ValueError("b_ih and b_hh must both be given or both be None")
        if b_ih is not None:
            b_ih = _array(b_ih, "b_ih", dtype, (G * H,), dev)
            b_hh = _array(b_hh, "b_hh", dtype, (G * H,), dev)
        h0 = _array(h0, "h0", dtype, (B, Hp), dev)
        lengths = check_lengths(lengths, T, B)
        reverse, training = bool(reverse), bool(training)
        mod = self.module
        c_n = None
        if cell == "lstm":
            if c0 is None:
                raise ValueError("c0 is required for lstm")
            c0 = _array(c0, "c0", dtype, (B, H), dev)
            y, h_n, c_n, saved = mod.lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, w_hr,
                                                  lengths, reverse, training)
        elif c0 is not None:
            raise ValueError(f"c0 is only defined for lstm, not {cell}")
        elif cell == "gru":
            y, h_n, saved = mod.gru_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse,
                                            training)
        else:
            y, h_n, saved = mod.rnn_forward(x, w_ih, w_hh, b_ih, b_hh, h0, lengths, reverse,
                                            training, cell[4:])
        ctx = None
        if training:
            ctx = KernelContext(self.name, cell, (T, B, Hp), (B, H) if cell == "lstm" else None,
                                dtype, saved)
        return Forward(y, h_n, c_n, ctx)

    def backward(
        self,
        dy: np.ndarray,
        dh_n: np.ndarray | None,
        dc_n: np.ndarray | None,
        ctx: KernelContext | None,
    ) -> Grads:
        """Gradients of the forward that produced ``ctx``; dh_n/dc_n None mean zeros.

        dy is [T,B,Hp] like y. Returns :class:`Grads`.
        """
        if not isinstance(ctx, KernelContext):
            raise ValueError("ctx must be the context returned by a forward with training=True")
        if ctx.backend != self.name:
            raise ValueError(f"ctx was made by backend {ctx.backend!r}, not {self.name!r}")
        T, B, Hp = ctx.y_shape
        dev = self.device_arrays
        dy = _array(dy, "dy", ctx.dtype, ctx.y_shape, dev)
        dh_n = np.zeros((B, Hp), ctx.dtype) if dh_n is None else _array(
            dh_n, "dh_n", ctx.dtype, (B, Hp), dev)
        mod = self.module
        if ctx.cell == "lstm":
            dc_n = np.zeros(ctx.c_shape, ctx.dtype) if dc_n is None else _array(
                dc_n, "dc_n", ctx.dtype, ctx.c_shape, dev)
            return Grads(*mod.lstm_backward(dy, dh_n, dc_n, ctx.saved))
        if dc_n is not None:
            raise ValueError(f"dc_n is only defined for lstm, not {ctx.cell}")
        backward = mod.gru_backward if ctx.cell == "gru" else mod.rnn_backward
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = backward(dy, dh_n, ctx.saved)
        return Grads(dx, dh0, None, dw_ih, dw_hh, db_ih, db_hh, None)
