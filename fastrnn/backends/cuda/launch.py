"""Repeated kernel launches with their arguments converted once.

A per-step time loop launches the same configured kernel T times with the same arrays (two
state buffers taking turns) and only the step index changing. numba-cuda converts every
argument of every launch (typing, then a device-array check and its pointer, shape and strides
per array): measured on an H100 machine's Xeon, an LSTM step's one launch with 17 arguments
took 160-230 us, far more than the step's work. :class:`Repeated` converts each distinct
argument list once, with numba-cuda's own conversion, and then only updates the integers (the
step) before handing the prepared list to the launch numba-cuda itself calls (cuda.core's).

It relies on numba-cuda's launch internals (0.30): where they differ, or in the simulator,
every launch takes numba's ordinary path.
"""

from __future__ import annotations

import ctypes
from typing import Any


class Repeated:
    """``configured(*args)`` (a kernel with its grid and block: ``kernel[grid, block]``),
    with the argument lists converted once each. Arrays are told apart by identity, other
    arguments by value; Python ints (the step index) may change from launch to launch.
    Holds the arrays it has seen until it is dropped (make one per time-loop call)."""

    def __init__(self, configured: Any):
        self._configured = configured
        self._prepared: dict[tuple, Any] = {}

    def __call__(self, *args: Any) -> None:
        key = tuple(_identity(a) for a in args)
        entry = self._prepared.get(key, _UNSEEN)
        if entry is _UNSEEN:  # numba's path first: it compiles for these types if needed
            self._configured(*args)
            # (the arguments are kept with it: the arrays' ids in the key stay theirs)
            self._prepared[key] = args, _prepare(self._configured, args)
            return
        if entry[1] is None:  # could not be prepared: numba's path every time
            self._configured(*args)
            return
        launch, fixed, ints = entry[1]
        for position, value in ints:
            value.value = args[position]
        launch(*fixed)


_UNSEEN = object()


def _identity(a: Any) -> Any:
    """What tells two launches' arguments apart: the object for arrays (its id; the entry
    keeps the object alive), the value for bools and scalars, and nothing for Python ints
    (the step, set at each launch)."""
    if type(a) is int:
        return int
    if getattr(type(a), "__cuda_ndarray__", False):  # numba's device arrays (every array the
        return id(a)  # loops pass)
    return type(a), a


def _prepare(configured: Any, args: tuple) -> tuple | None:
    """(cuda.core's launch, its fixed arguments, [(position in args, the ctypes integer to
    set)]) for this argument list, or None where numba-cuda's internals are not the ones this
    was written for (then numba launches it each time)."""
    from numba import config

    if config.ENABLE_CUDASIM:
        return None
    try:
        from cuda.core import LaunchConfig, launch
        from numba.cuda._compat import CUDA_CORE_GE_1_0
        from numba.cuda.typing.typeof import Purpose, typeof

        dispatcher = configured.dispatcher
        if getattr(dispatcher, "_launch_config_sensitive", True):
            return None
        kernel = dispatcher.overloads[tuple(typeof(a, Purpose.argument) for a in args)]
        if kernel.debug or kernel.extensions:
            return None
        kernelargs: list = []
        ints = []
        for position, (ty, value) in enumerate(zip(kernel.argument_types, args, strict=True)):
            before = len(kernelargs)
            retr: list = []
            kernel._prepare_args(ty, value, configured.stream, retr, kernelargs)
            if retr:  # a host array copied per launch: not ours to repeat
                return None
            if type(value) is int:
                (converted,) = kernelargs[before:]
                if not isinstance(converted, ctypes.c_int64):
                    return None
                ints.append((position, converted))
        options = {"grid": configured.griddim, "block": configured.blockdim,
                   "shmem_size": configured.sharedmem}
        options["is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch"] = \
            kernel.cooperative
        cufunc = kernel._codelibrary.get_cufunc()
        return launch, (configured.stream, LaunchConfig(**options), cufunc.kernel,
                        *kernelargs), ints
    except (AttributeError, ImportError, KeyError, TypeError, ValueError):
        return None
