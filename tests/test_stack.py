"""The layer stack without torch: dropout, modes, state handling, parameters and bad input."""

import numpy as np
import pytest

import fastrnn
from fastrnn.rnn import RNNBase

MODULES = {
    "rnn": lambda **kw: fastrnn.RNN(3, 4, **kw),
    "lstm": lambda **kw: fastrnn.LSTM(3, 4, **kw),
    "gru": lambda **kw: fastrnn.GRU(3, 4, **kw),
}


def x_of(T=5, B=2, I=3, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


# ------------------------------------------------------------------ dropout and modes


def test_dropout_gradient_matches_finite_differences_under_the_same_mask():
    m = fastrnn.GRU(2, 3, num_layers=3, dropout=0.4, bidirectional=True, dtype=np.float64,
                    seed=0)
    x = x_of(4, 2, 2, np.float64)
    rng_state = m._rng.bit_generator.state
    dy = np.random.default_rng(1).standard_normal((4, 2, 6))

    def loss(x_):
        m._rng.bit_generator.state = rng_state  # replay the same dropout masks
        return float(np.sum(m(x_)[0] * dy))

    loss(x)
    dx, _ = m.backward(dy)
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += 1e-6
        xm[idx] -= 1e-6
        num[idx] = (loss(xp) - loss(xm)) / 2e-6
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)


def test_dropout_acts_only_in_training_and_between_layers():
    m = fastrnn.LSTM(3, 16, num_layers=2, dropout=0.5, seed=0)
    x = x_of(T=30, B=8)
    m.eval()
    y_eval1, _ = m(x)
    y_eval2, _ = m(x)
    np.testing.assert_array_equal(y_eval1, y_eval2)
    m.train()
    y_train, _ = m(x)
    assert not np.allclose(y_train, y_eval1)
    m_nodrop = fastrnn.LSTM(3, 16, num_layers=2, seed=0)
    np.testing.assert_array_equal(m_nodrop.eval()(x)[0], y_eval1)


def test_eval_forward_keeps_nothing_for_backward():
    m = fastrnn.LSTM(3, 4).eval()
    y, _ = m(x_of())
    with pytest.raises(RuntimeError, match="training mode"):
        m.backward(np.ones_like(y))


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="forward"):
        fastrnn.GRU(3, 4).backward(np.ones((5, 2, 4), np.float32))


def test_gradients_accumulate_and_zero_grad_clears():
    m = fastrnn.RNN(3, 4, seed=0)
    x = x_of()
    y, _ = m(x)
    m.backward(np.ones_like(y))
    once = {k: v.copy() for k, v in m.grads.items()}
    m(x)
    m.backward(np.ones_like(y))
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-6)
    m.zero_grad()
    assert all(not g.any() for g in m.grads.values())


def test_params_are_live_in_place_changes_change_the_next_forward():
    m = fastrnn.GRU(3, 4, seed=0)
    x = x_of()
    y1, _ = m(x)
    m.params["weight_hh_l0"] *= 0.5
    y2, _ = m(x)
    assert not np.allclose(y1, y2)


def test_same_seed_same_parameters_and_reset():
    a, b = fastrnn.LSTM(3, 4, seed=7), fastrnn.LSTM(3, 4, seed=7)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    live = a.params["weight_ih_l0"]
    a.reset_parameters(seed=8)
    assert a.params["weight_ih_l0"] is live and not np.array_equal(live, b.params["weight_ih_l0"])
    bound = 1 / np.sqrt(4)
    assert all(np.abs(v).max() <= bound for v in a.params.values())


def test_lengths_zero_leaves_state_and_gives_zero_output():
    m = fastrnn.LSTM(3, 4, seed=0)
    h0 = np.full((1, 2, 4), 0.3, np.float32)
    c0 = np.full((1, 2, 4), -0.2, np.float32)
    y, (h, c) = m(x_of(), (h0, c0), lengths=[5, 0])
    assert np.all(y[:, 1] == 0)
    np.testing.assert_array_equal(h[0, 1], h0[0, 1])
    np.testing.assert_array_equal(c[0, 1], c0[0, 1])


def test_unbatched_equals_batch_of_one():
    m = fastrnn.GRU(3, 4, num_layers=2, bidirectional=True, seed=0)
    x = x_of(B=1)
    yb, hb = m(x)
    yu, hu = m(x[:, 0])
    np.testing.assert_array_equal(yu, yb[:, 0])
    np.testing.assert_array_equal(hu, hb[:, 0])


def test_float64_module_computes_in_float64():
    m = fastrnn.LSTM(3, 4, dtype=np.float64)
    y, (h, c) = m(x_of(dtype=np.float64))
    assert y.dtype == h.dtype == c.dtype == np.float64
    assert all(p.dtype == np.float64 for p in m.params.values())


def test_repr_names_the_configuration():
    r = repr(fastrnn.RNN(3, 4, num_layers=2, nonlinearity="relu"))
    assert "RNN(3, 4, num_layers=2" in r and "relu" in r
    assert f"backend='{fastrnn.backends.default_name()}'" in r


# ------------------------------------------------------------------ state_dict


def test_state_dict_is_a_copy_and_load_checks_everything():
    m = fastrnn.LSTM(3, 4, num_layers=2, proj_size=2, seed=0)
    sd = m.state_dict()
    assert sorted(sd) == sorted(m.params)
    assert sd["weight_hr_l1"].shape == (2, 4) and sd["weight_hh_l1"].shape == (16, 2)
    sd["weight_ih_l0"][:] = 0
    assert m.params["weight_ih_l0"].any()
    m.load_state_dict(sd)
    assert not m.params["weight_ih_l0"].any()

    bad = dict(sd)
    del bad["bias_hh_l1"]
    with pytest.raises(KeyError, match="bias_hh_l1"):
        m.load_state_dict(bad)
    bad = dict(sd, extra=np.zeros(1))
    with pytest.raises(KeyError, match="extra"):
        m.load_state_dict(bad)
    bad = dict(sd, weight_ih_l0=np.zeros((16, 4)))
    with pytest.raises(ValueError, match=r"weight_ih_l0.*\(16, 4\).*\(16, 3\)"):
        m.load_state_dict(bad)
    bad = dict(sd, bias_ih_l0=np.full(16, np.nan))
    with pytest.raises(ValueError, match="bias_ih_l0.*NaN"):
        m.load_state_dict(bad)
    before = m.state_dict()
    with pytest.raises(ValueError):  # nothing is half-loaded when a later entry is bad
        m.load_state_dict(dict(before, weight_ih_l0=np.ones((16, 3)),
                               weight_hr_l1=np.ones((3, 3))))
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kind", list(MODULES))
def test_bad_input_raises_clear_errors(kind):
    m = MODULES[kind]()
    x = x_of()
    with pytest.raises(ValueError, match="x must be 3-d"):
        m(np.zeros((2, 3, 4, 3), np.float32))
    with pytest.raises(ValueError, match="input_size=3"):
        m(np.zeros((5, 2, 7), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64.*float32"):
        m(x.astype(np.float64))
    with pytest.raises(TypeError, match="float array"):
        m(x.astype(np.int32))
    with pytest.raises(ValueError, match="no time steps"):
        m(np.zeros((0, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        m(x, lengths=[5, 5, 5])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        m(x, lengths=[6, 1])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        m(x, lengths=[-1, 1])
    with pytest.raises(TypeError, match="lengths must hold integers"):
        m(x, lengths=[2.5, 1])
    with pytest.raises(ValueError, match="unbatched"):
        m(x[:, 0], lengths=[3])
    bad_h = np.zeros((2, 2, 4), np.float32)
    hx = (bad_h, np.zeros((1, 2, 4), np.float32)) if kind == "lstm" else bad_h
    with pytest.raises(ValueError, match=r"must have shape \(1, 2, 4\)"):
        m(x, hx)
    good_h = np.zeros((1, 2, 4), np.float64)
    hx = (good_h, good_h) if kind == "lstm" else good_h
    with pytest.raises(TypeError, match="dtype float64"):
        m(x, hx)
    y, _ = m(x)
    with pytest.raises(ValueError, match=r"dy must have the shape of y, \(5, 2, 4\)"):
        m.backward(np.ones((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="dh_n must have shape"):
        m.backward(np.ones_like(y), np.ones((1, 3, 4), np.float32))


def test_lstm_hx_must_be_a_pair_and_others_must_not():
    x = x_of()
    with pytest.raises(ValueError, match=r"tuple \(h0, c0\)"):
        fastrnn.LSTM(3, 4)(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="not a tuple"):
        fastrnn.GRU(3, 4)(x, (np.zeros((1, 2, 4), np.float32),) * 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=0, hidden_size=4), "input_size"),
    (dict(input_size=3, hidden_size=-1), "hidden_size"),
    (dict(input_size=3, hidden_size=4, num_layers=0), "num_layers"),
    (dict(input_size=3, hidden_size=4, dropout=1.5), "dropout"),
    (dict(input_size=3, hidden_size=4, proj_size=4), "proj_size must be smaller"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), "dtype"),
    (dict(input_size=3, hidden_size=4, backend="nope"), "unknown backend 'nope'"),
    (dict(input_size=3, hidden_size=4, bias="False"), "bias must be True or False"),
    (dict(input_size=3, hidden_size=4, batch_first=1), "batch_first must be True or False"),
    (dict(input_size=3, hidden_size=4, bidirectional="yes"), "bidirectional must be True"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastrnn.LSTM(**kwargs)


def test_other_bad_constructor_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size is only supported by LSTM"):
        RNNBase("gru", 3, 4, proj_size=2)
    with pytest.warns(UserWarning, match="num_layers=1"):
        fastrnn.GRU(3, 4, dropout=0.5)
