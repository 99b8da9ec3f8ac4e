"""The CUDA backend against the reference. Without a GPU it runs in numba's CUDA simulator,
in its own invocation (the simulator is slow, so the shapes are tiny):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

On a machine with a GPU the whole conformance suite (tests/test_conformance.py) runs it too.
"""

import numpy as np
import pytest

import fastrnn
from fastrnn import backends

from .helpers import make_problem
from .test_conformance import check_backend

ok, why = backends.available()["cuda"]
pytestmark = pytest.mark.skipif(not ok, reason=f"cuda backend unavailable: {why}")
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_conforms_on_tiny_shapes(cell, dtype):
    for T, B, I, H, ragged, reverse, bias in [(1, 1, 1, 1, False, False, True),
                                              (3, 2, 3, 5, True, True, True),
                                              (2, 3, 2, 3, True, False, False)]:
        check_backend("cuda", make_problem(cell, T, B, I, H, ragged=ragged, reverse=reverse,
                                           bias=bias, seed=T + B), dtype)


def test_lstm_projection_conforms():
    check_backend("cuda", make_problem("lstm", 3, 2, 2, 4, P=2, ragged=True, reverse=True),
                  np.float64)


def test_weights_from_global_memory_when_they_do_not_fit_on_chip(monkeypatch):
    from fastrnn.backends import cuda as cuda_backend

    monkeypatch.setattr(cuda_backend, "SHARED_BYTES", 0)
    for cell in ("lstm", "gru", "rnn_tanh"):
        check_backend("cuda", make_problem(cell, 2, 2, 2, 3, ragged=True, seed=4), np.float64)


def test_device_arrays_in_device_arrays_out():
    from numba import cuda

    pb = make_problem("gru", 3, 2, 2, 3, seed=5)
    be = backends.get("cuda")
    host = be.forward(*pb.args(), **pb.kwargs())
    dev_args = [a if a is None or isinstance(a, str) else cuda.to_device(a) for a in pb.args()]
    out = be.forward(*dev_args, **pb.kwargs())
    assert not isinstance(out.y, np.ndarray)
    np.testing.assert_allclose(out.y.copy_to_host(), host.y, rtol=1e-12)
    grads = be.backward(cuda.to_device(pb.dy), cuda.to_device(pb.dh_n), None, out.ctx)
    ref = be.backward(pb.dy, pb.dh_n, None, host.ctx)
    np.testing.assert_allclose(grads.dw_hh.copy_to_host(), ref.dw_hh, rtol=1e-12)
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3\)"):
        be.forward("gru", dev_args[1], *dev_args[2:6], cuda.to_device(np.zeros((3, 3))))


def test_the_stack_runs_on_it_unchanged():
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    ours = fastrnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64,
                        backend="cuda", seed=0)
    ref = fastrnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64,
                       backend="reference", seed=0)
    y, (h, c) = ours(x, lengths=[3, 1])
    y_ref, (h_ref, c_ref) = ref(x, lengths=[3, 1])
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dx, _ = ours.backward(np.ones_like(y))
    dx_ref, _ = ref.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)


def test_too_many_units_is_a_clear_error():
    pb = make_problem("rnn_tanh", 1, 1, 1, 1025, seed=0)
    with pytest.raises(ValueError, match="up to 1024"):
        backends.get("cuda").forward(*pb.args(), **pb.kwargs())
