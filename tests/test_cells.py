"""Single-step cells: fastrnn.RNNCell / LSTMCell / GRUCell / LayerNorm*Cell (NumPy) and
fastrnn.torch's cells, against torch.nn's cells and against the layers over T steps.

Tolerances: float64, rtol 1e-10 against torch.nn's cells and against the layer kernels.
"""

import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import backends

BACKENDS = [name for name, (ok, _) in backends.available().items() if ok]
#: NumPy cell class -> (the layer's cell name, constructor extras)
CELLS = {"RNNCell": ("rnn_tanh", {}), "RNNCell-relu": ("rnn_relu", {"nonlinearity": "relu"}),
         "LSTMCell": ("lstm", {}), "GRUCell": ("gru", {}),
         "LayerNormLSTMCell": ("layernorm_lstm", {}), "LayerNormGRUCell": ("layernorm_gru", {})}


def make_cell(kind, I, H, backend, bias=True, seed=0):
    cls = getattr(fastrnn, kind.split("-")[0])
    cell = cls(I, H, bias, **CELLS[kind][1], dtype=np.float64, backend=backend, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name, p in cell.params.items():  # gains and shifts away from 1 and 0 too
        if name.startswith("ln_"):
            p += rng.uniform(-0.5, 0.5, p.shape)
    return cell


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_a_loop_of_cell_steps_equals_the_layer_through_bptt(kind, backend, bias):
    """T steps of the cell = the layer over T steps: outputs, final state, and through the
    tape (backward newest step first) dx, dh0 (dc0) and every parameter's gradient."""
    T, B, I, H = 5, 3, 4, 6
    cell = make_cell(kind, I, H, backend, bias)
    layer = fastrnn.RNNBase(CELLS[kind][0], I, H, bias=bias, dtype=np.float64,
                            backend=backend)
    layer.load_state_dict({f"{n}_l0": p for n, p in cell.params.items()})
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I))
    has_c = "c" in cell.spec.cell.states
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H))
    y, states = layer(x, (h0[None], c0[None]) if has_c else h0[None])
    state = (h0, c0) if has_c else h0
    ys = []
    for t in range(T):
        state = cell(x[t], state)
        ys.append(state[0] if has_c else state)
    np.testing.assert_allclose(np.stack(ys), y, rtol=1e-10, atol=1e-12)
    h_n = states[0] if has_c else states
    np.testing.assert_allclose(ys[-1], h_n[0], rtol=1e-10, atol=1e-12)
    assert cell.recorded_steps == T

    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H))
    dx_layer, dstates = layer.backward(dy, (dh_n[None], dc_n[None]) if has_c else dh_n[None])
    dh, dc = dh_n, dc_n
    dxs = [None] * T
    for t in reversed(range(T)):
        dxs[t], dstate = cell.backward(dh + dy[t], dc if has_c else None)
        dh, dc = dstate if has_c else (dstate, None)
    assert cell.recorded_steps == 0
    np.testing.assert_allclose(np.stack(dxs), dx_layer, rtol=1e-10, atol=1e-12)
    dh0_layer = dstates[0] if has_c else dstates
    np.testing.assert_allclose(dh, dh0_layer[0], rtol=1e-10, atol=1e-12)
    if has_c:
        np.testing.assert_allclose(dc, dstates[1][0], rtol=1e-10, atol=1e-12)
    for name, g in cell.grads.items():
        np.testing.assert_allclose(g, layer.grads[f"{name}_l0"], rtol=1e-10, atol=1e-12,
                                   err_msg=name)


def test_tape_rules():
    cell = fastrnn.GRUCell(3, 4, seed=0, dtype=np.float64)
    with pytest.raises(RuntimeError, match="no recorded step"):
        cell.backward(np.zeros((2, 4)))
    h = cell(np.ones((2, 3)))
    cell(np.ones((2, 3)), h)
    assert cell.recorded_steps == 2
    with pytest.raises(ValueError, match=r"dh must have shape \(2, 4\)"):
        cell.backward(np.zeros((3, 4)))
    assert cell.recorded_steps == 2  # a refused backward consumes nothing
    cell.reset_tape()
    assert cell.recorded_steps == 0
    cell.eval()
    cell(np.ones(3))
    assert cell.recorded_steps == 0  # nothing recorded in eval mode
    cell.train()
    seen = []

    def other_thread():  # each thread has its own tape
        seen.append(cell.recorded_steps)

    cell(np.ones(3))
    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert seen == [0] and cell.recorded_steps == 1
    dx, dh = cell.backward(np.ones(4))  # unbatched in, unbatched out
    assert dx.shape == (3,) and dh.shape == (4,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["LSTMCell", "LayerNormGRUCell"])
def test_deferred_weight_gradients_are_there_whenever_grads_are_read(kind, backend):
    """The CPU backends defer a step's weight gradients (rnn_cell's docstring); ``grads`` holds
    every finished backward's all the same: read between backward calls, after zero_grad
    (which drops what was deferred), at reset_tape, and across a switch of backend (a step
    recorded before it runs backward on its own backend). The reference backend, which
    defers nothing, runs the same calls."""
    B, I, H = 3, 4, 5
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((6, B, I))
    dhs = rng.standard_normal((6, B, H))
    cells = [make_cell(kind, I, H, name) for name in (backend, "reference")]

    def steps(cell, n):
        state = None
        for t in range(n):
            state = cell(xs[t], state)

    def back(cell, t):
        return cell.backward(dhs[t], dhs[t] if kind == "LSTMCell" else None)

    def same():
        for name, g in cells[1].grads.items():
            np.testing.assert_allclose(cells[0].grads[name], g, rtol=1e-10, atol=1e-12,
                                       err_msg=name)
        assert any(np.any(g != 0) for g in cells[0].grads.values())

    for cell in cells:
        steps(cell, 4)
        back(cell, 3)
        back(cell, 2)
    same()  # two of four steps done: read between backward calls
    for cell in cells:
        cell.zero_grad()
        back(cell, 1)
        cell.reset_tape()
    same()  # only the step after zero_grad
    for cell in cells:
        steps(cell, 3)
        back(cell, 2)
    cells[0].backend = "reference"
    same()
    for cell in cells:
        back(cell, 1)
        back(cell, 0)  # the tape runs empty
    same()


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_sharing_a_cell_add_up_their_decoders(backend):
    """Four threads run the same decoder on one cell at once (each its own tape; the deferred
    gradients shared): grads = 4 x one decoder's."""
    T, B, I, H = 6, 2, 3, 4
    rng = np.random.default_rng(5)
    xs, dys = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    cell = make_cell("LSTMCell", I, H, backend)

    def decoder():
        state = None
        for t in range(T):
            state = cell(xs[t], state)
        dh = dc = np.zeros((B, H))
        for t in reversed(range(T)):
            _, (dh, dc) = cell.backward(dh + dys[t], dc)

    decoder()
    once = {name: g.copy() for name, g in cell.grads.items()}
    cell.zero_grad()
    threads = [threading.Thread(target=decoder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, g in cell.grads.items():
        np.testing.assert_allclose(g, 4 * once[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_bad_input_gets_clear_errors():
    cell = fastrnn.LSTMCell(3, 4, dtype=np.float64)
    for args, error, message in [
        ((np.ones((2, 2, 3)),), ValueError, "x must be 2-d"),
        ((np.ones((2, 5)),), ValueError, r"x must have shape \(2, 3\)"),
        ((np.ones((2, 3), np.float32),), TypeError, "x has dtype float32"),
        ((np.ones((2, 3)), np.ones((2, 4))), ValueError, "must be a tuple"),
        ((np.ones((2, 3)), (np.ones((2, 4)), np.ones((3, 4)))), ValueError,
         r"c must have shape \(2, 4\)"),
    ]:
        with pytest.raises(error, match=message):
            cell(*args)
    with pytest.raises(ValueError, match="nonlinearity"):
        fastrnn.RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dc is only defined"):
        gru = fastrnn.GRUCell(3, 4, dtype=np.float64)
        gru(np.ones((1, 3)))
        gru.backward(np.ones((1, 4)), np.ones((1, 4)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replaced_parameter_is_checked_and_taken_in_any_order(backend):
    """cell.params[name] = another array: a wrong dtype or shape raises, naming it; an array
    not in C order gives what its C-order copy gives, in-place updates to it included."""
    cell = fastrnn.GRUCell(3, 4, dtype=np.float64, backend=backend, seed=0)
    cell.eval()
    x = np.random.default_rng(0).standard_normal((2, 3))
    w = cell.params["weight_hh"].copy()
    for bad, shown in [(w.astype(np.float32), r"float32 \(12, 4\)"), (w[:6], r"float64 \(6, 4\)"),
                       (w.tolist(), "list")]:
        cell.params["weight_hh"] = bad
        with pytest.raises(ValueError, match=r"params\['weight_hh'\] must be a float64 array "
                                             rf"of shape \(12, 4\), got {shown}"):
            cell(x)
    cell.params["weight_hh"] = w
    want = cell(x)
    cell.params["weight_hh"] = fortran = np.asfortranarray(w)
    np.testing.assert_allclose(cell(x), want, rtol=1e-13)
    fortran *= 0.5
    cell.params["weight_hh"] = w * 0.5
    want = cell(x)
    cell.params["weight_hh"] = fortran
    np.testing.assert_allclose(cell(x), want, rtol=1e-13)


# ---------------------------------------------------------------- against torch.nn


torch = pytest.importorskip("torch")
TORCH = {"RNNCell": ("RNNCell", {}), "RNNCell-relu": ("RNNCell", {"nonlinearity": "relu"}),
         "LSTMCell": ("LSTMCell", {}), "GRUCell": ("GRUCell", {})}


def run(cell, x, hx, has_c, seed):
    """Two steps of a torch-style cell and a loss on both; returns named tensors."""
    g = torch.Generator().manual_seed(seed)
    out1 = cell(x, hx)
    out2 = cell(x * 0.5, out1)
    hs = [*(out1 if has_c else (out1,)), *(out2 if has_c else (out2,))]
    loss = sum((h * torch.randn(h.shape, generator=g, dtype=h.dtype)).sum() for h in hs)
    loss.backward()
    res = {f"out{i}": h for i, h in enumerate(hs)}
    res["x.grad"] = x.grad
    res.update({f"{n}.grad": p.grad for n, p in cell.named_parameters()})
    return res


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(TORCH))
@pytest.mark.parametrize("form", ["batched", "unbatched", "no-hx"])
def test_fastrnn_torch_cells_equal_torch_nn(kind, backend, form):
    import fastrnn.torch as ft

    name, extra = TORCH[kind]
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(3, 5, **extra, dtype=torch.float64)
    torch.manual_seed(0)
    ours = getattr(ft, name)(3, 5, **extra, dtype=torch.float64, backend=backend)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(),
                                                  strict=True))
    has_c = name == "LSTMCell"
    results = []
    for cell in (theirs, ours):
        g = torch.Generator().manual_seed(1)
        lead = () if form == "unbatched" else (4,)
        x = torch.randn(*lead, 3, generator=g, dtype=torch.float64, requires_grad=True)
        h = torch.randn(*lead, 5, generator=g, dtype=torch.float64, requires_grad=True)
        c = torch.randn(*lead, 5, generator=g, dtype=torch.float64, requires_grad=True)
        hx = None if form == "no-hx" else ((h, c) if has_c else h)
        res = run(cell, x, hx, has_c, 2)
        if hx is not None:
            res["h.grad"] = h.grad
            if has_c:
                res["c.grad"] = c.grad
        results.append(res)
    assert results[0].keys() == results[1].keys()
    for key, want in results[0].items():
        got = results[1][key]
        assert got.shape == want.shape and got.dtype == want.dtype, key
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "LayerNormGRUCell"])
@pytest.mark.parametrize("deferred", [True, False])
def test_fastrnn_torch_decoders_give_autograd_what_torch_nn_does(name, backend, deferred,
                                                                 monkeypatch):
    """A decoder's steps hand their weight gradients to autograd once, after the last of them
    ran backward (fastrnn/torch.py's _StepGradients; or step by step where torch cannot say
    which nodes a backward runs): the same gradients as torch.nn's cells (LayerNorm: as the
    NumPy cell) through .backward, torch.autograd.grad, a leaf's hook (called once, as for
    torch.nn), two decoders of one loss, two losses one after the other, retain_graph, an
    optimizer step between decoders, and weights that are not leaves."""
    import fastrnn.torch as ft

    monkeypatch.setattr(ft, "_DEFERRABLE", deferred)

    T, B, I, H = 4, 3, 2, 5
    torch.manual_seed(0)
    ours = getattr(ft, name)(I, H, dtype=torch.float64, backend=backend)
    if name.startswith("LayerNorm"):  # torch has none: the NumPy cell on the same weights
        numpy_cell = make_cell(name, I, H, backend)
        with torch.no_grad():
            for n, p in ours.named_parameters():
                p.copy_(torch.from_numpy(numpy_cell.params[n]))
    has_c = name == "LSTMCell"
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(2, T, B, I, generator=g, dtype=torch.float64)
    dys = torch.randn(2, T, B, H, generator=g, dtype=torch.float64)

    def decoder(cell, k, weights=None):
        state, loss = None, 0
        for t in range(T):
            if weights is None:
                state = cell(xs[k, t], state)
            else:
                state = torch.func.functional_call(cell, weights, (xs[k, t], state))
            loss = loss + ((state[0] if has_c else state) * dys[k, t]).sum()
        return loss

    def expected(k):  # the weights' gradients of decoder k
        if name.startswith("LayerNorm"):
            numpy_cell.zero_grad()
            state = None
            for t in range(T):
                state = numpy_cell(xs[k, t].numpy(), state)
            dh = np.zeros((B, H))
            for t in reversed(range(T)):
                _, dh = numpy_cell.backward(dh + dys[k, t].numpy())
            return {n: torch.from_numpy(numpy_cell.grads[n].copy())
                    for n, _ in ours.named_parameters()}
        torch.manual_seed(0)
        theirs = getattr(torch.nn, name)(I, H, dtype=torch.float64)
        theirs.load_state_dict(ours.state_dict())
        decoder(theirs, k).backward()
        return {n: p.grad for n, p in theirs.named_parameters()}

    def check(got, want, scale=1.0):
        for n in want:
            np.testing.assert_allclose(got[n].detach().numpy(), scale * want[n].numpy(),
                                       rtol=1e-10, atol=1e-12, err_msg=n)

    want0, want1 = expected(0), expected(1)
    calls = []
    ours.weight_hh.register_hook(lambda grad: calls.append(grad.clone()))
    decoder(ours, 0).backward()
    check({n: p.grad for n, p in ours.named_parameters()}, want0)
    assert len(calls) == 1
    ours.zero_grad()
    (decoder(ours, 0) + decoder(ours, 1)).backward()  # two decoders, one loss
    check({n: p.grad + 0 for n, p in ours.named_parameters()},
          {n: want0[n] + want1[n] for n in want0})
    ours.zero_grad()
    loss0, loss1 = decoder(ours, 0), decoder(ours, 1)
    loss0.backward()
    loss1.backward(retain_graph=True)  # two losses one after the other, one retained
    loss1.backward()
    check({n: p.grad for n, p in ours.named_parameters()},
          {n: want0[n] + 2 * want1[n] for n in want0})
    names = [n for n, _ in ours.named_parameters()]
    grads = torch.autograd.grad(decoder(ours, 1), list(ours.parameters()))
    check(dict(zip(names, grads, strict=True)), want1)
    base = {n: p.detach().clone().requires_grad_(True) for n, p in ours.named_parameters()}
    scaled = {n: 1.0 * p for n, p in base.items()}  # not leaves
    decoder(ours, 0, scaled).backward()
    check({n: p.grad for n, p in base.items()}, want0)
    x = xs[0, 0].clone().requires_grad_(True)  # only x's gradient: no weight rows wait
    (dx,) = torch.autograd.grad((ours(x)[0] if has_c else ours(x)).sum(), [x])
    assert dx.shape == x.shape
    assert all(not any(store.rows) for store, _ in ft._STEP_GRADIENTS.get(ours, {}).values())
    with torch.no_grad():  # an in-place update (optimizer.step()) between decoders
        for p in ours.parameters():
            p.mul_(0.5)
    ours.zero_grad()
    decoder(ours, 0).backward()
    assert not torch.allclose(ours.weight_hh.grad, want0["weight_hh"])


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_fastrnn_torch_cells_raise_what_torch_raises(name):
    import fastrnn.torch as ft

    theirs, ours = getattr(torch.nn, name)(4, 5), getattr(ft, name)(4, 5)
    has_c = name == "LSTMCell"

    def hx(*shape):
        return (torch.randn(*shape), torch.randn(*shape)) if has_c else torch.randn(*shape)

    cases = [
        (torch.randn(2, 2, 4), None),  # 3-d input
        (torch.randn(2, 3), None),  # wrong input size
        (torch.randn(2, 4), hx(3, 5)),  # batch mismatch
        (torch.randn(2, 4), hx(2, 6)),  # wrong hidden size
        (torch.randn(4), hx(2, 5)),  # unbatched input, batched hx
        (torch.randn(2, 4).double(), None),  # dtype differs from the weights
        (torch.randn(2, 4), hx(1, 2, 5)),  # 3-d hx
    ]
    for args in cases:
        with pytest.raises(Exception) as want:
            theirs(*args)
        with pytest.raises(want.type):
            ours(*args)
    with pytest.raises(TypeError):
        torch.nn.RNNCell(4.0, 5)
    with pytest.raises(TypeError):
        ft.RNNCell(4.0, 5)
    bad_theirs, bad_ours = torch.nn.RNNCell(4, 5, nonlinearity="x"), ft.RNNCell(4, 5,
                                                                                nonlinearity="x")
    for cell in (bad_theirs, bad_ours):
        with pytest.raises(RuntimeError, match="Unknown nonlinearity: x"):
            cell(torch.randn(2, 4))


def test_patch_swaps_the_cells_too():
    import fastrnn.torch as ft

    with ft.patch():
        assert torch.nn.LSTMCell is ft.LSTMCell and torch.nn.GRUCell is ft.GRUCell
        assert isinstance(torch.nn.RNNCell(2, 3), ft.RNNCell)
    assert torch.nn.LSTMCell is not ft.LSTMCell


def test_fastrnn_torch_cells_see_every_change_of_their_weights():
    """The cells keep NumPy views of their weights between steps: an in-place update, a
    weight given new storage (``param.data = ...``) or a transposed view of its memory, a deep
    copy and a dtype change must all show in the next step as they do in torch.nn's cell."""
    import copy

    import fastrnn.torch as ft

    torch.manual_seed(0)
    ours, theirs = ft.LSTMCell(3, 4, dtype=torch.float64), torch.nn.LSTMCell(
        3, 4, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, dtype=torch.float64)

    def same():
        with torch.no_grad():
            for a, b in zip(ours(x), theirs(x), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    same()
    with torch.no_grad():
        for m in (ours, theirs):
            m.weight_hh.mul_(1.5)  # in place: as an optimizer step
    same()
    new = torch.randn(16, 3, dtype=torch.float64)
    ours.weight_ih.data, theirs.weight_ih.data = new.clone(), new.clone()  # new storage
    same()
    ours_rnn, theirs_rnn = ft.RNNCell(4, 4, dtype=torch.float64), torch.nn.RNNCell(
        4, 4, dtype=torch.float64)
    theirs_rnn.load_state_dict(ours_rnn.state_dict())
    x4 = torch.randn(2, 4, dtype=torch.float64)
    with torch.no_grad():
        ours_rnn(x4)
        for m in (ours_rnn, theirs_rnn):  # the same memory, transposed (not C order)
            m.weight_hh.data = m.weight_hh.data.t()
        torch.testing.assert_close(ours_rnn(x4), theirs_rnn(x4), rtol=1e-12, atol=1e-12)
        for m in (ours_rnn, theirs_rnn):
            m.weight_hh.mul_(0.5)
        torch.testing.assert_close(ours_rnn(x4), theirs_rnn(x4), rtol=1e-12, atol=1e-12)
    for m in (ours_rnn, theirs_rnn):  # and its gradient, in training
        m(x4, m(x4)).sum().backward()
    torch.testing.assert_close(ours_rnn.weight_hh.grad, theirs_rnn.weight_hh.grad, rtol=1e-10,
                               atol=1e-12)
    ours, theirs = copy.deepcopy(ours), copy.deepcopy(theirs)
    with torch.no_grad():
        ours.bias_ih.add_(1.0)
        theirs.bias_ih.add_(1.0)
    same()
    ours, theirs, x = ours.float(), theirs.float(), x.float()
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_layernorm_cells_in_torch_equal_the_numpy_cells():
    import fastrnn.torch as ft

    for name in ("LayerNormLSTMCell", "LayerNormGRUCell"):
        torch.manual_seed(0)
        ours = getattr(ft, name)(3, 5, dtype=torch.float64)
        ref = getattr(fastrnn, name)(3, 5, dtype=np.float64)
        ref.load_state_dict(ours.state_dict())
        x = np.random.default_rng(0).standard_normal((2, 3))
        out = ours(torch.from_numpy(x))
        want = ref(x)
        got = out[0] if isinstance(out, tuple) else out
        want = want[0] if isinstance(want, tuple) else want
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12)


# ------------------------------------------------------------------ a stack's inference step

STACKS = {"lstm": {}, "gru": {}, "rnn_relu": {}, "layernorm_lstm": {},
          "lstm-proj": {"proj_size": 3}}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(STACKS))
@pytest.mark.parametrize("B", [None, 1, 5, 17])  # None: unbatched; 17 rows: past the in-place
def test_a_stack_step_equals_its_forward_step_by_step(kind, backend, B):
    """RNNBase.step over T steps (3 layers) gives forward's outputs and final states, in
    training mode too (no dropout, nothing recorded); batch_first changes nothing for a step."""
    if kind.startswith("layernorm") and backend == "cuda":
        pytest.skip("no LayerNorm kernels on the CUDA backend")
    I, H, T = 6, 7, 4
    m = fastrnn.RNNBase(kind.split("-")[0], I, H, 3, dropout=0.5, dtype=np.float64,
                        backend=backend, seed=1, batch_first=B == 5, **STACKS[kind])
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, I) if B is None else (T, B, I))
    m.eval()
    y, h_n = m(x.transpose(1, 0, 2)) if m.batch_first else m(x)
    y = y.transpose(1, 0, 2) if m.batch_first else y
    m.train()
    state = None
    for t in range(T):
        y_t, state = m.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-10, atol=1e-12)
    for got, want in zip(state if isinstance(state, tuple) else (state,),
                         h_n if isinstance(h_n, tuple) else (h_n,), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="forward"):  # nothing was recorded
        m.backward(np.zeros_like(y))


def test_a_stack_step_refuses_bad_input():
    m = fastrnn.LSTM(4, 5, 2, dtype=np.float64)
    with pytest.raises(ValueError, match="unidirectional"):
        fastrnn.GRU(4, 5, bidirectional=True).step(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="x must be 2-d"):
        m.step(np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="input_size=4"):
        m.step(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="dtype"):
        m.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3, 5\)"):
        m.step(np.zeros((3, 4)), (np.zeros((1, 3, 5)), np.zeros((2, 3, 5))))
