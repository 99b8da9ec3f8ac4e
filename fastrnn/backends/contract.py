"""The kernel contract, checked once for every backend.

A backend module implements :class:`KernelModule`: one layer, one direction, any cell of
:mod:`fastrnn.cells`, with the cell's states as a tuple (h, or h and c), and trusts its
arguments. :class:`Backend` wraps such a module behind one uniform ``forward``/``backward``
pair and validates every argument first, so that bad input raises a clear error naming the
argument instead of crashing a compiled kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from .. import cells
from ..cells import Cell

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Forward(NamedTuple):
    """Result of :meth:`Backend.forward`: y[T,B,Hp], h_n[B,Hp], c_n[B,H] (LSTM only), ctx."""

    y: np.ndarray
    h_n: np.ndarray
    c_n: np.ndarray | None
    ctx: KernelContext | None


class WeightRows(NamedTuple):
    """A weight's gradient left as its factors, a^T @ b (a [R,M], b [R,N]): what
    :meth:`Backend.step_backward` returns for dw_ih and dw_hh when asked to defer them, so
    that the steps of a decoder add theirs up in one product (:meth:`Backend.row_products`)
    instead of one thin product and one pass over the whole gradient per step."""

    a: np.ndarray
    b: np.ndarray

    @staticmethod
    def stacked(rows: list[WeightRows]) -> tuple[np.ndarray, np.ndarray]:
        """All of `rows`' a and b, each stacked into one array of all their rows."""
        if len(rows) == 1:
            return rows[0].a, rows[0].b
        return np.concatenate([r.a for r in rows]), np.concatenate([r.b for r in rows])


class Grads(NamedTuple):
    """Result of :meth:`Backend.backward`; entries a cell or configuration lacks are None
    (:meth:`Backend.step_backward` with ``defer_weights``: dw_ih, dw_hh may be
    :class:`WeightRows`)."""

    dx: np.ndarray
    dh0: np.ndarray
    dc0: np.ndarray | None
    dw_ih: np.ndarray
    dw_hh: np.ndarray
    db_ih: np.ndarray | None
    db_hh: np.ndarray | None
    dw_hr: np.ndarray | None
    #: LayerNorm cells: the gradients of ``norms``, in ``cell.norms`` order (else empty)
    dnorms: tuple = ()

    def of(self, arg: str, cell: Cell) -> Any:
        """The gradient of kernel argument `arg` ("w_ih", ..., or one of ``cell.norms``)."""
        names = [name for name, _ in cell.norms]
        return self.dnorms[names.index(arg)] if arg in names else getattr(self, "d" + arg)


@dataclass(frozen=True)
class KernelContext:
    """What a backend's forward saved for backward, tagged with what produced it."""

    backend: str
    cell: Cell
    y_shape: tuple[int, ...]
    state_shapes: tuple[tuple[int, ...], ...]
    dtype: np.dtype
    saved: Any


class KernelModule(Protocol):
    """What a backend module provides (one layer, one direction, one cell per call).

    ``states`` / ``dstates`` hold one array per entry of ``cell.states`` ([B,Hp] for h,
    [B,H] for c); w_hr is None without projection, lengths None for a dense batch; ``norms``
    the LayerNorm cells' gains and shifts in ``cell.norms`` order (empty for other cells).
    A module without every cell says which it runs with ``supports(cell) -> bool``; a host
    module may offer a lean single step, ``step_forward`` / ``step_backward`` and
    ``row_products`` (the driver's).
    Optional module attributes: ``RELEASES_GIL`` (calls may run on several threads at once),
    ``DEVICE_ARRAYS`` (GPU arrays are taken without a copy) and ``READS_READ_ONLY`` (False:
    read-only arrays are copied before they reach the module).
    """

    def available(self) -> tuple[bool, str]: ...

    def forward(self, cell: Cell, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                states: tuple, w_hr: Any, norms: tuple, lengths: np.ndarray | None,
                reverse: bool, training: bool) -> tuple[Any, tuple, Any]:
        """-> y [T,B,Hp], the final states, what backward needs (None unless training)."""
        ...

    def backward(self, cell: Cell, dy: Any, dstates: tuple, saved: Any) -> tuple:
        """-> dx, the initial states' gradients (a tuple), dw_ih, dw_hh, db_ih, db_hh, dw_hr
        (None where the forward had no bias / projection), the norms' gradients (a tuple)."""
        ...


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


def check_flag(value: Any, name: str) -> bool:
    """A yes/no argument as a bool; anything but a bool (a NumPy bool too) is a TypeError:
    bool("False") is True, so a string must never be read as a flag."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


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


def _cells_with(flag: str) -> str:
    return " or ".join(c.name for c in cells.CELLS.values() if getattr(c, flag))


def _taken_as_is(a: Any, read_only_ok: bool) -> bool:
    """Whether `a` (an array, None or a tuple of them) goes to the kernels uncopied: arrays in
    C order, and writable unless `read_only_ok`."""
    if type(a) is tuple:
        return all(type(v) is not tuple and _taken_as_is(v, read_only_ok) for v in a)
    return not isinstance(a, np.ndarray) or (
        a.flags.c_contiguous and (read_only_ok or a.flags.writeable))


class Backend:
    """One backend behind the uniform, validated kernel contract."""

    def __init__(self, name: str, module: KernelModule):
        self.name = name
        self.module = module
        #: whether calls may run concurrently on several threads (compiled, GIL released)
        self.releases_gil = bool(getattr(module, "RELEASES_GIL", False))
        #: whether GPU arrays (__cuda_array_interface__) are accepted without a copy
        self.device_arrays = bool(getattr(module, "DEVICE_ARRAYS", False))
        #: whether the kernels take read-only arrays (Cython's typed memoryviews do not)
        self.reads_read_only = bool(getattr(module, "READS_READ_ONLY", True))

    def _kernel_arrays(self, *arrays: Any) -> tuple:
        """The arrays as the kernels take them: in C order (the cell modules' steps pass their
        parameters unchecked: a transposed weight, say), and writable for a module that cannot
        read read-only buffers (np.load(mmap_mode='r'), np.frombuffer, a weight made
        read-only); any other array is copied once. None, tuples of arrays and arrays as the
        kernels take them pass unchanged."""
        read_only_ok = self.reads_read_only
        if all(_taken_as_is(a, read_only_ok) for a in arrays):
            return arrays  # (the common case, checked first: a step pays it on every call)

        def own(a: Any) -> Any:
            if isinstance(a, tuple):
                return tuple(own(v) for v in a)
            return a if _taken_as_is(a, read_only_ok) else np.array(a, order="C")

        return tuple(own(a) for a in arrays)

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def __reduce__(self):
        """Pickled by name: unpickling asks the registry again (the module is not pickled)."""
        from . import get

        return get, (self.name,)

    def forward(
        self,
        cell: str | Cell,
        x: np.ndarray,
        w_ih: np.ndarray,
        w_hh: np.ndarray,
        b_ih: np.ndarray | None,
        b_hh: np.ndarray | None,
        h0: np.ndarray,
        c0: np.ndarray | None = None,
        *,
        w_hr: np.ndarray | None = None,
        norms: tuple | None = None,
        lengths: Any = None,
        reverse: bool = False,
        training: bool = True,
    ) -> Forward:
        """Run one layer in one direction over x[T,B,I]; see the module docstring for shapes.

        h0 is [B,Hp] and c0 [B,H] (LSTM only), where Hp = P when w_hr[P,H] is given (LSTM
        projection), else H. Returns :class:`Forward`; its ctx is None unless ``training``.
        """
        cell = cells.get(cell)
        if not getattr(self.module, "supports", lambda _: True)(cell):
            raise NotImplementedError(f"backend {self.name!r} has no {cell.name} kernels yet; "
                                      "the CPU backends (reference, numba, cython) have them")
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
        G = cell.gates
        hh_shape = _shape(w_hh)
        if hh_shape is None or len(hh_shape) != 2 or hh_shape[0] % G:
            raise ValueError(f"w_hh must be a 2-d array [{G}*H, Hp] for {cell.name}, got "
                             f"{hh_shape if hh_shape is not None else type(w_hh).__name__}")
        H = hh_shape[0] // G
        if H == 0:
            raise ValueError("w_hh has no rows: hidden size must be at least 1")
        if w_hr is None and cell.output_act:
            raise ValueError(f"w_hr (the output layer's weight [O, {H}]) is required for "
                             f"{cell.name}")
        if w_hr is not None and not cell.projection:
            raise ValueError(f"w_hr (projection) is only defined for {_cells_with('projection')}"
                             f", not {cell.name}")
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
        norms = self._norms(cell, norms, H, Hp, b_ih is not None, dtype, dev)
        if "c" not in cell.states and c0 is not None:
            raise ValueError(f"c0 is only defined for {_cells_with_state('c')}, not {cell.name}")
        given = {"h": h0, "c": c0}
        shapes = tuple((B, cell.state_width(s, H, Hp)) for s in cell.states)
        states = []
        for state, shape in zip(cell.states, shapes, strict=True):
            if given[state] is None:
                raise ValueError(f"{state}0 is required for {cell.name}")
            states.append(_array(given[state], f"{state}0", dtype, shape, dev))
        lengths = check_lengths(lengths, T, B)
        reverse, training = check_flag(reverse, "reverse"), check_flag(training, "training")
        x, w_ih, w_hh, b_ih, b_hh, states, w_hr, norms = self._kernel_arrays(
            x, w_ih, w_hh, b_ih, b_hh, tuple(states), w_hr, norms)
        y, states_n, saved = self.module.forward(cell, x, w_ih, w_hh, b_ih, b_hh, states,
                                                 w_hr, norms, lengths, reverse, training)
        ctx = KernelContext(self.name, cell, (T, B, Hp), shapes, dtype, saved) if training \
            else None
        c_n = states_n[cell.states.index("c")] if "c" in cell.states else None
        return Forward(y, states_n[0], c_n, ctx)

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
        cell = ctx.cell
        dev = self.device_arrays
        dy = _array(dy, "dy", ctx.dtype, ctx.y_shape, dev)
        if "c" not in cell.states and dc_n is not None:
            raise ValueError(f"dc_n is only defined for {_cells_with_state('c')}, "
                             f"not {cell.name}")
        given = {"h": dh_n, "c": dc_n}
        dstates = tuple(
            np.zeros(shape, ctx.dtype) if given[state] is None
            else _array(given[state], f"d{state}_n", ctx.dtype, shape, dev)
            for state, shape in zip(cell.states, ctx.state_shapes, strict=True))
        dy, dstates = self._kernel_arrays(dy, dstates)
        dx, dstates0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dnorms = self.module.backward(
            cell, dy, dstates, ctx.saved)
        dc0 = dstates0[cell.states.index("c")] if "c" in cell.states else None
        return Grads(dx, dstates0[0], dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, tuple(dnorms))

    def step_forward(self, cell: Cell, x: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any,
                     states: tuple, norms: tuple, training: bool) -> tuple[list, Any]:
        """One time step for the cell modules, which check their arrays' shapes and dtypes:
        x [B,I] and the states [B,H] of the weights' dtype; arrays not as the kernels take them
        (:meth:`_kernel_arrays`: not in C order, say) are copied here. Returns
        the new states (a list) and what :meth:`step_backward` needs (None unless training).
        The time loop is the layers' over T=1; host backends run it without the batch plan
        (``step_forward`` of the driver), the others through :meth:`forward`."""
        step = getattr(self.module, "step_forward", None)
        if step is not None:
            x, w_ih, w_hh, b_ih, b_hh, states, norms = self._kernel_arrays(
                x, w_ih, w_hh, b_ih, b_hh, states, norms)
            states_n, saved = step(cell, x, w_ih, w_hh, b_ih, b_hh, states, norms, training)
            return states_n, saved
        out = self.forward(cell, x[None], w_ih, w_hh, b_ih, b_hh, *states, norms=norms,
                           training=training)
        return [s for s in (out.h_n, out.c_n) if s is not None], out.ctx

    def step_backward(self, cell: Cell, dh: Any, dc: Any, ctx: Any,
                      defer_weights: bool = False) -> Grads:
        """Backward of :meth:`step_forward` from dh [B,H] (and dc [B,H] or None): Grads with
        dx [B,I]. With `defer_weights`, a host backend returns dw_ih and dw_hh as
        :class:`WeightRows` (their factors, owned by the caller) for :meth:`row_products`;
        other backends return arrays all the same."""
        if isinstance(ctx, KernelContext):
            g = self.backward(dh[None], None, dc, ctx)
            return g._replace(dx=g.dx[0])
        dh, dc = self._kernel_arrays(dh, dc)
        dx, dstates, dw_ih, dw_hh, db_ih, db_hh, dnorms = self.module.step_backward(
            cell, dh, dc, ctx, defer_weights)
        dc0 = dstates[1] if len(dstates) > 1 else None
        return Grads(dx, dstates[0], dc0, dw_ih, dw_hh, db_ih, db_hh, None, tuple(dnorms))

    def row_products(self, rows: list[WeightRows]) -> np.ndarray:
        """The sum of a^T @ b over `rows` (deferred gradients of one weight, one dtype) as
        one product of all their rows, on this backend's BLAS: [M,N]. Only a module with
        ``step_backward`` returns such rows, and it has ``row_products``."""
        return self.module.row_products(*WeightRows.stacked(rows))

    @staticmethod
    def _norms(cell: Cell, norms: Any, H: int, Hp: int, bias: bool, dtype: np.dtype,
               dev: bool) -> tuple:
        """`norms` checked against ``cell.norms`` (``cell.bias_norms`` only with biases): a
        tuple of arrays of their widths."""
        expected = cell.vector_args(bias)
        if not expected:
            if norms and cell.norms:  # every entry is a bias, and the layer has none
                raise ValueError(f"norms must be empty for {cell.name} without biases "
                                 f"(b_ih = b_hh = None): its entries "
                                 f"({', '.join(cell.bias_norms)}) are biases")
            if norms:
                raise ValueError(f"norms (a cell's own vectors: LayerNorm gains, the Jordan "
                                 f"output bias) are not defined for {cell.name}; cells with "
                                 "them: " + ", ".join(c.name for c in cells.CELLS.values()
                                                     if c.norms))
            return ()
        names = list(expected)
        if not isinstance(norms, (tuple, list)) or len(norms) != len(names):
            raise ValueError(f"norms must be a tuple of {len(names)} arrays ({', '.join(names)})"
                             f" for {cell.name}, got {type(norms).__name__}"
                             + (f" of {len(norms)}" if isinstance(norms, (tuple, list)) else ""))
        widths = dict(cell.norms)
        return tuple(_array(value, name, dtype, (cell.width(widths[name], H, Hp),), dev)
                     for value, name in zip(norms, names, strict=True))


def _cells_with_state(state: str) -> str:
    return " or ".join(c.name for c in cells.CELLS.values() if state in c.states)
