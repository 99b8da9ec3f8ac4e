"""Re-entrancy: the stack keeps no state, modules keep one tape per thread, a tape serves one
backward, and the torch adapter keeps nothing for backward when autograd will not ask."""

import threading
import time

import numpy as np
import pytest

import fastrnn
from fastrnn import backends, cells, stack

BACKENDS = [name for name, (ok, _) in backends.available().items()
            if ok and not backends.get(name).device_arrays]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_module_shared_by_four_threads_gives_each_its_own_gradients(backend):
    m = fastrnn.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=np.float64,
                     backend=backend, seed=0)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((6, 2, 3)) for _ in range(4)]
    dys = [rng.standard_normal((6, 2, 10)) for _ in range(4)]
    alone = []
    for x, dy in zip(xs, dys, strict=True):  # each thread's answer, computed alone
        m.zero_grad()
        m(x)
        dx, _ = m.backward(dy)
        alone.append((dx, {k: g.copy() for k, g in m.grads.items()}))
    m.zero_grad()
    rounds, results, errors = 10, [[] for _ in xs], []
    barrier = threading.Barrier(len(xs))

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                m(xs[i])
                time.sleep(0.001)  # let the other threads run their forwards in between
                results[i].append(m.backward(dys[i])[0])
        except Exception as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (dx, _) in enumerate(alone):
        for got in results[i]:
            np.testing.assert_allclose(got, dx, rtol=1e-12, atol=1e-14)
    for name, grad in m.grads.items():  # every backward accumulated exactly once
        expected = rounds * sum(g[name] for _, g in alone)
        np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "layernorm_lstm"])
def test_results_outlive_the_next_calls_buffers(monkeypatch, backend, cell):
    """A call's temporaries may live in this thread's scratch buffers (Products.scratch),
    which the next call overwrites: nothing a call returns may be one of them (ragged and
    not, forward and backward, two layers, one part and several)."""
    driver = getattr(backends.get(backend).module, "driver", None)
    rng = np.random.default_rng(0)

    def arrays(out):  # (y, h_n) or (y, (h_n, c_n)), (dx, dh0) or (dx, (dh0, dc0))
        return [out[0], *(out[1] if isinstance(out[1], tuple) else (out[1],))]

    cases = [(3, None), (3, np.array([5, 2, 4])), (8, rng.integers(1, 6, 8))]
    for parts, (B, lengths) in [(p, c) for p in (False, True) for c in cases]:
        if parts and driver is not None:  # parts at these small sizes
            monkeypatch.setattr(driver, "min_part_rows", 2)
            monkeypatch.setattr(driver, "min_part_work", 0)
            monkeypatch.setattr("fastrnn.parallel.cores", lambda: 2)
        m, ref = (fastrnn.RNNBase(cell, 7, 9, num_layers=2, dtype=np.float64, backend=name,
                                  seed=0) for name in (backend, "reference"))
        x, dy = rng.standard_normal((5, B, 7)), rng.standard_normal((5, B, 9))
        results = arrays(m(x, lengths=lengths)) + arrays(m.backward(dy))
        kept = [a.copy() for a in results]
        expected = arrays(ref(x, lengths=lengths)) + arrays(ref.backward(dy))
        for got, want in zip(kept, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        grads = dict(m.grads)
        m.zero_grad()
        m(rng.standard_normal((5, B, 7)) * 3, lengths=lengths)
        m.backward(rng.standard_normal((5, B, 9)) * 3)
        for before, now in zip(kept, results, strict=True):
            np.testing.assert_array_equal(now, before)
        assert all(g is grads[k] for k, g in m.grads.items())  # accumulated in place


def test_a_second_backward_through_one_forward_raises_and_adds_nothing():
    m = fastrnn.GRU(3, 4, seed=0)
    y, _ = m(np.ones((5, 2, 3), np.float32))
    m.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in m.grads.items()}
    with pytest.raises(RuntimeError, match="already called for the last forward"):
        m.backward(np.ones_like(y))
    for k, g in m.grads.items():
        np.testing.assert_array_equal(g, once[k])


def test_a_rejected_backward_leaves_the_tape_for_a_correct_one():
    m = fastrnn.RNN(3, 4, seed=0)
    y, _ = m(np.ones((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="dy must have the shape of y"):
        m.backward(np.ones((5, 2, 3), np.float32))
    m.backward(np.ones_like(y))  # the tape is still there


def test_a_thread_without_a_forward_cannot_use_another_threads_tape():
    m = fastrnn.LSTM(3, 4, seed=0)
    y, _ = m(np.ones((5, 2, 3), np.float32))
    caught = []

    def other() -> None:
        try:
            m.backward(np.ones_like(y))
        except RuntimeError as exc:
            caught.append(str(exc))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert caught and "same thread" in caught[0]
    m.backward(np.ones_like(y))  # this thread's tape is untouched


def test_the_stack_keeps_nothing_between_calls():
    spec = stack.StackSpec(cells.get("gru"), 3, 4, num_layers=2)
    rng = np.random.default_rng(0)
    params = {name: rng.uniform(-0.5, 0.5, shape) for name, shape in spec.parameters()}
    be = backends.get("reference")
    x1, x2 = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    h0 = (np.zeros((2, 2, 4)),)
    y1, _, tape1 = stack.forward(spec, params, x1, h0, None, backend=be, save=True)
    _, _, tape2 = stack.forward(spec, params, x2, h0, None, backend=be, save=True)
    dy = np.ones_like(y1)
    dx_a = stack.backward(tape1, dy, (np.zeros((2, 2, 4)),))[0]
    stack.backward(tape2, dy, (np.zeros((2, 2, 4)),))
    dx_b = stack.backward(tape1, dy, (np.zeros((2, 2, 4)),))[0]  # tapes are plain values
    np.testing.assert_array_equal(dx_a, dx_b)
    assert stack.forward(spec, params, x1, h0, None, backend=be, save=False)[2] is None


def test_unknown_cells_are_refused_with_the_known_ones():
    with pytest.raises(ValueError,
                       match=r"cell must be one of \['gru', 'jordan_relu_identity', .* "
                             r"'rnn_tanh'\] or an alias of one \(rnn: rnn_tanh, jordan: "):
        cells.get("transformer")
    with pytest.raises(ValueError, match="unknown mode"):
        cells.by_torch_mode("QRNN")
    assert cells.get("rnn") is cells.get("rnn_tanh")


# ------------------------------------------------------------------ the torch adapter


@pytest.fixture
def recorded(monkeypatch):
    """Every stack.forward the adapter makes: its `save` flag and whether a tape came back."""
    torch = pytest.importorskip("torch")
    seen = []
    real = stack.forward

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append((kwargs["save"], out[2] is not None))
        return out

    monkeypatch.setattr(stack, "forward", spy)
    return torch, seen


def test_adapter_inference_under_no_grad_keeps_no_tape(recorded):
    torch, seen = recorded
    import fastrnn.torch as ft

    m = ft.LSTM(8, 16, num_layers=2)
    x = torch.randn(5, 3, 8)
    with torch.no_grad():
        y1, _ = m(x)
    with torch.inference_mode():
        y2, _ = m(x)
    m.eval()
    with torch.no_grad():
        y3, _ = m(x)
    assert seen == [(False, False)] * 3
    assert not y1.requires_grad and not y2.requires_grad
    torch.testing.assert_close(y1, y3)  # dropout is 0: train and eval agree
    y4, _ = m(x)  # grad mode on, parameters require grad: a tape, and backward works
    assert seen[-1] == (True, True)
    y4.sum().backward()
    assert m.weight_hh_l1.grad is not None


def test_adapter_keeps_no_tape_when_nothing_requires_grad(recorded):
    torch, seen = recorded
    import fastrnn.torch as ft

    m = ft.GRU(4, 6).requires_grad_(False)
    y, _ = m(torch.randn(3, 2, 4))
    assert seen == [(False, False)] and not y.requires_grad
    m(torch.randn(3, 2, 4, requires_grad=True))[0].sum().backward()
    assert seen[-1] == (True, True)


def test_adapter_modules_share_nothing_across_threads():
    torch = pytest.importorskip("torch")
    import fastrnn.torch as ft

    torch.manual_seed(0)
    m = ft.GRU(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    xs = [torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    alone = []
    for x in xs:
        (g,) = torch.autograd.grad((m(x)[0] ** 2).sum(), x)
        alone.append(g)
    got = [None] * len(xs)
    barrier = threading.Barrier(len(xs))

    def worker(i: int) -> None:
        barrier.wait()
        y, _ = m(xs[i])
        time.sleep(0.001)
        got[i] = torch.autograd.grad((y ** 2).sum(), xs[i])[0]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, a in zip(got, alone, strict=True):
        torch.testing.assert_close(g, a, rtol=1e-12, atol=1e-14)
