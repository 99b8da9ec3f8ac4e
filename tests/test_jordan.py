"""The Jordan network: its kernels against the Elman network they must reduce to, its stack
(layers, directions, ragged lengths) on every CPU backend against the reference, the module
against finite differences, its errors, and the example's asserted bars."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import backends, cells, nn

from .helpers import make_problem

BACKENDS = [name for name, (ok, _) in backends.available().items()  # (CUDA has no Jordan)
            if ok and getattr(backends.get(name).module, "supports", lambda _: True)(
                cells.get("jordan"))]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("relu", [False, True])
def test_identity_output_layer_makes_it_the_elman_network(name, relu):
    """With W_hy = I, b_hy = 0 and an identity output, y_t = u_t: the Elman network on the
    same weights (values and the shared weights' gradients, ragged, reverse, float64)."""
    backend = backends.get(name)
    act = "relu" if relu else "tanh"
    pb = make_problem(f"rnn_{act}", T=6, B=5, I=3, H=4, ragged=True, reverse=True, seed=4)
    elman = backend.forward(*pb.args(), **pb.kwargs())
    eg = backend.backward(pb.dy, pb.dh_n, None, elman.ctx)
    jordan = backend.forward(f"jordan_{act}_identity", *pb.args()[1:],
                             **{**pb.kwargs(), "w_hr": np.eye(4), "norms": (np.zeros(4),)})
    jg = backend.backward(pb.dy, pb.dh_n, None, jordan.ctx)
    np.testing.assert_allclose(jordan.y, elman.y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jordan.h_n, elman.h_n, rtol=1e-12, atol=1e-14)
    for field in ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"):
        np.testing.assert_allclose(getattr(jg, field), getattr(eg, field), rtol=1e-10,
                                   atol=1e-12, err_msg=field)


@pytest.mark.parametrize("name", [b for b in BACKENDS if b != "reference"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_stack_matches_the_reference_stack(name, dtype, tol):
    """Two bidirectional layers over ragged sequences, every output activation: outputs, the
    final states and every parameter's gradient equal the reference backend's."""
    x = np.random.default_rng(0).uniform(-1, 1, (7, 6, 3)).astype(dtype)
    lengths = np.array([7, 2, 5, 1, 7, 4])
    for out in cells.OUTPUT_ACTS:
        got, want = (fastrnn.JordanRNN(3, 5, 2, num_layers=2, bidirectional=True,
                                       output_nonlinearity=out, dtype=dtype, backend=b, seed=1)
                     for b in (name, "reference"))
        y0 = np.random.default_rng(2).uniform(-0.5, 0.5, (4, 6, 2)).astype(dtype)
        (y1, h1), (y2, h2) = got(x, y0, lengths), want(x, y0, lengths)
        np.testing.assert_allclose(y1, y2, rtol=tol, atol=tol)
        np.testing.assert_allclose(h1, h2, rtol=tol, atol=tol)
        dy = np.random.default_rng(3).standard_normal(y1.shape).astype(dtype)
        (dx1, d01), (dx2, d02) = got.backward(dy), want.backward(dy)
        np.testing.assert_allclose(dx1, dx2, rtol=tol, atol=tol)
        np.testing.assert_allclose(d01, d02, rtol=tol, atol=tol)
        assert got.grads.keys() == want.grads.keys()
        for key in want.grads:
            np.testing.assert_allclose(got.grads[key], want.grads[key], rtol=tol, atol=tol,
                                       err_msg=f"{out} {key}")


def test_module_gradients_match_finite_differences():
    """JordanRNN (2 layers, tanh output, ragged) in float64 on the reference backend: every
    parameter's gradient and dx against central differences of sum(dy * y)."""
    m = fastrnn.JordanRNN(2, 3, 2, num_layers=2, output_nonlinearity="tanh",
                          dtype=np.float64, backend="reference", seed=0)
    rng = np.random.default_rng(1)
    x, lengths = rng.standard_normal((4, 3, 2)), np.array([4, 2, 3])
    dy = rng.standard_normal((4, 3, 2))

    def loss():
        return float(np.sum(dy * m(x, None, lengths)[0]))

    m(x, None, lengths)
    dx, _ = m.backward(dy)
    eps = 1e-6
    for key in ("weight_ih_l0", "weight_yh_l0", "bias_yh_l1", "weight_hy_l1", "bias_hy_l0"):
        p, numeric = m.params[key], np.zeros_like(m.params[key])
        for j in range(p.size):
            orig = p.flat[j]
            p.flat[j] = orig + eps
            up = loss()
            p.flat[j] = orig - eps
            numeric.flat[j] = (up - loss()) / (2 * eps)
            p.flat[j] = orig
        np.testing.assert_allclose(m.grads[key], numeric, rtol=1e-6, atol=1e-9, err_msg=key)
    numeric = np.zeros_like(x)
    for j in range(x.size):
        orig = x.flat[j]
        x.flat[j] = orig + eps
        up = loss()
        x.flat[j] = orig - eps
        numeric.flat[j] = (up - loss()) / (2 * eps)
        x.flat[j] = orig
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-9)


def test_parameters_names_state_dict_and_step():
    m = fastrnn.JordanRNN(3, 8, 2, bias=False, seed=0)
    assert sorted(m.params) == ["weight_hy_l0", "weight_ih_l0", "weight_yh_l0"]
    assert m.params["weight_yh_l0"].shape == (8, 2) and m.params["weight_hy_l0"].shape == (2, 8)
    assert repr(m).startswith("JordanRNN(3, 8, 2, bias=False, backend=")
    other = fastrnn.JordanRNN(3, 8, 2, bias=False, seed=5)
    other.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    y, y_n = m(x)
    np.testing.assert_array_equal(other(x)[0], y)
    state, steps = None, []
    for t in range(5):  # one step at a time gives the sequence's outputs
        out, state = m.step(x[t], state)
        steps.append(out)
    np.testing.assert_allclose(np.stack(steps), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, y_n, rtol=1e-5, atol=1e-6)


def test_model_api_layer():
    layer = nn.Recurrent("jordan", 3, 8, output_size=2, output="last", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    assert layer(x).shape == (4, 2)
    assert layer.backward(np.ones((4, 2), np.float32)).shape == x.shape
    assert "bias_hy_l0" in layer.params


@pytest.mark.parametrize("make,error,message", [
    (lambda: fastrnn.JordanRNN(3, 8, 0), ValueError, "output_size must be an integer >= 1"),
    (lambda: nn.Recurrent("jordan", 3, 8), ValueError, "output_size must be an integer >= 1"),
    (lambda: fastrnn.JordanRNN(3, 8, 2, nonlinearity="sigmoid"), ValueError,
     "nonlinearity must be 'tanh' or 'relu'"),
    (lambda: fastrnn.JordanRNN(3, 8, 2, output_nonlinearity="relu"), ValueError,
     r"output_nonlinearity must be one of \('identity', 'tanh', 'sigmoid'\)"),
    (lambda: fastrnn.RNNBase("rnn_tanh", 3, 8, proj_size=2), ValueError,
     "proj_size is only supported by LSTM"),
    (lambda: fastrnn.RNNCellBase("jordan", 3, 8), ValueError,
     r"jordan_tanh_identity has no single-step cell module.*JordanRNN\(\.\.\.\)\.step\(\)"),
])
def test_bad_arguments_name_themselves(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_example_shows_where_jordan_and_elman_differ():
    spec = importlib.util.spec_from_file_location("jordan", ROOT / "examples" / "jordan.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.run(quick=True, log=lambda *_: None)
    assert results["feedback_jordan"] < example.FEEDBACK_JORDAN_MAX
    assert results["memory_elman"] < example.MEMORY_ELMAN_MAX
    assert results["memory_jordan"] > example.MEMORY_JORDAN_MIN
    assert example.bars_met(results)
