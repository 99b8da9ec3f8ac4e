"""The reference backward against central finite differences of the reference forward, float64.

Every gradient must agree within 1e-6 relative (elementwise, rtol=1e-6 with a 1e-9 floor for
entries that are ~0): every cell, with and without bias, ragged lengths, reverse, projection
(and every Jordan output activation, with relu and tanh hidden layers).
"""

import itertools

import numpy as np
import pytest

from fastrnn import backends
from fastrnn.cells import CELLS

from .helpers import GRAD_OF, loss, make_problem, norm_grads

REF = backends.get("reference")
EPS = 1e-6

CASES = [
    (cell, bias, ragged, reverse, 0)
    for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm", "layernorm_gru")
    for bias, ragged, reverse in itertools.product((True, False), repeat=3)
] + [("lstm", bias, ragged, reverse, 2)
     for bias, ragged, reverse in itertools.product((True, False), repeat=3)] + [
    (cell, bias, ragged, reverse, 2)  # Jordan: the output layer (P=2) is the state
    for cell in CELLS if CELLS[cell].output_act
    for bias, ragged, reverse in ((True, True, False), (False, False, True), (True, False, True))
]


def numerical_grad(pb, name):
    names = CELLS[pb.cell].vector_args(pb.b_ih is not None)
    arr = pb.norms[names.index(name)] if name in names else getattr(pb, name)
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        orig = flat[j]
        flat[j] = orig + EPS
        up = loss(REF, pb)
        flat[j] = orig - EPS
        down = loss(REF, pb)
        flat[j] = orig
        gflat[j] = (up - down) / (2 * EPS)
    return grad


@pytest.mark.parametrize("cell,bias,ragged,reverse,P", CASES)
def test_reference_gradients_match_finite_differences(cell, bias, ragged, reverse, P):
    pb = make_problem(cell, T=5, B=3, I=3, H=4, P=P, bias=bias, ragged=ragged,
                      reverse=reverse, scale=2.0,
                      seed=CASES.index((cell, bias, ragged, reverse, P)))
    if ragged:
        pb.lengths[:] = [5, 2, 3]  # one full, two ragged (with reverse: each its own steps)
    out = REF.forward(*pb.args(), **pb.kwargs())
    grads = REF.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
    checked = 0
    for field, attr in GRAD_OF.items():
        analytic = getattr(grads, field)
        if getattr(pb, attr) is None:
            assert analytic is None, f"{field} should be None"
            continue
        np.testing.assert_allclose(analytic, numerical_grad(pb, attr), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{cell} {field}")
        checked += 1
    assert checked >= 4  # dx, dh0, dw_ih, dw_hh at least
    assert len(grads.dnorms) == len(CELLS[cell].vector_args(bias))
    for field, analytic in norm_grads(grads, pb).items():
        np.testing.assert_allclose(analytic, numerical_grad(pb, field[1:]), rtol=1e-6,
                                   atol=1e-9, err_msg=f"{cell} {field}")


def test_relu_rnn_finite_differences_avoid_the_kink():
    """Sanity for the check itself: relu's pre-activations in the test stay away from 0."""
    pb = make_problem("rnn_relu", T=5, B=3, I=3, H=4, scale=2.0, seed=1)
    out = REF.forward(*pb.args(), **pb.kwargs())
    assert np.all((out.y == 0) | (np.abs(out.y) > 1e-4))


def test_ragged_outputs_are_zero_beyond_length_and_state_stops():
    pb = make_problem("lstm", T=6, B=3, I=2, H=3, ragged=True, seed=3)
    pb.lengths[:] = [6, 1, 4]
    out = REF.forward(*pb.args(), **pb.kwargs(training=False))
    assert np.all(out.y[1:, 1] == 0) and np.all(out.y[4:, 2] == 0)
    # h_n of sequence 2 equals running it alone over its 4 steps
    alone = REF.forward("lstm", np.ascontiguousarray(pb.x[:4, 2:3]), pb.w_ih, pb.w_hh, pb.b_ih,
                        pb.b_hh, pb.h0[2:3], pb.c0[2:3], training=False)
    np.testing.assert_allclose(out.h_n[2:3], alone.h_n, rtol=1e-12)
    np.testing.assert_allclose(out.c_n[2:3], alone.c_n, rtol=1e-12)


def test_reverse_with_lengths_runs_each_sequence_backward_over_its_own_steps():
    pb = make_problem("gru", T=5, B=2, I=2, H=3, ragged=True, reverse=True, seed=4)
    pb.lengths[:] = [5, 3]
    out = REF.forward(*pb.args(), **pb.kwargs(training=False))
    flipped = np.ascontiguousarray(pb.x[:3, 1:2][::-1])
    alone = REF.forward("gru", flipped, pb.w_ih, pb.w_hh, pb.b_ih, pb.b_hh, pb.h0[1:2],
                        training=False)
    np.testing.assert_allclose(out.y[:3, 1:2], alone.y[::-1], rtol=1e-12)
    np.testing.assert_allclose(out.h_n[1:2], alone.h_n, rtol=1e-12)
    assert np.all(out.y[3:, 1] == 0)


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru", "layernorm_lstm",
                                  "layernorm_gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_is_numerically_safe_for_huge_preactivations(cell, dtype):
    pb = make_problem(cell, T=20, B=2, I=3, H=4, scale=1e3, dtype=dtype, seed=5)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is benign
        out = REF.forward(*pb.args(), **pb.kwargs())
        grads = REF.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
    assert out.y.dtype == dtype and np.all(np.isfinite(out.y))
    assert all(np.all(np.isfinite(g)) for g in (*grads[:-1], *grads.dnorms) if g is not None)
