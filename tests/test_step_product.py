"""The Cython backend's two per-step products (src_kernels/packed.h): W_hh packed once per call,
or a BLAS call per step. Which one runs is fixed per process (chosen from the CPU, forced by
FASTRNN_GEMM), so each is checked against the reference in a process of its own: whatever
this machine picks by default, both paths stay conformant."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastrnn import backends

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not backends.available()["cython"][0],
                                reason="Cython extensions not built")


def _run(code_or_args: list[str], gemm: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FASTRNN_GEMM=gemm)
    return subprocess.run([sys.executable, *code_or_args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _choice(gemm: str) -> tuple[bool, str]:
    out = _run(["-c", "from fastrnn._kernels import seq; print(*seq.step_product(), sep='|')"],
               gemm)
    assert out.returncode == 0, out.stderr
    packed, why = out.stdout.strip().split("|")
    return packed == "True", why


def test_the_environment_forces_the_step_product():
    assert _choice("blas") == (False, "FASTRNN_GEMM=blas")
    packed, why = _choice("packed")
    assert why in ("FASTRNN_GEMM=packed", "the CPU lacks AVX2+FMA")
    assert packed == (why == "FASTRNN_GEMM=packed")


def test_an_unknown_step_product_is_refused_with_the_reason():
    code = ("from fastrnn import backends\n"
            "ok, why = backends.available()['cython']\n"
            "assert not ok and 'FASTRNN_GEMM' in why and \"'mkl'\" in why, why\n"
            "try:\n    backends.get('cython')\nexcept Exception as exc:\n"
            "    assert 'FASTRNN_GEMM' in str(exc), exc\n"
            "else:\n    raise AssertionError('cython served with FASTRNN_GEMM=mkl')\n")
    out = _run(["-c", code], "mkl")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("gemm", ["blas", "packed"])
def test_each_step_product_matches_the_reference(gemm):
    if gemm == "packed" and not _choice("packed")[0]:
        pytest.skip("this CPU cannot run the packed kernels (no AVX2+FMA)")
    out = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/test_conformance.py",
                "-k", "cython and (edge_shapes or random_shapes)"], gemm)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
