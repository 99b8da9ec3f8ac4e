"""What this machine runs: versions, backends, the BLAS in use and the thread counts."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (load NumPy's and SciPy's)."""
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    import scipy.linalg  # noqa: F401  (loads SciPy's, which numba and Cython kernels call)
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()]


def collect() -> dict[str, Any]:
    """Everything ``fastrnn info`` prints, as a dict (also stored beside benchmark results)."""
    from . import __version__, backends

    return {
        "fastrnn": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {p: _version(p) for p in ("numpy", "scipy", "numba", "llvmlite", "cython",
                                              "threadpoolctl", "torch", "numba-cuda")},
        "backends": {name: {"available": ok, "detail": why}
                     for name, (ok, why) in backends.available().items()},
        "default_backend": backends.default_name(),
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                               "FASTRNN_BACKEND")},
    }


def format_report(info: dict[str, Any]) -> str:
    """The human-readable form of :func:`collect`."""
    lines = [f"fastrnn {info['fastrnn']}  (Python {info['python']}, {info['platform']}, "
             f"{info['cpu_count']} CPUs)", "", "packages:"]
    lines += [f"  {name:<14} {version}" for name, version in info["packages"].items()]
    lines += ["", f"backends (default: {info['default_backend']}):"]
    for name, b in info["backends"].items():
        state = "available" if b["available"] else "not available"
        lines.append(f"  {name:<10} {state:<14} {b['detail']}")
    lines += ["", "BLAS / thread pools:"]
    for lib in info["blas"]:
        lines.append(f"  {lib['internal_api']} {lib['version']} kernels={lib['architecture']} "
                     f"threads={lib['num_threads']}  {lib['filepath']}")
    lines += ["", "environment:"]
    lines += [f"  {k}={v}" for k, v in info["env"].items() if v is not None] or ["  (none set)"]
    return "\n".join(lines)
