"""The layer stack (every available backend) against torch.nn: outputs, final states, all gradients.

Skipped when torch is not installed. Random configurations of every cell: num_layers 1-3,
bidirectional, batch_first, proj_size, unbatched input and ragged lengths (compared with
pack_padded_sequence). float64 must agree within rtol 1e-9, float32 within rtol 1e-4.
"""

import numpy as np
import pytest

import fastrnn

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
BACKENDS = [name for name, (ok, _) in fastrnn.backends.available().items() if ok]


def make_pair(cell, dtype, backend="reference", **kw):
    """A fastrnn module and a torch.nn module holding the same parameters."""
    seed = kw.pop("seed", 0)
    if cell.startswith("rnn"):
        ours = fastrnn.RNN(nonlinearity=cell[4:], dtype=dtype, backend=backend, seed=seed, **kw)
        theirs = torch.nn.RNN(nonlinearity=cell[4:], **kw)
    elif cell == "lstm":
        ours = fastrnn.LSTM(dtype=dtype, backend=backend, seed=seed, **kw)
        theirs = torch.nn.LSTM(**kw)
    else:
        ours = fastrnn.GRU(dtype=dtype, backend=backend, seed=seed, **kw)
        theirs = torch.nn.GRU(**kw)
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def random_config(seed, cell=None, proj=False):
    rng = np.random.default_rng(seed)
    cell = cell or CELLS[seed % 4]
    H = int(rng.integers(1, 9))
    cfg = dict(input_size=int(rng.integers(1, 7)), hidden_size=H,
               num_layers=int(rng.integers(1, 4)), bias=bool(rng.random() < 0.8),
               batch_first=bool(rng.random() < 0.5), bidirectional=bool(rng.random() < 0.5))
    if proj and H == 1:
        cfg["hidden_size"] = H = 2
    if cell == "lstm" and H > 1 and (proj or rng.random() < 0.5):
        cfg["proj_size"] = int(rng.integers(1, H))
    T, B = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    mode = rng.choice(["dense", "ragged", "unbatched"], p=[0.4, 0.4, 0.2])
    return cell, cfg, T, B, str(mode), seed


def run_both(ours, theirs, cfg, T, B, mode, rng, dtype):
    """Forward and backward of both on the same data; returns pairs (name, ours, theirs)."""
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    D, L = 2 if cfg.get("bidirectional") else 1, cfg["num_layers"]
    Hout, H = cfg.get("proj_size") or cfg["hidden_size"], cfg["hidden_size"]
    unbatched = mode == "unbatched"
    lead = (T,) if unbatched else ((B, T) if cfg["batch_first"] else (T, B))
    x = rng.standard_normal((*lead, cfg["input_size"])).astype(dtype)
    state_lead = (D * L,) if unbatched else (D * L, B)
    h0 = (0.5 * rng.standard_normal((*state_lead, Hout))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((*state_lead, H))).astype(dtype)
    is_lstm = isinstance(theirs, torch.nn.LSTM)
    lengths = None
    if mode == "ragged":
        lengths = rng.integers(1, T + 1, size=B)
        lengths[rng.integers(B)] = T
    hx = (h0, c0) if is_lstm else h0
    y, hn = ours(x, hx, lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    if lengths is not None:  # torch's padded output is a constant 0 there: no gradient flows
        valid = np.arange(T)[:, None] < lengths[None, :]
        dy *= (valid.T if cfg["batch_first"] else valid)[..., None]
    dh = rng.standard_normal(h0.shape).astype(dtype)
    dc = rng.standard_normal(c0.shape).astype(dtype)
    dx, dhx = ours.backward(dy, (dh, dc) if is_lstm else dh)

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    tc0 = torch.tensor(c0, requires_grad=True)
    thx = (th0, tc0) if is_lstm else th0
    if lengths is None:
        ty, thn = theirs(tx, thx)
    else:
        packed = pack_padded_sequence(tx, torch.tensor(lengths), batch_first=cfg["batch_first"],
                                      enforce_sorted=False)
        ty, thn = theirs(packed, thx)
        ty, _ = pad_packed_sequence(ty, batch_first=cfg["batch_first"], total_length=T)
    loss = (ty * torch.tensor(dy)).sum()
    if is_lstm:
        loss = loss + (thn[0] * torch.tensor(dh)).sum() + (thn[1] * torch.tensor(dc)).sum()
    else:
        loss = loss + (thn * torch.tensor(dh)).sum()
    loss.backward()
    assert ty.dtype == tdtype
    pairs = [("y", y, ty), ("dx", dx, tx.grad)]
    if is_lstm:
        pairs += [("h_n", hn[0], thn[0]), ("c_n", hn[1], thn[1]),
                  ("dh0", dhx[0], th0.grad), ("dc0", dhx[1], tc0.grad)]
    else:
        pairs += [("h_n", hn, thn), ("dh0", dhx, th0.grad)]
    tparams = dict(theirs.named_parameters())
    assert set(tparams) == set(ours.params)
    pairs += [(f"grad {k}", ours.grads[k], p.grad) for k, p in tparams.items()]
    return pairs


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(48))
def test_stack_matches_torch_float64(seed, backend):
    cell, cfg, T, B, mode, seed = random_config(seed)
    ours, theirs = make_pair(cell, np.float64, backend, seed=seed, **cfg)
    rng = np.random.default_rng(1000 + seed)
    for name, a, b in run_both(ours, theirs, cfg, T, B, mode, rng, np.float64):
        b = b.detach().numpy()
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"{cell} {cfg} {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(12))
def test_lstm_projection_matches_torch(seed, backend):
    cell, cfg, T, B, mode, seed = random_config(seed, cell="lstm", proj=True)
    mode = ("dense", "ragged", "unbatched")[seed % 3]
    ours, theirs = make_pair(cell, np.float64, backend, seed=seed, **cfg)
    rng = np.random.default_rng(seed)
    for name, a, b in run_both(ours, theirs, cfg, T, B, mode, rng, np.float64):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=f"{cfg} {mode} {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(8))
def test_stack_matches_torch_float32(seed, backend):
    cell, cfg, T, B, mode, seed = random_config(100 + seed)
    ours, theirs = make_pair(cell, np.float32, backend, seed=seed, **cfg)
    rng = np.random.default_rng(seed)
    for name, a, b in run_both(ours, theirs, cfg, T, B, mode, rng, np.float32):
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=f"{cell} {cfg} {name}")


def test_state_dict_round_trips_with_torch():
    ours, theirs = make_pair("lstm", np.float32, input_size=3, hidden_size=5, num_layers=2,
                             bidirectional=True, proj_size=2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs2 = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    ours.load_state_dict(theirs2.state_dict())  # torch tensors load directly
    for k, v in theirs2.state_dict().items():
        np.testing.assert_array_equal(ours.params[k], v.numpy())
