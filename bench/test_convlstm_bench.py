"""pytest-benchmark suite for ConvLSTM: ``pytest bench/ --benchmark-only``.

One group per mode (training, inference) at fastrnn/conv_bench.py's shape, one benchmark per
runner: every ConvLSTM backend (the reference included), and with torch installed
``fastrnn.torch.ConvLSTM2d`` and the per-step torch composition (``fastrnn bench --convlstm``
runs the same runners interleaved).
"""

import pytest

from fastrnn import backends, conv_bench


def _runners(mode):
    runners = {}
    for name in backends.CONV_MODULES:
        try:
            backends.conv(name)
        except ValueError:
            continue
        runners[name] = lambda name=name: conv_bench._numpy_runner(name, mode)
    try:
        import torch  # noqa: F401
    except ImportError:
        return runners
    for name in ("fastrnn.torch", "torch"):
        runners[name] = lambda name=name: conv_bench._torch_runners(mode)[name]
    return runners


CASES = [(mode, name, make) for mode in conv_bench.MODES
         for name, make in _runners(mode).items()]


@pytest.mark.parametrize("mode,runner,make", CASES, ids=[f"{m}-{r}" for m, r, _ in CASES])
def test_convlstm(benchmark, mode, runner, make):
    benchmark.group = f"convlstm {mode}"
    run = make()
    run()  # warm-up: JIT compile or load from cache
    benchmark(run)
