"""ConvLSTM: the reference against finite differences; the fast kernels (Cython's and Numba's
loops) against the reference on many shapes (kernel sizes 1, 3, 5, ragged lengths, T=1, B=1,
odd frames, float32 and float64); the modules (NumPy, model API, fastrnn.torch) against each
other and against the per-step torch composition; bad input; the example's asserted bar."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from fastrnn import backends, nn
from fastrnn.backends import conv_host, conv_reference

ROOT = Path(__file__).resolve().parents[1]


def _available(name):
    try:
        backends.conv(name)
    except ValueError:
        return False
    return True


FAST = [name for name in backends.CONV_MODULES if name != "reference" and _available(name)]
REF = backends.conv("reference")
#: float32 tolerance against the float64 reference (values and gradients, relative to scale)
TOL = {np.float32: 2e-4, np.float64: 1e-10}


def problem(T, B, C, F, S, k, *, ragged=False, bias=True, seed=0, W=None):
    rng = np.random.default_rng(seed)
    W = W or S
    lengths = None
    if ragged:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    return dict(
        x=rng.standard_normal((T, B, C, S, W)),
        weight=rng.uniform(-1, 1, (4 * F, C + F, k, k)) / np.sqrt((C + F) * k * k) * 2,
        bias=rng.uniform(-0.5, 0.5, 4 * F) if bias else None,
        h0=rng.uniform(-0.5, 0.5, (B, F, S, W)), c0=rng.uniform(-0.5, 0.5, (B, F, S, W)),
        lengths=lengths,
        dy=rng.standard_normal((T, B, F, S, W)), dh=rng.standard_normal((B, F, S, W)),
        dc=rng.standard_normal((B, F, S, W)))


def run(backend, pb, dtype=np.float64, input_grad=True):
    cast = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
            for k, v in pb.items()}
    y, h, c, ctx = backend.forward(cast["x"], cast["weight"], cast["bias"], cast["h0"],
                                   cast["c0"], cast["lengths"], True)
    grads = backend.backward(cast["dy"], cast["dh"], cast["dc"], ctx, input_grad)
    return (y, h, c), grads


def test_reference_gradients_match_finite_differences():
    pb = problem(T=3, B=2, C=2, F=2, S=4, k=3, ragged=True, seed=1, W=3)
    pb["lengths"][:] = [3, 1]
    _, (dx, dh0, dc0, dw, db) = run(REF, pb)

    def loss():
        y, h, c, _ = conv_reference.forward(pb["x"], pb["weight"], pb["bias"], pb["h0"],
                                            pb["c0"], pb["lengths"], False)
        return float(np.sum(pb["dy"] * y) + np.sum(pb["dh"] * h) + np.sum(pb["dc"] * c))

    for name, analytic in (("x", dx), ("h0", dh0), ("c0", dc0), ("weight", dw),
                           ("bias", db)):
        arr, numeric = pb[name], np.zeros_like(pb[name])
        for j in range(arr.size):
            orig = arr.flat[j]
            arr.flat[j] = orig + 1e-6
            up = loss()
            arr.flat[j] = orig - 1e-6
            numeric.flat[j] = (up - loss()) / 2e-6
            arr.flat[j] = orig
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=name)


SHAPES = [  # T, B, C, F, S, k, ragged, bias: one step, one sequence, odd sizes, every k
    (1, 1, 1, 1, 1, 1, False, True), (1, 2, 3, 2, 5, 3, False, False),
    (4, 1, 2, 3, 4, 5, False, True), (5, 3, 2, 4, 6, 3, True, True),
    (3, 4, 5, 3, 7, 1, True, False), (6, 2, 1, 5, 9, 5, True, True),
    (2, 3, 4, 8, 3, 5, False, True),  # a kernel wider than the frame
]


@pytest.mark.parametrize("parts", [False, True])
@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_kernels_match_the_reference(name, dtype, shape, parts, monkeypatch):
    """parts: the batch dealt into one part per core (what large calls do) even here."""
    if parts:
        monkeypatch.setattr(conv_host, "MIN_PART_WORK", 0)
    T, B, C, F, S, k, ragged, bias = shape
    pb = problem(T, B, C, F, S, k, ragged=ragged, bias=bias, seed=sum(shape), W=S + 1)
    want_out, want_grads = run(REF, pb)  # float64
    got_out, got_grads = run(backends.conv(name), pb, dtype)
    assert all(g.dtype == dtype for g in got_out)
    for got, want, what in [*zip(got_out, want_out, ("y", "h_n", "c_n"), strict=True),
                            *zip(got_grads, want_grads, ("dx", "dh0", "dc0", "dw", "db"),
                                 strict=True)]:
        if want is None:
            assert got is None, what
            continue
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale,
                                   err_msg=f"{name} {what}")
    if ragged:  # outputs beyond a sequence's end are exactly 0
        for b, length in enumerate(pb["lengths"]):
            assert not np.any(got_out[0][length:, b])


@pytest.mark.parametrize("name", [*FAST, "reference"])
def test_input_grad_false_leaves_out_only_dx(name):
    pb = problem(3, 2, 2, 3, 5, 3, seed=3)
    _, full = run(backends.conv(name), pb)
    _, lean = run(backends.conv(name), pb, input_grad=False)
    assert lean[0] is None
    for a, b in zip(full[1:], lean[1:], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", FAST)
def test_extreme_values_saturate_and_nan_propagates(name):
    """Frames scaled by 1e4 (pre-activations of ~1e4: saturated gates) against the float64
    reference: float64 within 1e-10, float32 within its rounding of such sums (values 1e-4,
    gradients 1e-3 of their scale: a tanh whose derivative stayed at 4.8e-7 when saturated
    would be off by ~5e-3 here). A NaN in one frame reaches exactly the outputs the
    reference's NaN reaches."""
    pb = problem(3, 2, 2, 2, 4, 3, seed=5)
    pb["x"] *= 1e4
    (ry, _, _), rgrads = run(REF, pb)
    for dtype, tol_y, tol_g in ((np.float64, 1e-10, 1e-10), (np.float32, 1e-4, 1e-3)):
        (y, _, _), grads = run(backends.conv(name), pb, dtype)
        np.testing.assert_allclose(y, ry, rtol=0, atol=tol_y)
        for got, want in zip(grads, rgrads, strict=True):
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(got, want, rtol=0, atol=tol_g * scale)
    pb = problem(3, 2, 2, 2, 4, 3, seed=6)
    pb["x"][1, 0, 0, 2, 2] = np.nan
    for dtype in (np.float32, np.float64):
        (y, _, _), _ = run(backends.conv(name), pb, dtype)
        (ry, _, _), _ = run(REF, pb, dtype)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ry))
        assert np.isnan(y[1:, 0]).any() and not np.isnan(y[:, 1]).any()


@pytest.mark.parametrize("make,error,message", [
    (lambda: fastrnn.ConvLSTM2d(1, 4, 2), ValueError, "kernel_size must be odd"),
    (lambda: fastrnn.ConvLSTM2d(0, 4, 3), ValueError, "in_channels must be an integer >= 1"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3, backend="cuda"), ValueError,
     "ConvLSTM backend must be one of"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3, batch_first="yes"), TypeError,
     "batch_first must be True or False"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3)(np.zeros((2, 3, 2, 4, 4), np.float32)), ValueError,
     r"x must be 5-d \(T, B, C, H, W\) with 1 channels"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3)(np.zeros((2, 3, 1, 4, 4))), TypeError,
     "x has dtype float64 but the module's parameters are float32"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3)(np.zeros((2, 3, 1, 4, 4), np.float32),
                                         lengths=[1, 2, 9]), ValueError,
     r"lengths must lie in \[0, 2\]"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3)(np.zeros((2, 3, 1, 4, 4), np.float32),
                                         (np.zeros((1, 3, 4, 4, 5), np.float32),) * 2),
     ValueError, r"hx\[0\] \(h\) must have shape \(1, 3, 4, 4, 4\)"),
    (lambda: fastrnn.ConvLSTM2d(1, 4, 3).backward(np.zeros(3)), RuntimeError,
     "needs a forward"),
    (lambda: REF.forward(np.zeros((2, 1, 1, 3, 3)), np.zeros((8, 4, 3, 3)), None,
                         np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3))), ValueError,
     r"weight must have shape \(8, 3, 3, 3\)"),
    (lambda: REF.forward(np.zeros((2, 1, 1, 3, 3)), np.zeros((8, 3, 3, 3)), None,
                         np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 3))), ValueError,
     r"h0 must have shape \(1, 2, 3, 3\)"),
    (lambda: REF.forward(np.zeros((2, 1, 1, 3, 3), np.float32), np.zeros((8, 3, 3, 3)), None,
                         np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3))), TypeError,
     "weight has dtype float64 but x has float32"),
    (lambda: REF.forward(np.zeros((2, 1, 1, 3)), np.zeros((8, 3, 3, 3)), None,
                         np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3))), ValueError,
     r"x must be a 5-d array \[T, B, channels, height, width\]"),
    (lambda: REF.forward(np.zeros((2, 1, 1, 3, 3)), np.zeros((8, 3, 2, 2)), None,
                         np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 3, 3))), ValueError,
     "with k odd"),
])
def test_bad_input_gets_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_module_stack_batch_first_and_second_backward():
    """Two layers, batch first, ragged: the fast module equals the reference module (values,
    states, every gradient, dx), and a second backward of one forward raises."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2, 5, 6))  # B, T, C, H, W
    lengths = np.array([4, 1, 3])
    mods = [fastrnn.ConvLSTM2d(2, 3, 3, num_layers=2, batch_first=True, dtype=np.float64,
                               backend=name, seed=1) for name in (FAST[0], "reference")]
    outs = [m(x, None, lengths) for m in mods]
    np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-12)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    dy = rng.standard_normal(outs[0][0].shape)
    grads = [m.backward(dy) for m in mods]
    np.testing.assert_allclose(grads[0][0], grads[1][0], atol=1e-12)
    for key in mods[1].grads:
        np.testing.assert_allclose(mods[0].grads[key], mods[1].grads[key], atol=1e-10)
    with pytest.raises(RuntimeError, match="already called"):
        mods[0].backward(dy)
    other = fastrnn.ConvLSTM2d(2, 3, 3, num_layers=2, batch_first=True, dtype=np.float64,
                               seed=7)
    other.load_state_dict(mods[0].state_dict())
    other.eval()
    np.testing.assert_allclose(other(x, None, lengths)[0], outs[0][0], atol=1e-12)


def test_model_api_layer_learns_with_fit():
    """nn.ConvLSTM2d in a Module trained by a few Adam steps: the loss falls."""
    from fastrnn import optim

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5, 1, 6, 6)).astype(np.float32)
    target = np.roll(x, 1, axis=-1).mean(axis=1)  # [B,1,6,6]
    layer = nn.ConvLSTM2d(1, 4, 3, output="last", seed=0)
    head = nn.Linear(4, 1, seed=1)
    model = nn.Sequential(layer)
    opt = optim.Adam(model, lr=1e-2)
    opt_head = optim.Adam(head, lr=1e-2)
    losses = []
    for _ in range(30):
        model.zero_grad()
        head.zero_grad()
        h = model(x)  # [B,4,6,6]
        pred = np.moveaxis(head(np.moveaxis(h, 1, -1)), -1, 1)
        losses.append(float(np.mean((pred - target) ** 2)))
        dpred = 2 * (pred - target) / pred.size
        dh = np.moveaxis(head.backward(np.ascontiguousarray(np.moveaxis(dpred, 1, -1))), -1, 1)
        assert model.backward(np.ascontiguousarray(dh)).shape == x.shape
        opt.step()
        opt_head.step()
    assert losses[-1] < 0.7 * losses[0]
    lean = nn.ConvLSTM2d(1, 4, 3, output="last", input_grad=False, seed=0)
    lean(x)
    assert lean.backward(np.ones((4, 4, 6, 6), np.float32)) is None
    for key in lean.grads:  # the same weight gradients as with dx
        np.testing.assert_allclose(lean.grads[key], _grads_with_dx(x)[key], rtol=1e-5)


def _grads_with_dx(x):
    full = nn.ConvLSTM2d(1, 4, 3, output="last", seed=0)
    full(x)
    assert full.backward(np.ones((4, 4, 6, 6), np.float32)).shape == x.shape
    return full.grads


def test_torch_module_equals_the_per_step_torch_composition():
    torch = pytest.importorskip("torch")
    import fastrnn.torch as ft

    torch.manual_seed(0)
    m = ft.ConvLSTM2d(3, 4, 3, num_layers=2, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 5, 3, 6, 7, dtype=torch.float64, requires_grad=True)

    def composed(x):
        layer_input, hs, cs = x.transpose(0, 1), [], []
        for layer in range(2):
            w, b = getattr(m, f"weight_l{layer}"), getattr(m, f"bias_l{layer}")
            h = c = torch.zeros(2, 4, 6, 7, dtype=torch.float64)
            ys = []
            for t in range(5):
                z = torch.nn.functional.conv2d(torch.cat([layer_input[t], h], 1), w, b,
                                               padding=1)
                i, f, g, o = z.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys.append(h)
            layer_input = torch.stack(ys)
            hs.append(h)
            cs.append(c)
        return layer_input.transpose(0, 1), torch.stack(hs), torch.stack(cs)

    y, (h, c) = m(x)
    y2, h2, c2 = composed(x)
    for a, b in ((y, y2), (h, h2), (c, c2)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    gy = torch.randn_like(y)
    wrt = [x, *m.parameters()]
    g1 = torch.autograd.grad((y * gy).sum() + h.sum() + c.sum(), wrt)
    g2 = torch.autograd.grad((y2 * gy).sum() + h2.sum() + c2.sum(), wrt)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda v: m(v)[0], (x[:1, :3, :, :4, :4].detach().clone()
                                                       .requires_grad_(),))
    frames = x.detach()  # data: no gradient asked for the frames
    y, _ = m(frames)
    y.sum().backward()
    assert frames.grad is None and m.weight_l0.grad is not None
    with pytest.raises(ValueError, match="input must have the type torch.float64"):
        m(x.float())
    with pytest.raises(RuntimeError, match="Expected hidden h0 size"):
        m(x, (torch.zeros(1, 2, 4, 6, 7, dtype=torch.float64),) * 2)


def test_example_beats_copying_the_last_frame():
    spec = importlib.util.spec_from_file_location("nextframe",
                                                  ROOT / "examples" / "nextframe.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(quick=True, log=None)
    assert result["improvement"] >= example.QUICK_BAR, result


def test_registry_picks_the_fastest_available_and_info_names_it():
    from fastrnn.sysinfo import collect, format_report

    status = backends.conv_available()
    assert list(status) == list(backends.CONV_MODULES) and status["reference"][0]
    first = next(name for name, (ok, _) in status.items() if ok)
    assert backends.conv().name == first == fastrnn.ConvLSTM2d(1, 2, 3).backend
    info = collect()
    assert info["default_conv_backend"] == first
    assert f"ConvLSTM kernels (default: {first})" in format_report(info)
