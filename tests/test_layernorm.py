"""The LayerNorm LSTM and GRU above the kernels: the NumPy modules, the model API, and
fastrnn.torch's modules against the cells' equations written in torch autograd here.

The kernels themselves (every backend vs the reference, the reference vs finite differences)
are tested with every other cell in test_conformance.py and test_reference_gradcheck.py.
Tolerance against the autograd equations: float64, rtol 1e-8 (atol 1e-10).
"""

import numpy as np
import pytest

import fastrnn
from fastrnn import backends, nn, optim

BACKENDS = [name for name, (ok, _) in backends.available().items() if ok]


# ---------------------------------------------------------------- NumPy modules


@pytest.mark.parametrize("cls,G,extra", [(fastrnn.LayerNormLSTM, 4, ("ln_c_weight", "ln_c_bias")),
                                         (fastrnn.LayerNormGRU, 3, ())])
def test_parameters_names_shapes_and_initial_values(cls, G, extra):
    m = cls(3, 5, num_layers=2, bidirectional=True, seed=0)
    H = 5
    for k in ("l0", "l1_reverse"):
        assert m.params[f"weight_ih_{k}"].shape[0] == G * H
        assert np.all(m.params[f"ln_ih_weight_{k}"] == 1)
        assert m.params[f"ln_hh_weight_{k}"].shape == (G * H,)
        assert np.all(m.params[f"ln_hh_weight_{k}"] == 1)
        for name in extra:
            assert m.params[f"{name}_{k}"].shape == (H,)
        if extra:
            assert np.all(m.params[f"ln_c_bias_{k}"] == 0)
            assert np.all(m.params[f"ln_c_weight_{k}"] == 1)
    assert np.ptp(m.params["weight_hh_l0"]) > 0  # the weights are drawn, not constant
    names = list(m.state_dict())
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "ln_ih_weight_l0"]
    nobias = cls(3, 5, bias=False, seed=0)
    assert not any(n.startswith("bias_") for n in nobias.params)
    assert "ln_ih_weight_l0" in nobias.params


def test_projection_is_refused_clearly():
    with pytest.raises(ValueError, match="proj_size is only supported by LSTM, not "
                                         "layernorm_lstm"):
        fastrnn.LayerNormLSTM(3, 5, proj_size=2)


def test_gains_and_shifts_act():
    """A gain of 0 on every LayerNorm silences the input (LSTM: h = o * tanh(b_c))."""
    m = fastrnn.LayerNormLSTM(3, 4, seed=1, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y1, _ = m(x)
    m.params["ln_ih_weight_l0"][:] = 0
    m.params["ln_hh_weight_l0"][:] = 0
    m.params["ln_c_weight_l0"][:] = 0
    y2, _ = m(x)
    assert not np.allclose(y1, y2)
    o = 1 / (1 + np.exp(-(m.params["bias_ih_l0"] + m.params["bias_hh_l0"])[12:]))
    np.testing.assert_allclose(y2, np.broadcast_to(o * np.tanh(0.0), y2.shape), atol=1e-15)
    m.params["ln_c_bias_l0"][:] = 0.5
    y3, _ = m(x)
    np.testing.assert_allclose(y3, np.broadcast_to(o * np.tanh(0.5), y3.shape), rtol=1e-12)


@pytest.mark.parametrize("cell", ["layernorm_lstm", "layernorm_gru"])
def test_model_api_recurrent_learns(cell):
    """nn.Recurrent with a LayerNorm cell fits a small regression (loss falls 5x)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 10, 3)).astype(np.float32)
    target = np.cumsum(x[:, :, :1], axis=1) / 3  # a running sum: needs the recurrence
    model = nn.Sequential(nn.Recurrent(cell, 3, 16, seed=0), nn.Linear(16, 1, seed=0))
    loss_fn = nn.MSELoss()
    opt = optim.Adam(model, lr=0.01)
    losses = []
    for _ in range(150):
        out = model(x)
        losses.append(loss_fn(out, target))
        model.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


# ---------------------------------------------------------------- fastrnn.torch


torch = pytest.importorskip("torch")
F = torch.nn.functional


def _ln(v):
    return F.layer_norm(v, v.shape[-1:], eps=1e-5)


def _step(kind, p, k, x, h, c):
    """One step of the cell's equations (README / docstrings), in plain torch."""
    gi = p[f"ln_ih_weight_{k}"] * _ln(x @ p[f"weight_ih_{k}"].T)
    gh = p[f"ln_hh_weight_{k}"] * _ln(h @ p[f"weight_hh_{k}"].T)
    if f"bias_ih_{k}" in p:
        gi, gh = gi + p[f"bias_ih_{k}"], gh + p[f"bias_hh_{k}"]
    if kind == "LayerNormLSTM":
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(p[f"ln_c_weight_{k}"] * _ln(c) + p[f"ln_c_bias_{k}"])
        return h, c
    (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, -1), gh.chunk(3, -1)
    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    n = torch.tanh(i_n + r * hn)
    return (1 - z) * n + z * h, c


def autograd_stack(kind, p, L, D, x, lengths, h0, c0):
    """The stack over time-major x [T,B,I] with each sequence's own length: y [T,B,D*H]
    (0 beyond a length), h_n and c_n [L*D,B,H]."""
    T, B, _ = x.shape
    ys, hs, cs = [], [], []
    for b in range(B):
        seq, hb, cb = x[:lengths[b], b], [], []
        for layer in range(L):
            outs = []
            for d in range(D):
                k = f"l{layer}" + ("_reverse" if d else "")
                h, c = h0[layer * D + d, b:b + 1], c0[layer * D + d, b:b + 1]
                out = [None] * lengths[b]
                order = range(lengths[b] - 1, -1, -1) if d else range(lengths[b])
                for t in order:
                    h, c = _step(kind, p, k, seq[t:t + 1], h, c)
                    out[t] = h
                outs.append(torch.cat(out))
                hb.append(h)
                cb.append(c)
            seq = torch.cat(outs, 1)
        pad = seq.new_zeros(T - lengths[b], seq.shape[1])
        ys.append(torch.cat([seq, pad]))
        hs.append(torch.cat(hb))
        cs.append(torch.cat(cb))
    return torch.stack(ys, 1), torch.stack(hs, 1), torch.stack(cs, 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_fastrnn_torch_equals_the_equations_in_autograd(backend, seed):
    from torch.nn.utils.rnn import pack_padded_sequence

    import fastrnn.torch as ft

    rng = np.random.default_rng(seed)
    kind = ("LayerNormLSTM", "LayerNormGRU")[seed % 2]
    L, D = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    I, H, T, B = (int(v) for v in rng.integers(1, 6, 4))
    H += 1
    bias, batch_first = bool(seed % 3), bool(seed % 4 < 2)
    form = ("dense", "packed", "unbatched")[seed % 3]
    torch.manual_seed(seed)
    m = getattr(ft, kind)(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                          bidirectional=D == 2, dtype=torch.float64, backend=backend)
    with torch.no_grad():  # gains and shifts away from 1 and 0
        for name, w in m.named_parameters():
            if name.startswith("ln_"):
                w.add_(torch.rand(w.shape, dtype=torch.float64) - 0.5)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64)
    h0 = torch.randn(L * D, B, H, generator=g, dtype=torch.float64)
    c0 = torch.randn(L * D, B, H, generator=g, dtype=torch.float64)
    lengths = [T] * B
    if form == "packed":
        lengths = [T] + [int(v) for v in rng.integers(1, T + 1, B - 1)]
    if form == "unbatched":
        B, lengths = 1, [T]
        x, h0, c0 = x[:, :1], h0[:, :1], c0[:, :1]
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
    params = {n: w.detach().clone().requires_grad_() for n, w in m.named_parameters()}
    y_ref, h_ref, c_ref = autograd_stack(kind, params, L, D, *leaves[:1], lengths, *leaves[1:])
    w_y = torch.randn(y_ref.shape, generator=g, dtype=torch.float64)
    w_h = torch.randn(h_ref.shape, generator=g, dtype=torch.float64)
    w_c = torch.randn(c_ref.shape, generator=g, dtype=torch.float64)
    lstm = kind == "LayerNormLSTM"
    loss = (y_ref * w_y).sum() + (h_ref * w_h).sum() + lstm * (c_ref * w_c).sum()
    loss.backward()

    ours = [t.clone().requires_grad_() for t in (x, h0, c0)]
    xi = ours[0]
    if batch_first:
        xi = xi.transpose(0, 1)
    hx = (ours[1], ours[2]) if lstm else ours[1]
    if form == "unbatched":
        xi = ours[0][:, 0]
        hx = (ours[1][:, 0], ours[2][:, 0]) if lstm else ours[1][:, 0]
    if form == "packed":
        xi = pack_padded_sequence(xi, torch.tensor(lengths), batch_first=batch_first,
                                  enforce_sorted=False)
    y, state = m(xi, hx)
    if form == "packed":
        from torch.nn.utils.rnn import pad_packed_sequence

        y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=T)
    if batch_first and form != "unbatched":
        y = y.transpose(0, 1)
    h_n, c_n = state if lstm else (state, None)
    if form == "unbatched":
        y, h_n = y[:, None], h_n[:, None]
        c_n = c_n[:, None] if lstm else None
    loss2 = (y * w_y).sum() + (h_n * w_h).sum() + (lstm and (c_n * w_c).sum() or 0)
    loss2.backward()

    def close(a, b, what):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-8,
                                   atol=1e-10, err_msg=f"{kind} {form} {what}")

    close(y, y_ref, "y")
    close(h_n, h_ref, "h_n")
    if lstm:
        close(c_n, c_ref, "c_n")
    for name, leaf, ref in zip(("x", "h0", "c0")[:2 + lstm], ours, leaves, strict=False):
        close(leaf.grad, ref.grad, f"d{name}")
    for name, w in m.named_parameters():
        close(w.grad, params[name].grad, f"d{name}")


def test_fastrnn_torch_layernorm_refuses_projection_and_trains():
    import fastrnn.torch as ft

    with pytest.raises(ValueError, match="proj_size"):
        ft.LayerNormLSTM(3, 5, proj_size=2)
    torch.manual_seed(0)
    rnn, head = ft.LayerNormGRU(2, 12, batch_first=True), torch.nn.Linear(12, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.02)
    x = torch.randn(16, 8, 2)
    target = x[:, :, :1].cumsum(1) / 3
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = ((head(rnn(x)[0]) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 5
    assert repr(rnn).startswith("LayerNormGRU(2, 12, batch_first=True")


@pytest.mark.parametrize("kind", ["LayerNormLSTM", "LayerNormGRU"])
def test_the_benchmarks_torch_composition_computes_the_same_cell(kind):
    """fastrnn.composed (torch's side of `fastrnn bench --layernorm`) equals fastrnn.torch's
    module on its state_dict, ragged lengths included: the benchmark compares like with like."""
    import fastrnn.torch as ft
    from fastrnn.composed import ComposedLayerNorm

    torch.manual_seed(0)
    ours = getattr(ft, kind)(3, 5, dtype=torch.float64)
    composed = ComposedLayerNorm(3, 5, lstm=kind == "LayerNormLSTM").double()
    composed.load_state_dict(ours.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4, 1])
    y_ref, _ = composed(x, lengths)
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    y, _ = ours(pack_padded_sequence(x, lengths, enforce_sorted=False))
    y, _ = pad_packed_sequence(y, total_length=6)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the char-LM command line


@pytest.mark.parametrize("cell", ["layernorm_lstm", "layernorm_gru"])
def test_charlm_cli_trains_and_samples_with_layernorm_cells(tmp_path, capsys, cell):
    """`fastrnn train --cell layernorm_*` learns below the unigram entropy; generate reads the
    checkpoint back with its cell."""
    from fastrnn import charlm
    from fastrnn.cli import main

    text = tmp_path / "t.txt"
    text.write_text(charlm.default_corpus()[:40000])
    ckpt = tmp_path / "c.npz"
    assert main(["train", "--text", str(text), "--epochs", "3", "--hidden", "64",
                 "--embed", "16", "--cell", cell, "--checkpoint", str(ckpt),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    val, unigram = _losses(out)
    assert val < 0.9 * unigram, out[-300:]
    model, cfg = charlm.load(str(ckpt))
    assert cfg.cell == cell
    assert main(["generate", "--checkpoint", str(ckpt), "--length", "30", "--seed", "1"]) == 0


def _losses(out: str) -> tuple[float, float]:
    """(validation loss, unigram entropy) from train's last line."""
    line = out.split("validation loss ")[1]
    return float(line.split(" ")[0]), float(line.split("unigram entropy ")[1].split(";")[0])


# ---------------------------------------------------------------- the kernel contract


@pytest.mark.parametrize("name", BACKENDS)
def test_bad_norms_get_clear_errors(name):
    from .helpers import make_problem

    backend = backends.get(name)
    pb = make_problem("layernorm_lstm", T=2, B=2, I=3, H=4)
    kwargs = pb.kwargs()
    for norms, error, message in [
        (None, ValueError, "norms must be a tuple of 4 arrays"),
        (pb.norms[:3], ValueError, r"norms must be a tuple of 4 arrays .* of 3"),
        ((pb.norms[0][:5], *pb.norms[1:]), ValueError, r"ln_ih must have shape \(16,\)"),
        ((pb.norms[0].astype(np.float32), *pb.norms[1:]), TypeError, "ln_ih has dtype"),
        ((list(pb.norms[0]), *pb.norms[1:]), TypeError, "ln_ih must be a numpy.ndarray"),
    ]:
        with pytest.raises(error, match=message):
            backend.forward(*pb.args(), **{**kwargs, "norms": norms})
    plain = make_problem("lstm", T=2, B=2, I=3, H=4)
    with pytest.raises(ValueError, match="norms .* are not defined for lstm; cells with "
                                         "them: layernorm_lstm, layernorm_gru, jordan"):
        backend.forward(*plain.args(), **{**plain.kwargs(), "norms": pb.norms})
    jordan = make_problem("jordan_tanh_tanh", T=2, B=2, I=3, H=4, P=2)
    kwargs = jordan.kwargs()
    with pytest.raises(ValueError, match=r"norms must be a tuple of 1 arrays \(b_hr\)"):
        backend.forward(*jordan.args(), **{**kwargs, "norms": ()})
    with pytest.raises(ValueError, match=r"b_hr must have shape \(2,\)"):
        backend.forward(*jordan.args(), **{**kwargs, "norms": (np.zeros(4),)})
    with pytest.raises(ValueError, match="w_hr .* is required for jordan_tanh_tanh"):
        backend.forward(*jordan.args(), **{**kwargs, "w_hr": None})
    bare = make_problem("jordan_tanh_tanh", T=2, B=2, I=3, H=4, P=2, bias=False)
    with pytest.raises(ValueError, match="norms must be empty for jordan_tanh_tanh without"):
        backend.forward(*bare.args(), **{**bare.kwargs(), "norms": jordan.norms})


def test_state_dict_moves_between_numpy_and_torch_modules():
    """A fastrnn.torch LayerNormLSTM's state_dict loads into the NumPy module (and back), and
    both compute the same outputs (dropout between layers in training only)."""
    import fastrnn.torch as ft

    torch.manual_seed(3)
    tm = ft.LayerNormLSTM(3, 6, num_layers=2, bidirectional=True, dropout=0.5,
                          batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name, w in tm.named_parameters():
            if name.startswith("ln_"):
                w.add_(torch.rand(w.shape, dtype=torch.float64))
    nm = fastrnn.LayerNormLSTM(3, 6, num_layers=2, bidirectional=True, dropout=0.5,
                               batch_first=True, dtype=np.float64)
    nm.load_state_dict(tm.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    tm.eval()
    nm.eval()
    y_t, (h_t, _) = tm(torch.from_numpy(x))
    y_n, (h_n, _) = nm(x, lengths=None)
    np.testing.assert_allclose(y_n, y_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(h_n, h_t.detach().numpy(), rtol=1e-12)
    back = ft.LayerNormLSTM(3, 6, num_layers=2, bidirectional=True, batch_first=True,
                            dtype=torch.float64)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in nm.state_dict().items()})
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), tm.parameters(),
                                                  strict=True))
