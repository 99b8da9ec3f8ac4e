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


#: instruction-set extensions worth naming beside a benchmark (kernels differ by them)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
             "amx_tile")


def cpu_info() -> dict[str, Any]:
    """The CPU model, the notable ISA extensions it has and the CPUs this process may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        usable = os.cpu_count() or 1
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags], "usable_cpus": usable}


def collect() -> dict[str, Any]:
    """Everything ``fastrnn info`` prints, as a dict (also stored beside benchmark results)."""
    from . import __version__, backends

    return {
        "fastrnn": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_info(),
        "packages": {p: _version(p) for p in ("numpy", "scipy", "numba", "llvmlite", "cython",
                                              "threadpoolctl", "torch", "numba-cuda")},
        "backends": {name: {"available": ok, "detail": why}
                     for name, (ok, why) in backends.available().items()},
        "default_backend": backends.default_name(),
        "conv_backends": {name: {"available": ok, "detail": why}
                          for name, (ok, why) in backends.conv_available().items()},
        "default_conv_backend": backends.conv().name,
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                               "FASTRNN_BACKEND", "FASTRNN_GEMM")},
    }


def format_report(info: dict[str, Any]) -> str:
    """The human-readable form of :func:`collect`."""
    lines = [f"fastrnn {info['fastrnn']}  (Python {info['python']}, {info['platform']}, "
             f"{info['cpu_count']} CPUs)",
             f"CPU: {info['cpu']['model']}, ISA: {' '.join(info['cpu']['isa']) or '-'}, "
             f"usable CPUs: {info['cpu']['usable_cpus']}", "", "packages:"]
    lines += [f"  {name:<14} {version}" for name, version in info["packages"].items()]
    lines += ["", f"backends (default: {info['default_backend']}):"]
    for name, b in info["backends"].items():
        state = "available" if b["available"] else "not available"
        lines.append(f"  {name:<10} {state:<14} {b['detail']}")
    lines += ["", f"ConvLSTM kernels (default: {info['default_conv_backend']}):"]
    for name, b in info["conv_backends"].items():
        state = "available" if b["available"] else "not available"
        lines.append(f"  {name:<10} {state:<14} {b['detail']}")
    lines += ["", "BLAS / thread pools:"]
    for lib in info["blas"]:
        lines.append(f"  {lib['internal_api']} {lib['version']} kernels={lib['architecture']} "
                     f"threads={lib['num_threads']}  {lib['filepath']}")
    lines += ["", "environment:"]
    lines += [f"  {k}={v}" for k, v in info["env"].items() if v is not None] or ["  (none set)"]
    return "\n".join(lines)
