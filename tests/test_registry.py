"""The backend registry, the kernel contract's argument checks, and ``fastrnn info``."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import backends
from fastrnn.cli import main

from .helpers import make_problem


def test_available_reports_every_known_backend_with_a_reason():
    status = backends.available()
    assert set(status) == set(backends.names())
    assert status["reference"] == (True, "NumPy reference")
    assert all(isinstance(why, str) and why for _, why in status.values())


def test_cuda_names_a_numpy_its_numba_cuda_cannot_compile_with(monkeypatch):
    """numba-cuda 0.30.4 fails at its first kernel compile under numpy 2.5 (np.row_stack is
    gone): the CUDA backend reports that as the reason it is unavailable, before a call."""
    from fastrnn.backends import cuda

    def broken(name):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(cuda.importlib, "import_module", broken)
    assert "cannot compile kernels with numpy" in cuda._compiler_problem()
    assert "row_stack" in cuda._compiler_problem()

    def other_numba(name):
        raise ImportError(name)

    monkeypatch.setattr(cuda.importlib, "import_module", other_numba)
    assert cuda._compiler_problem() is None


def test_get_default_and_environment_variable(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    assert backends.get().name == backends.default_name()
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert backends.get().name == "reference"
    monkeypatch.setenv(backends.ENV_VAR, "warp-drive")
    with pytest.raises(ValueError,
                       match=r"FASTRNN_BACKEND='warp-drive'[\s\S]*reference: available"):
        backends.get()
    assert backends.get("reference").name == "reference"  # an explicit name wins


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'gpu9000'[\s\S]*reference: available"):
        backends.get("gpu9000")


def test_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setitem(backends._MODULES, "broken", "fastrnn.backends.does_not_exist")
    monkeypatch.delitem(backends._status, "broken", raising=False)
    with pytest.raises(ValueError, match=r"'broken' is not available[\s\S]*ModuleNotFoundError"):
        backends.get("broken")
    backends._status.pop("broken")


REF = backends.get("reference")


def call(pb, **override):
    names = ("cell", "x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
    args = dict(zip(names, pb.args(), strict=True))
    kw = pb.kwargs()
    for k, v in override.items():
        (args if k in args else kw)[k] = v
    return REF.forward(*args.values(), **kw)


@pytest.mark.parametrize("override,error,match", [
    (dict(cell="lstmx"), ValueError, "cell must be one of"),
    (dict(x=np.zeros((3, 2), np.float32)), ValueError, r"x must be a 3-d array"),
    (dict(x=[[[1.0]]]), ValueError, r"x must be a 3-d array"),
    (dict(x=np.zeros((0, 2, 3), np.float32)), ValueError, "at least one time step"),
    (dict(w_ih=np.zeros((16, 4), np.float32)), ValueError, r"w_ih must have shape \(16, 3\)"),
    (dict(w_ih=np.zeros((16, 3), np.float64)), TypeError, "w_ih has dtype float64"),
    (dict(w_hh=np.zeros((15, 4), np.float32)), ValueError, r"w_hh must be a 2-d array \[4\*H"),
    (dict(b_ih=None), ValueError, "both be given or both be None"),
    (dict(b_hh=np.zeros(15, np.float32)), ValueError, r"b_hh must have shape \(16,\)"),
    (dict(h0=np.zeros((2, 5), np.float32)), ValueError, r"h0 must have shape \(2, 4\)"),
    (dict(h0=np.zeros((2, 4), np.int64)), TypeError, "h0 must be float32 or float64"),
    (dict(c0=None), ValueError, "c0 is required"),
    (dict(w_hr=np.zeros((2, 3), np.float32)), ValueError, r"w_hr must be a 2-d array \[P, 4\]"),
    (dict(lengths=[1, 2, 3]), ValueError, r"lengths must have shape \(2,\)"),
    (dict(lengths=[1, 9]), ValueError, r"lengths must lie in \[0, 5\]"),
    (dict(lengths=np.array([1.5, 2])), TypeError, "lengths must hold integers"),
    (dict(reverse="False"), TypeError, "reverse must be True or False, got str 'False'"),
    (dict(reverse=1), TypeError, "reverse must be True or False, got int 1"),
    (dict(training=None), TypeError, "training must be True or False"),
])
def test_kernel_contract_rejects_bad_arguments(override, error, match):
    pb = make_problem("lstm", T=5, B=2, I=3, H=4, dtype=np.float32)
    with pytest.raises(error, match=match):
        call(pb, **override)


def test_kernel_contract_checks_backward_arguments():
    pb = make_problem("gru", T=5, B=2, I=3, H=4)
    out = call(pb)
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 2, 4\)"):
        REF.backward(pb.dy[:3], None, None, out.ctx)
    with pytest.raises(ValueError, match="dc_n is only defined for lstm"):
        REF.backward(pb.dy, None, pb.dh_n, out.ctx)
    with pytest.raises(ValueError, match="training=True"):
        REF.backward(pb.dy, None, None, None)
    assert call(pb, training=False).ctx is None
    with pytest.raises(ValueError, match="w_hr .* only defined for lstm"):
        call(pb, w_hr=np.zeros((2, 4)))


def test_noncontiguous_arguments_are_accepted_and_give_the_same_result():
    pb = make_problem("rnn_tanh", T=4, B=3, I=2, H=5)
    ref = call(pb, training=False).y
    x_f = np.asfortranarray(pb.x)
    np.testing.assert_array_equal(call(pb, x=x_f, training=False).y, ref)


def test_info_command_prints_versions_backends_and_blas(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "reference" in out and "BLAS" in out and "threads=" in out
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["reference"]["available"] is True
    assert info["blas"] and all("num_threads" in lib for lib in info["blas"])


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "fastrnn", "info"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "backends (default:" in done.stdout


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "info" in capsys.readouterr().out


def test_bench_command_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--cells", "gru", "--shapes", "streaming", "--modes", "inference",
                 "--backends", "reference", "--min-time", "0.01", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "gru" in text and "reference" in text and "GFLOP/s" in text and "openblas" in text
    saved = json.loads(out.read_text())
    (row,) = saved["results"]
    assert row["backend"] == "reference" and row["median_ms"] > 0 and row["vs_reference"] == 1
    assert saved["machine"]["blas"]


def test_bench_command_rejects_unknown_backend(capsys):
    assert main(["bench", "--backends", "warp", "--quick"]) == 1
    assert "unknown backend 'warp'" in capsys.readouterr().err


def test_bench_quick_leaves_out_the_large_shape(capsys):
    assert main(["bench", "--cells", "rnn_tanh", "--modes", "inference", "--backends",
                 "reference", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "streaming" in out and "packed" in out and "large" not in out


def test_bench_table_has_a_cudnn_column_only_with_gpu_results():
    from fastrnn.bench import Result, format_table

    cpu = [Result("gru", "medium", "training", "numba", 2.0, 10.0, 3.0, 1.5)]
    assert "vs cuDNN" not in format_table(cpu)
    gpu = cpu + [Result("gru", "medium", "training", "fastrnn.torch-cuda", 0.5, 40.0, 12.0, 6.0,
                        1.25)]
    lines = format_table(gpu).splitlines()
    assert "vs cuDNN" in lines[0]
    assert lines[-1].split()[-1] == "1.25x" and lines[-2].split()[-1] == "-"


def test_contention_counts_only_other_processes_beyond_clock_rounding():
    from fastrnn.bench import contended

    # (all processes' CPU seconds, this process's): this process alone used 0.2 s
    assert not contended((10.0, 1.0), (10.2, 1.2), wall=0.1)
    # another process used 0.1 s of a 0.1 s block: contended; 0.04 s (within the 0.3 x wall
    # threshold plus two 10 ms ticks of rounding): not
    assert contended((10.0, 1.0), (10.3, 1.2), wall=0.1)
    assert not contended((10.0, 1.0), (10.24, 1.2), wall=0.1)
    assert not contended(None, (10.3, 1.2), wall=0.1)  # not measurable: never contended


def test_measure_interleaved_rotates_the_order_and_reruns_contended_blocks(monkeypatch):
    from fastrnn import bench

    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    readings = iter([(0.0, 0.0), (5.0, 0.0)] + [(0.0, 0.0)] * 1000)  # first block contended
    monkeypatch.setattr(bench, "cpu_seconds", lambda: next(readings))
    timed = bench.measure_interleaved(runners, min_time=0.0, rounds=3, warmup=0.0, settle=0.0)
    assert set(timed) == {"a", "b", "c"} and all(t[0] >= 0 for t in timed.values())
    assert timed["a"][1] == 1 and timed["b"][1] == 0 and timed["c"][1] == 0
    measured = calls[3:]  # after one warm-up call each (blocks start with an untimed call)
    firsts = [measured[0]] + [measured[i] for i in range(1, len(measured))
                              if measured[i] != measured[i - 1]]
    assert firsts == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # a's block ran twice


def test_bench_grid_has_pytorchs_standard_shape_and_quick_leaves_it_out(capsys):
    from fastrnn import bench

    assert bench.SHAPES["standard"] == (100, 64, 512, 512)
    assert {c.shape for c in bench.grid()} >= {"standard", "large"}
    assert main(["bench", "--cells", "rnn_tanh", "--modes", "inference", "--backends",
                 "reference", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "standard" not in out.split("\n", 1)[1] and "contention:" in out
    assert "threads for fastrnn and torch" in out


def test_info_names_the_cpu_and_its_isa():
    from fastrnn.sysinfo import cpu_info

    cpu = cpu_info()
    assert cpu["model"] and cpu["usable_cpus"] >= 1
    assert set(cpu["isa"]) <= {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16",
                               "avx512_fp16", "amx_tile"}


def test_bench_steps_times_the_cells_and_the_sampler(tmp_path, capsys, monkeypatch):
    from fastrnn import step_bench

    monkeypatch.setattr(step_bench, "CELL_SHAPES", ((2, 8),))
    out = tmp_path / "bench.json"
    assert main(["bench", "--cells", "gru", "--shapes", "streaming", "--modes", "inference",
                 "--backends", "reference", "--steps", "--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decoder50" in text and "chars/s on the single-step path" in text
    steps = json.loads(out.read_text())["machine"]["steps"]
    assert {(r["cell"], r["mode"]) for r in steps["cells"]} == {
        (c, m) for c in ("LSTMCell", "GRUCell") for m in ("inference", "decoder50")}
    assert all(ms > 0 for r in steps["cells"] for ms in r["ms"].values())
    assert steps["sampling"]["step_chars_per_s"] > 0 < steps["sampling"]["layer_chars_per_s"]
