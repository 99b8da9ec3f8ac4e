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


_PRODUCTS = """
import numpy as np
from fastrnn import parallel
from fastrnn._kernels import seq
from fastrnn.backends.cython_cpu import driver
P = driver.products
rng = np.random.default_rng(0)
for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-13)):
    for rows in (*range(1, 19), 33):
        # products split by columns over the OpenMP team (packed.h, team_parts: parts of at
        # least 3 * 2^16 multiply-adds), tails in every part: (128, 512) from 6 rows on,
        # (129, 1031) and (1031, 129) from 3, (700, 601) at every row count (one: row_gemm)
        for K, N in ((1, 1), (7, 5), (8, 24), (9, 25), (100, 52), (128, 512), (3, 97),
                     (129, 1031), (1031, 129), (700, 601)):
            x = rng.standard_normal((1, rows, K)).astype(dtype)
            w = rng.standard_normal((N, K)).astype(dtype)
            bias = rng.standard_normal(N).astype(dtype)
            g = rng.standard_normal((1, rows, N)).astype(dtype)
            want = x[0].astype(np.float64) @ w.T.astype(np.float64) + bias
            got = P.project(x, w, (bias,))[0]
            assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()) * K, \\
                ("project", dtype, rows, K, N)
            want = g[0].astype(np.float64) @ w.astype(np.float64)
            got = P.matmul_nn(g, w)[0]
            assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()) * N, \\
                ("matmul_nn", dtype, rows, K, N)
            want = g[0].T.astype(np.float64) @ x[0].astype(np.float64)
            got = P.matmul_tn(g, x)
            assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()) * rows, \\
                ("matmul_tn", dtype, rows, K, N)
    x = np.full((1, 3, 20), np.nan, dtype)
    assert np.isnan(P.project(x, np.ones((4, 20), dtype), (np.zeros(4, dtype),))).all()
    for rows in (1, 3, 40):
        empty = P.project(np.ones((1, rows, 0), dtype), np.ones((4, 0), dtype),
                          (np.zeros(4, dtype),))
        assert (empty == 0).all()
        assert (P.matmul_nn(np.ones((1, rows, 0), dtype), np.ones((0, 5), dtype)) == 0).all()
    assert (P.matmul_tn(np.ones((0, 3, 4), dtype), np.ones((0, 3, 5), dtype)) == 0).all()
    for call in (lambda: seq.project(np.ones((1, 3, 4), dtype), np.ones((5, 4), dtype),
                                     np.zeros(5, dtype), np.empty((1, 3, 6), dtype)),
                 lambda: seq.matmul_nn(np.ones((1, 3, 5), dtype), np.ones((5, 4), dtype),
                                       np.empty((1, 2, 4), dtype))):
        try:
            call()
        except ValueError as exc:
            assert "out must be" in str(exc)
        else:
            raise AssertionError("an output of the wrong shape was accepted")
# inside a parallel region (a batch part) the products run whole on their thread: the same
# values, bit for bit where the in-place kernels serve (a column split keeps each sum's order)
same = np.array_equal if seq.blas_free_rows() else \
    (lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-4))
w = rng.standard_normal((1031, 129)).astype(np.float32)
x = rng.standard_normal((1, 8, 129)).astype(np.float32)
g = rng.standard_normal((1, 8, 1031)).astype(np.float32)
alone = P.project(x, w, ()), P.matmul_nn(g, w)
inside = parallel.run([lambda: (P.project(x, w, ()), P.matmul_nn(g, w))] * 2)
for got in inside:
    assert all(same(a, b) for a, b in zip(alone, got))
print(seq.blas_free_rows())
"""


@pytest.mark.parametrize("gemm", ["blas", "packed"])
def test_the_whole_sequence_products_match_numpy(gemm):
    """project (x @ w^T + bias), matmul_nn (g @ w) and matmul_tn (g^T @ x) at every row count
    the in-place kernels serve (1..16) and past it, odd sizes (K and N tails of the vectors,
    of the 4-row and the 3-vector blocks), float32/float64; NaN propagates, an empty input
    dimension gives 0."""
    if gemm == "packed" and not _choice("packed")[0]:
        pytest.skip("this CPU cannot run the packed kernels (no AVX2+FMA)")
    out = _run(["-c", _PRODUCTS], gemm)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == (["16"] if gemm == "packed" else ["0"])
