"""Extreme inputs on every backend against the reference in the same dtype: infinities, NaN,
huge and saturating values in x, the initial state and the weights.

Pass rule: the same NaN and +-inf entries as the reference, and the finite entries within the
conformance bound (tol * (s + |ref|), s the largest finite |ref|, tol 1e-4 for float32 and
1e-10 for float64). A saturated unit must have exactly zero derivative: where the reference's
gradient is 0 because every unit saturated, a backend's must be too (the bound holds that to
within tol * s, far below what an inexact saturation leaves once x is 1e5).
"""

import numpy as np
import pytest

from fastrnn import backends, cells

from .helpers import GRAD_OF, SWEPT_CELLS, make_problem, norm_grads

REF = backends.get("reference")
BACKENDS = [name for name, (ok, _) in backends.available().items() if ok and name != "reference"]
TOL = {np.float32: 1e-4, np.float64: 1e-10}


def _poke(field: str, value: float, scale: bool = False):
    """A change to a problem: one entry of `field` set to `value`, or all of it scaled."""
    def change(pb):
        a = getattr(pb, field)
        if scale:
            a *= value
        else:
            a.reshape(-1)[a.size // 2] = value
    return change


#: name -> change; each is one of the corpus's kinds of extreme input
CASES = {
    "x +inf": _poke("x", np.inf), "x -inf": _poke("x", -np.inf), "x nan": _poke("x", np.nan),
    "x 1e30": _poke("x", 1e30), "x -1e30": _poke("x", -1e30),
    "x scaled 1e5": _poke("x", 1e5, scale=True), "x scaled 1e4": _poke("x", 1e4, scale=True),
    "h0 +inf": _poke("h0", np.inf), "h0 nan": _poke("h0", np.nan),
    "h0 1e30": _poke("h0", 1e30),
    "w_ih 1e38": _poke("w_ih", 1e38), "w_ih scaled 1e38": _poke("w_ih", 1e38 * 3, scale=True),
    "w_hh nan": _poke("w_hh", np.nan), "w_hh inf": _poke("w_hh", np.inf),
    "b_ih -inf": _poke("b_ih", -np.inf),
}


def assert_same(out, ref, dtype, what):
    assert out.shape == ref.shape and out.dtype == dtype, what
    nan_out, nan_ref = np.isnan(out), np.isnan(ref)
    assert np.array_equal(nan_out, nan_ref), (
        f"{what}: NaN at {np.argwhere(nan_out != nan_ref)[:3].tolist()} differ "
        f"(backend NaN: {nan_out.sum()}, reference: {nan_ref.sum()})")
    inf_out, inf_ref = np.isinf(out), np.isinf(ref)
    assert np.array_equal(inf_out, inf_ref) and np.array_equal(out[inf_out], ref[inf_ref]), \
        f"{what}: infinities differ"
    finite = np.isfinite(ref)
    o, r = out[finite].astype(np.float64), ref[finite].astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(r), initial=0.0)))
    err, bound = np.abs(o - r), TOL[dtype] * (scale + np.abs(r))
    assert np.all(err <= bound), f"{what}: max |diff| {np.max(err - bound):.3g} over the bound"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cell", SWEPT_CELLS)
@pytest.mark.parametrize("name", BACKENDS)
def test_extreme_inputs_give_the_references_answer(name, cell, case, dtype):
    check_extreme(name, cell, case, dtype)


def check_extreme(name, cell, case, dtype):
    """One backend, cell, case of CASES and dtype against the reference (tests/test_cuda.py
    runs it for the CUDA backend in the simulator)."""
    backend = backends.get(name)
    if not getattr(backend.module, "supports", lambda _: True)(cells.get(cell)):
        pytest.skip(f"{name} has no {cell} kernels")
    pb = make_problem(cell, T=4, B=3, I=5, H=4, P=2 if cell == "lstm" else 0, seed=7)
    pb = pb.astype(dtype)
    with np.errstate(all="ignore"):
        CASES[case](pb)
        ref = REF.forward(*pb.args(), **pb.kwargs())
        ref_g = REF.backward(pb.dy, pb.dh_n, pb.dc_n, ref.ctx)
        out = backend.forward(*pb.args(), **pb.kwargs())
        grads = backend.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
    for field in ("y", "h_n", "c_n"):
        if getattr(ref, field) is not None:
            assert_same(getattr(out, field), getattr(ref, field), dtype, f"{name} {field}")
    for field, attr in GRAD_OF.items():
        if getattr(pb, attr) is not None:
            assert_same(getattr(grads, field), getattr(ref_g, field), dtype, f"{name} {field}")
    expected = norm_grads(ref_g, pb)
    for field, got in norm_grads(grads, pb).items():
        assert_same(got, expected[field], dtype, f"{name} {field}")


def _read_only(a):
    if isinstance(a, tuple):
        return tuple(_read_only(v) for v in a)
    if a is None:
        return None
    a = a.copy()
    a.setflags(write=False)
    return a


FIELDS = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0", "w_hr", "norms", "dy", "dh_n",
          "dc_n")


@pytest.mark.parametrize("cell", SWEPT_CELLS)
@pytest.mark.parametrize("name", BACKENDS)
def test_read_only_arrays_are_accepted_and_left_alone(name, cell):
    """Every array argument read-only (np.load(mmap_mode='r'), np.frombuffer): the same
    results as writable arrays, and the inputs unchanged."""
    backend = backends.get(name)
    if not getattr(backend.module, "supports", lambda _: True)(cells.get(cell)):
        pytest.skip(f"{name} has no {cell} kernels")
    pb = make_problem(cell, T=4, B=3, I=5, H=4, P=2 if cell == "lstm" else 0, seed=1)
    want = backend.forward(*pb.args(), **pb.kwargs())
    want_g = backend.backward(pb.dy, pb.dh_n, pb.dc_n, want.ctx)
    for field in FIELDS:
        setattr(pb, field, _read_only(getattr(pb, field)))
    out = backend.forward(*pb.args(), **pb.kwargs())
    g = backend.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
    np.testing.assert_array_equal(out.y, want.y)
    for field in GRAD_OF:
        if getattr(g, field) is not None:
            np.testing.assert_array_equal(getattr(g, field), getattr(want_g, field))


def test_read_only_weights_and_inputs_through_layers_and_cells():
    import fastrnn

    x = _read_only(np.ones((5, 2, 3), np.float32))
    for backend in BACKENDS:
        m = fastrnn.GRU(3, 4, backend=backend, seed=0)
        for p in m.params.values():
            p.setflags(write=False)
        y, _ = m(x)
        m.backward(_read_only(np.ones_like(y)))
        cell = fastrnn.LSTMCell(3, 4, backend=backend, seed=0)
        for p in cell.params.values():
            p.setflags(write=False)
        h, c = cell(x[0], (_read_only(np.zeros((2, 4), np.float32)),) * 2)
        cell.backward(_read_only(np.ones_like(h)), _read_only(np.ones_like(c)))


@pytest.mark.parametrize("T,B", [(1, 1), (1, 3), (4, 1), (5, 20)])
@pytest.mark.parametrize("name", BACKENDS)
def test_no_input_features_is_an_empty_product(name, T, B):
    """I = 0: x @ w_ih^T is 0 (BLAS refuses a leading dimension of 0: nothing may come back
    uninitialised), dx is empty, dw_ih has no columns."""
    pb = make_problem("lstm", T=T, B=B, I=0, H=3, seed=2)
    backend = backends.get(name)
    ref = REF.forward(*pb.args(), **pb.kwargs())
    ref_g = REF.backward(pb.dy, pb.dh_n, pb.dc_n, ref.ctx)
    out = backend.forward(*pb.args(), **pb.kwargs())
    g = backend.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
    np.testing.assert_allclose(out.y, ref.y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.dw_hh, ref_g.dw_hh, rtol=1e-10, atol=1e-12)
    assert g.dx.shape == (T, B, 0) and g.dw_ih.shape == (12, 0)
