"""The model API: layer and loss gradients (finite differences), optimisers and schedules
(against torch.optim when torch is installed), clipping, initialisers and the Recurrent layer."""

import math

import numpy as np
import pytest

from fastrnn import nn, optim

RNG = np.random.default_rng(0)


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        up = f()
        x[idx] = old - eps
        down = f()
        x[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def check_module(module, x, extra_inputs=(), rtol=1e-6, atol=1e-8):
    """Analytic input and parameter gradients of sum(y * w) against finite differences."""
    module.train()
    y = module(x, *extra_inputs)
    w = RNG.standard_normal(y.shape)

    def loss():
        return float(np.sum(module(x, *extra_inputs) * w))

    module.zero_grad()
    module(x, *extra_inputs)
    dx = module.backward(w)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=rtol, atol=atol)
    for name, p, g in module.named_parameters():
        np.testing.assert_allclose(g, numeric_grad(loss, p), rtol=rtol, atol=atol,
                                   err_msg=name)


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Linear(4, 3, dtype=np.float64, seed=1), (2, 5, 4)),
    (lambda: nn.LayerNorm(6, dtype=np.float64), (3, 6)),
    (lambda: nn.Tanh(), (3, 4)),
    (lambda: nn.Sigmoid(), (3, 4)),
    (lambda: nn.ReLU(), (3, 4)),
    (lambda: nn.Sequential(nn.Linear(4, 8, dtype=np.float64, seed=0), nn.Tanh(),
                           nn.LayerNorm(8, dtype=np.float64),
                           nn.Linear(8, 2, dtype=np.float64, seed=1)), (5, 4)),
])
def test_layer_gradients(make, shape):
    x = RNG.standard_normal(shape) + 0.05  # relu's kink avoided with probability 1
    check_module(make(), x)


def test_embedding_gradient_accumulates_repeated_ids():
    emb = nn.Embedding(5, 3, dtype=np.float64, seed=0)
    ids = np.array([[0, 2, 2], [4, 0, 1]])
    check_module(emb, ids)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([0.5]))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("output", ["sequence", "last"])
def test_recurrent_layer_gradients(cell, output):
    layer = nn.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, output=output,
                         dtype=np.float64, seed=0)
    x = RNG.standard_normal((2, 5, 3))
    check_module(layer, x, extra_inputs=([5, 3],))


def test_dropout_masks_in_training_only():
    d = nn.Dropout(0.5, seed=0)
    x = np.ones((1000,), np.float32)
    y = d(x)
    assert set(np.unique(y)) == {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)
    d.eval()
    assert d(x) is x


def test_stateful_recurrent_carries_state_between_batches():
    layer = nn.Recurrent("gru", 2, 3, stateful=True, seed=0)
    x = RNG.standard_normal((2, 6, 2)).astype(np.float32)
    whole = layer(x)
    layer.reset_state()
    first, second = layer(x[:, :3]), layer(x[:, 3:])
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-5,
                               atol=1e-6)
    layer(x[:1])  # another batch size starts afresh
    layer.reset_state()
    assert layer.state is None


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_finite_differences(reduction):
    logits = RNG.standard_normal((3, 4, 5))
    target = RNG.integers(0, 5, (3, 4))
    target[0, 1] = -100
    for loss, pred, tgt in [
        (nn.CrossEntropyLoss(reduction=reduction), logits, target),
        (nn.MSELoss(reduction), RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))),
        (nn.BCEWithLogitsLoss(reduction), 5 * RNG.standard_normal((4, 3)),
         RNG.integers(0, 2, (4, 3)).astype(float)),
    ]:
        value = loss(pred, tgt)
        w = RNG.standard_normal(np.shape(value)) if reduction == "none" else 1.0
        grad = loss.backward()
        if reduction == "none":
            # the gradient of sum(w * losses) is w broadcast into backward's per-element form
            grad = grad * (w[..., None] if isinstance(loss, nn.CrossEntropyLoss) else w)

        def f(loss=loss, pred=pred, tgt=tgt, w=w):
            return float(np.sum(w * loss(pred, tgt)))

        np.testing.assert_allclose(grad, numeric_grad(f, pred), rtol=1e-6, atol=1e-8,
                                   err_msg=type(loss).__name__)
    ce = nn.CrossEntropyLoss()
    assert ce(np.zeros((2, 4)), np.array([1, 3])) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="disagree"):
        ce(np.zeros((2, 4)), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ce(np.zeros((2, 4)), np.array([1, 7]))


def test_initialisers():
    rng = np.random.default_rng(0)
    q = nn.init.orthogonal((6, 4), rng, dtype=np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-12)
    q = nn.init.orthogonal((3, 7), rng, dtype=np.float64)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    x = nn.init.xavier_uniform((300, 200), rng)
    assert abs(x.std() - math.sqrt(2 / 500)) < 0.01 * math.sqrt(2 / 500) * 10
    k = nn.init.kaiming_uniform((300, 200), rng)
    assert abs(k.std() - math.sqrt(2 / 200)) < 0.1 * math.sqrt(2 / 200)


def test_clipping():
    m = nn.Linear(3, 2, dtype=np.float64, seed=0)
    m.grads["weight"][:] = 3.0
    m.grads["bias"][:] = 4.0
    norm = optim.clip_grad_norm(m, 1.0)
    assert norm == pytest.approx(math.sqrt(6 * 9 + 2 * 16))
    total = math.sqrt(sum(float((g ** 2).sum()) for _, _, g in m.named_parameters()))
    assert total == pytest.approx(1.0, rel=1e-5)
    m.grads["weight"][:] = -7
    optim.clip_grad_value(m, 0.5)
    assert m.grads["weight"].min() == -0.5


def test_schedules():
    m = nn.Linear(2, 2)
    o = optim.SGD(m, lr=1.0)
    s = optim.StepLR(o, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        s.step()
        lrs.append(o.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]
    o.lr = 1.0
    c = optim.CosineAnnealingLR(o, T_max=4, eta_min=0.0)
    for _ in range(4):
        c.step()
    assert o.lr == pytest.approx(0.0, abs=1e-12)
    o.lr = 1.0
    e = optim.ExponentialLR(o, 0.9)
    e.step()
    e.step()
    assert o.lr == pytest.approx(0.81)
    o.lr = 1.0
    p = optim.ReduceLROnPlateau(o, factor=0.5, patience=1)
    for metric in (1.0, 0.9, 0.95, 0.95, 0.95):
        p.step(metric)
    assert o.lr == 0.5
    with pytest.raises(ValueError, match="metric"):
        p.step()


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name,ours,theirs", [
    ("sgd", lambda m: optim.SGD(m, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("sgd-plain", lambda m: optim.SGD(m, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    ("rmsprop", lambda m: optim.RMSprop(m, lr=0.01, momentum=0.5, weight_decay=0.01),
     lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, weight_decay=0.01)),
    ("adam", lambda m: optim.Adam(m, lr=0.01, weight_decay=0.01),
     lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01)),
    ("adamw", lambda m: optim.AdamW(m, lr=0.01, weight_decay=0.1),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
])
def test_optimisers_match_torch(name, ours, theirs):
    m = nn.Linear(3, 2, dtype=np.float64, seed=0)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for _, p, _ in m.named_parameters()]
    o, to = ours(m), theirs(tparams)
    rng = np.random.default_rng(1)
    for _ in range(6):
        for (_, _, g), tp in zip(m.named_parameters(), tparams, strict=True):
            g[...] = rng.standard_normal(g.shape)
            tp.grad = torch.tensor(g.copy())
        o.step()
        to.step()
        o.zero_grad()
    for (_, p, _), tp in zip(m.named_parameters(), tparams, strict=True):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("shape", [(7, 5, 3), (301, 77, 130)])  # small; split over the cores
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_api_products_split_over_the_cores_and_equal_numpy(dtype, shape):
    from fastrnn.linalg import matmul

    M, K, N = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for ta, tb in ((False, False), (True, False), (False, True), (True, True)):
        x = np.ascontiguousarray(a.T) if ta else a
        y = np.ascontiguousarray(b.T) if tb else b
        out = matmul(x, y, trans_a=ta, trans_b=tb)
        assert out.dtype == dtype and out.flags.c_contiguous
        np.testing.assert_allclose(out, a @ b, rtol=tol, atol=tol)
    np.testing.assert_array_equal(matmul(a.astype(np.int64), b.astype(np.int64)),
                                  a.astype(np.int64) @ b.astype(np.int64))
    np.testing.assert_allclose(matmul(a[:, ::2], b[::2]), a[:, ::2] @ b[::2], rtol=tol,
                               atol=tol)


@pytest.mark.parametrize("make,x", [
    (lambda: nn.Linear(4, 3, seed=1), np.ones((2, 4), np.float32)),
    (lambda: nn.LayerNorm(4), np.arange(8, dtype=np.float32).reshape(2, 4)),
    (lambda: nn.Embedding(5, 3, seed=0), np.array([[1, 2, 1]])),
    (lambda: nn.Recurrent("gru", 4, 3, seed=0), np.ones((2, 3, 4), np.float32)),
    (lambda: nn.Sequential(nn.Linear(4, 3, seed=1), nn.Tanh()), np.ones((2, 4), np.float32)),
])
def test_a_second_backward_of_one_forward_raises_instead_of_doubling(make, x):
    module = make()
    y = module(x)
    module.backward(np.ones_like(y))
    grads = {name: g.copy() for name, _, g in module.named_parameters()}
    with pytest.raises(RuntimeError, match="once per forward|already called"):
        module.backward(np.ones_like(y))
    for name, _, g in module.named_parameters():
        np.testing.assert_array_equal(g, grads[name])


def test_recurrent_refuses_a_2d_batch_it_would_read_as_one_sequence():
    layer = nn.Recurrent("lstm", 4, 3)
    with pytest.raises(ValueError, match=r"\(batch, time, features\), got shape \(2, 4\)"):
        layer(np.ones((2, 4), np.float32))


@pytest.mark.parametrize("output", ["sequence", "last"])
def test_recurrent_takes_an_initial_state_and_returns_its_gradient(output):
    """Recurrent.forward(x, hx=...) equals the stack with that h0, and dhx after backward
    matches finite differences (float64)."""
    layer = nn.Recurrent("lstm", 3, 4, 2, output=output, dtype=np.float64, seed=0)
    x = RNG.standard_normal((2, 5, 3))
    h0, c0 = RNG.standard_normal((2, 2, 4)), RNG.standard_normal((2, 2, 4))
    y = layer(x, hx=(h0, c0))
    w = RNG.standard_normal(y.shape)
    layer.backward(w)
    dh0, dc0 = layer.dhx

    def loss():
        return float(np.sum(layer(x, hx=(h0, c0)) * w))

    np.testing.assert_allclose(dh0, numeric_grad(loss, h0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dc0, numeric_grad(loss, c0), rtol=1e-6, atol=1e-8)
    layer(x)
    layer.backward(w)
    assert layer.dhx is None


def test_linear_starts_as_torch_nn_linear_does():
    """init_="torch" (the default): weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))."""
    layer = nn.Linear(400, 300, seed=0)
    bound = 1 / math.sqrt(400)
    for p in (layer.params["weight"], layer.params["bias"]):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.95 * bound
    assert abs(layer.params["weight"].std() - bound / math.sqrt(3)) < 0.01 * bound
    assert not nn.Linear(4, 3, init_="xavier", seed=0).params["bias"].any()
