"""The backend registry: every caller asks here for a kernel backend by name.

Backends are imported lazily (importing fastrnn compiles nothing). Each backend module is a
:class:`~fastrnn.backends.contract.KernelModule`: ``available() -> (ok, reason)``, ``forward``
and ``backward``. Adding a backend means adding one line to ``_MODULES`` and its own module.
"""

from __future__ import annotations

import importlib
import os

from .contract import Backend, Forward, Grads, KernelContext, KernelModule

__all__ = ["Backend", "Forward", "Grads", "KernelContext", "KernelModule", "available", "get",
           "default_name", "names", "conv", "conv_available", "CONV_MODULES"]

#: name -> module, in order of preference for the default (fastest first). "cuda" is never
#: chosen by default: it would copy NumPy arrays to a GPU and back on every call.
_MODULES = {
    "cython": "fastrnn.backends.cython_cpu",
    "numba": "fastrnn.backends.numba_cpu",
    "reference": "fastrnn.backends.reference",
    "cuda": "fastrnn.backends.cuda",
}
_DEFAULT_ORDER = ("cython", "numba", "reference")
ENV_VAR = "FASTRNN_BACKEND"

_cache: dict[str, Backend] = {}
_status: dict[str, tuple[bool, str]] = {}


def names() -> tuple[str, ...]:
    """Every backend fastrnn knows, available or not."""
    return tuple(_MODULES)


def _probe(name: str) -> tuple[bool, str]:
    if name not in _status:
        try:
            module = importlib.import_module(_MODULES[name])
            ok, reason = module.available()
        except Exception as exc:  # a missing dependency or a broken build: report, don't die
            ok, reason = False, f"{type(exc).__name__}: {exc}"
            module = None
        _status[name] = (bool(ok), str(reason))
        if ok:
            _cache[name] = Backend(name, module)
    return _status[name]


def available() -> dict[str, tuple[bool, str]]:
    """{name: (ok, reason)} for every known backend; the reason says why one is unavailable."""
    return {name: _probe(name) for name in _MODULES}


def _describe() -> str:
    lines = [f"  {name}: {'available' if ok else 'not available'} ({why})"
             for name, (ok, why) in available().items()]
    return "\n".join(lines)


def default_name() -> str:
    """The backend used when none is named: $FASTRNN_BACKEND, else the fastest available."""
    env = os.environ.get(ENV_VAR)
    if env:
        if env not in _MODULES or not _probe(env)[0]:
            raise ValueError(f"${ENV_VAR}={env!r} names no available backend; backends:\n"
                             + _describe())
        return env
    for name in _DEFAULT_ORDER:
        if _probe(name)[0]:
            return name
    raise RuntimeError("no fastrnn backend is available:\n" + _describe())  # pragma: no cover


def get(name: str | Backend | None = None) -> Backend:
    """The backend called `name` (None: :func:`default_name`), or a ValueError saying why not."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = default_name()
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; known backends:\n{_describe()}")
    ok, _ = _probe(name)
    if not ok:
        raise ValueError(f"backend {name!r} is not available; backends:\n{_describe()}")
    return _cache[name]


#: ConvLSTM kernels (:mod:`fastrnn.backends.conv_contract`): name -> module, in order of
#: preference for the default: the fast kernel on Cython's loops, on Numba's, the reference.
CONV_MODULES = {
    "cython": "fastrnn.backends.cython_conv",
    "numba": "fastrnn.backends.numba_cpu.convlstm",
    "reference": "fastrnn.backends.conv_reference",
}
_conv_cache: dict = {}


def conv_available() -> dict[str, tuple[bool, str]]:
    """{name: (ok, reason)} for every ConvLSTM kernel (``fastrnn info`` prints it)."""
    status = {}
    for name, path in CONV_MODULES.items():
        try:
            ok, why = importlib.import_module(path).available()
        except Exception as exc:  # a missing dependency or a broken build: report, don't die
            ok, why = False, f"{type(exc).__name__}: {exc}"
        status[name] = (bool(ok), str(why))
    return status


def conv(name: str | None = None):
    """The ConvLSTM kernels called `name` (None: the first available of
    :data:`CONV_MODULES`) behind the checked contract
    (:class:`~fastrnn.backends.conv_contract.ConvBackend`), or a ValueError saying why not."""
    from .conv_contract import ConvBackend

    if name is None:
        name = next((n for n, (ok, _) in conv_available().items() if ok), "reference")
    if not isinstance(name, str) or name not in CONV_MODULES:
        raise ValueError(f"ConvLSTM backend must be one of {list(CONV_MODULES)} (or None "
                         f"for the fastest available), got {name!r}")
    if name not in _conv_cache:
        ok, why = conv_available()[name]
        if not ok:
            raise ValueError(f"ConvLSTM backend {name!r} is not available: {why}")
        _conv_cache[name] = ConvBackend(name, importlib.import_module(CONV_MODULES[name]))
    return _conv_cache[name]
