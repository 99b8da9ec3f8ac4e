"""The CUDA backend against the reference. Without a GPU it runs in numba's CUDA simulator,
in its own invocation (the simulator is slow, so the shapes are tiny):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda.py

On a machine with a GPU the whole conformance suite (tests/test_conformance.py) runs it too.
"""

import numpy as np
import pytest

import fastrnn
from fastrnn import backends

from .helpers import make_problem
from .test_conformance import check_backend

ok, why = backends.available()["cuda"]
pytestmark = pytest.mark.skipif(not ok, reason=f"cuda backend unavailable: {why}")
CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm", "layernorm_gru"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_conforms_on_tiny_shapes(cell, dtype):
    for T, B, I, H, ragged, reverse, bias in [(1, 1, 1, 1, False, False, True),
                                              (3, 2, 3, 5, True, True, True),
                                              (2, 3, 2, 3, True, False, False)]:
        check_backend("cuda", make_problem(cell, T, B, I, H, ragged=ragged, reverse=reverse,
                                           bias=bias, seed=T + B), dtype)


@pytest.fixture(params=["persistent", "per-step"])
def kernels(request, monkeypatch):
    """Runs a test with each kind of time-loop kernel: persistent (w_hh in shared memory)
    and per-step (what sizes that do not fit on chip get), forced by leaving no room."""
    if request.param == "per-step":
        from fastrnn.backends.cuda import loops

        monkeypatch.setattr(loops, "SHARED_BYTES", 0)
    return request.param


@pytest.mark.parametrize("cell", CELLS[:4])  # the LayerNorm cells have per-step kernels only
def test_per_step_kernels_conform(cell, monkeypatch):
    """Several tiles of sequences and units (TILE is 4 in the simulator), ragged, reverse."""
    from fastrnn.backends.cuda import loops

    monkeypatch.setattr(loops, "SHARED_BYTES", 0)
    check_backend("cuda", make_problem(cell, 3, 5, 2, 6, ragged=True, reverse=True, seed=1),
                  np.float64)
    check_backend("cuda", make_problem(cell, 2, 2, 3, 3, bias=False, seed=2), np.float32)


def test_lstm_projection_conforms(kernels):
    check_backend("cuda", make_problem("lstm", 3, 3, 2, 5, P=3, ragged=True, reverse=True,
                                       seed=3), np.float64)


def test_kernel_choice():
    from fastrnn.backends.cuda import persistent_launch

    # LSTM H=16 float32: state 32 values + w_hh 64x16 fit in 48 KiB -> persistent
    assert persistent_launch(16, 32, 64 * 16, np.float32) == (32, (32 + 64 * 16) * 4)
    assert persistent_launch(100, 200, 400 * 100, np.float32) is None  # 160 KB of w_hh
    assert persistent_launch(1025, 0, 0, np.float32) is None  # more units than threads


def test_device_arrays_in_device_arrays_out(kernels):
    from numba import cuda

    pb = make_problem("lstm", 3, 2, 2, 3, ragged=True, seed=5)
    be = backends.get("cuda")
    host = be.forward(*pb.args(), **pb.kwargs())
    dev_args = [a if a is None or isinstance(a, str) else cuda.to_device(a) for a in pb.args()]
    out = be.forward(*dev_args, **pb.kwargs())
    assert not isinstance(out.y, np.ndarray)
    np.testing.assert_allclose(out.y.copy_to_host(), host.y, rtol=1e-12)
    np.testing.assert_allclose(out.c_n.copy_to_host(), host.c_n, rtol=1e-12)
    dh_n, dc_n = cuda.to_device(pb.dh_n), cuda.to_device(pb.dc_n)
    grads = be.backward(cuda.to_device(pb.dy), dh_n, dc_n, out.ctx)
    ref = be.backward(pb.dy, pb.dh_n, pb.dc_n, host.ctx)
    for field in ("dx", "dh0", "dc0", "dw_hh", "db_ih"):
        np.testing.assert_allclose(getattr(grads, field).copy_to_host(), getattr(ref, field),
                                   rtol=1e-12)
    # the caller's device arrays are inputs only
    for given, original in ((dev_args[6], pb.h0), (dev_args[7], pb.c0), (dh_n, pb.dh_n),
                            (dc_n, pb.dc_n)):
        np.testing.assert_array_equal(given.copy_to_host(), original)
    with pytest.raises(ValueError, match=r"h0 must have shape \(2, 3\)"):
        be.forward("lstm", *dev_args[1:6], cuda.to_device(np.zeros((3, 3))), dev_args[7])


def test_axes_of_length_one_take_any_stride():
    """NumPy's x[None] has stride 0 on its new axis. numba's device arrays call such an array
    non-contiguous and refuse to reshape it (seen on an H100; the simulator reshapes it):
    a T=1, B=1 input with strides (0, 0, 8), from the host and already on the device."""
    from numba import cuda

    pb = make_problem("gru", 1, 1, 3, 4, seed=5)
    x = pb.x[0, 0][None, None]
    assert x.strides[:2] == (0, 0)
    be = backends.get("cuda")
    want = backends.get("reference").forward(*pb.args(), **pb.kwargs())
    for given in (x, cuda.to_device(x)):
        out = be.forward(pb.cell, given, *pb.args()[2:], **pb.kwargs())
        y = out.y if isinstance(out.y, np.ndarray) else out.y.copy_to_host()
        np.testing.assert_allclose(y, want.y, rtol=1e-12)
        grads = be.backward(pb.dy, pb.dh_n, pb.dc_n, out.ctx)
        dx = grads.dx if isinstance(grads.dx, np.ndarray) else grads.dx.copy_to_host()
        np.testing.assert_allclose(dx, backends.get("reference").backward(
            pb.dy, pb.dh_n, pb.dc_n, want.ctx).dx, rtol=1e-10)


def test_the_stack_runs_on_it_unchanged():
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    ours = fastrnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64,
                        backend="cuda", seed=0)
    ref = fastrnn.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64,
                       backend="reference", seed=0)
    y, (h, c) = ours(x, lengths=[3, 1])
    y_ref, (h_ref, c_ref) = ref(x, lengths=[3, 1])
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dx, _ = ours.backward(np.ones_like(y))
    dx_ref, _ = ref.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)


def test_torch_adapter_runs_on_it():
    """fastrnn.torch with backend='cuda' equals torch.nn (CPU tensors here: in the simulator
    there are no CUDA tensors; on a GPU a module moved with .cuda() takes this backend)."""
    torch = pytest.importorskip("torch")
    import fastrnn.torch as ft

    torch.manual_seed(0)
    theirs = torch.nn.GRU(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64)
    torch.manual_seed(0)
    ours = ft.GRU(2, 3, num_layers=2, bidirectional=True, dtype=torch.float64, backend="cuda")
    results = []
    for m in (ours, theirs):
        x = torch.randn(3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        y, h = m(x)
        (y.sum() + h.square().sum()).backward()
        results.append((y, h, x.grad, m.weight_hh_l1_reverse.grad))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)



def test_cells_run_on_it_through_the_layer_path():
    """The CUDA backend has no lean step: cells take its layer kernel over T=1."""
    ref = fastrnn.LSTMCell(3, 4, dtype=np.float64, backend="reference", seed=0)
    gpu = fastrnn.LSTMCell(3, 4, dtype=np.float64, backend="cuda", seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3))
    for cell in (ref, gpu):
        cell(x, cell(x))
    np.testing.assert_allclose(gpu(x)[0], ref(x)[0], rtol=1e-10)
    for cell in (ref, gpu):
        cell.reset_tape()
        state = cell(x)
        cell(x, state)
        dh = np.ones((2, 4))
        _, (dh1, dc1) = cell.backward(dh, None)
        cell.backward(dh + dh1, dc1)
    for name in ref.grads:
        np.testing.assert_allclose(gpu.grads[name], ref.grads[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["x nan", "x scaled 1e5", "h0 +inf", "x 1e30"])
@pytest.mark.parametrize("cell", ["rnn_relu", "lstm", "layernorm_lstm", "layernorm_gru"])
def test_extreme_inputs_give_the_references_answer(cell, case):
    """tests/test_extreme_values.py's cases on the CUDA backend (float32: saturation, NaN,
    LayerNorm statistics of huge rows)."""
    from .test_extreme_values import check_extreme

    check_extreme("cuda", cell, case, np.float32)



def test_jordan_cells_name_the_backends_that_have_them():
    pb = make_problem("jordan_tanh_tanh", T=2, B=2, I=3, H=4, P=2)
    with pytest.raises(NotImplementedError, match=r"no jordan_tanh_tanh kernels yet; the CPU "
                                                  r"backends \(reference, numba, cython\)"):
        backends.get("cuda").forward(*pb.args(), **pb.kwargs())


def test_repeated_launches_convert_each_argument_list_once(monkeypatch):
    """A per-step kernel is launched through numba once per distinct argument list (arrays
    by identity, other values by value), then from the prepared list with the step (a Python
    int) updated; where nothing could be prepared, numba launches it every time."""
    import ctypes

    from fastrnn.backends.cuda import launch

    class DeviceArray:
        __cuda_ndarray__ = True

    a, b = DeviceArray(), DeviceArray()
    through_numba, prepared_launches = [], []

    def prepare(configured, args):
        step = ctypes.c_int64(args[0])
        return (lambda arr, s, flag: prepared_launches.append((arr, s.value, flag)),
                (args[1], step, args[2]), [(0, step)])

    monkeypatch.setattr(launch, "_prepare", prepare)
    repeated = launch.Repeated(lambda *args: through_numba.append(args))
    for s, arr, flag in [(0, a, True), (1, b, True), (2, a, True), (3, b, True), (4, a, False),
                         (5, a, False)]:
        repeated(s, arr, flag)
    assert through_numba == [(0, a, True), (1, b, True), (4, a, False)]
    assert prepared_launches == [(a, 2, True), (b, 3, True), (a, 5, False)]

    monkeypatch.setattr(launch, "_prepare", lambda configured, args: None)
    repeated, through_numba[:] = launch.Repeated(lambda *args: through_numba.append(args)), []
    for s in range(3):
        repeated(s, a, True)
    assert through_numba == [(0, a, True), (1, a, True), (2, a, True)]
