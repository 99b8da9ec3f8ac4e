"""nn.Attention (additive, dot, general) against central finite differences in float64:
several decoder steps over one source, masked (ragged) positions, gradients of the queries,
the keys and every parameter within 1e-6 relative."""

import numpy as np
import pytest

from fastrnn import nn

from .test_model_api import numeric_grad


def problem(kind, seed=0):
    rng = np.random.default_rng(seed)
    B, S, Q, K, steps = 3, 5, 4, 4, 3
    att = nn.Attention(Q, K, kind, attn_size=6, dtype=np.float64, seed=seed)
    keys = rng.standard_normal((B, S, K))
    mask = np.arange(S)[None, :] < np.array([5, 2, 4])[:, None]
    queries = rng.standard_normal((steps, B, Q))
    r = rng.standard_normal((steps, B, K))
    u = rng.standard_normal((steps, B, S))
    return att, keys, mask, queries, r, u


def loss(att, keys, mask, queries, r, u):
    att.keys(keys, mask)
    total = 0.0
    for t in range(len(queries)):
        context, weights = att(queries[t])
        total += float((context * r[t]).sum() + (weights * u[t]).sum())
    att._tape.clear()
    return total


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_gradients_match_finite_differences(kind):
    att, keys, mask, queries, r, u = problem(kind)
    att.keys(keys, mask)
    d_queries = np.zeros_like(queries)
    outs = [att(queries[t]) for t in range(len(queries))]
    for t in reversed(range(len(queries))):
        d_queries[t] = att.backward(r[t], u[t])
    d_keys = att.keys_backward()
    assert att.recorded_steps == 0
    np.testing.assert_array_equal(outs[0][1][1, 2:], 0)  # masked positions get no weight
    np.testing.assert_allclose(outs[0][1].sum(axis=1), 1)

    def f():
        return loss(att, keys, mask, queries, r, u)

    np.testing.assert_allclose(d_queries, numeric_grad(f, queries), rtol=1e-6, atol=1e-9)
    want_keys = numeric_grad(f, keys)
    np.testing.assert_allclose(d_keys, want_keys, rtol=1e-6, atol=1e-9)
    assert np.all(want_keys[1, 2:] == 0)
    for name, p in att.params.items():
        np.testing.assert_allclose(att.grads[name], numeric_grad(f, p), rtol=1e-6, atol=1e-9,
                                   err_msg=name)


def test_attention_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        nn.Attention(3, 3, "cosine")
    with pytest.raises(ValueError, match="dot attention needs"):
        nn.Attention(3, 4, "dot")
    att = nn.Attention(3, 4)
    with pytest.raises(RuntimeError, match="keys"):
        att(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"keys must have shape \(B, S, 4\)"):
        att.keys(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="at least one real position"):
        att.keys(np.ones((2, 5, 4)), np.zeros((2, 5), bool))
    att.keys(np.ones((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"query must have shape \(2, 3\)"):
        att(np.ones((3, 3)))
    with pytest.raises(RuntimeError, match="no recorded step"):
        att.backward(np.ones((2, 4)))
