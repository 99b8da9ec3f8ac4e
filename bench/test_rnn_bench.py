"""pytest-benchmark suite: ``pytest bench/ --benchmark-only``.

Grouped by cell x shape x mode, one benchmark per backend (reference, numba, ... and torch
when installed), the same cases as ``fastrnn bench`` and ``fastrnn bench --layernorm`` (see
fastrnn/bench.py; torch's side of a LayerNorm case is the cell composed per step). Compare with
``--benchmark-group-by=group --benchmark-sort=mean``.
"""

import pytest

from fastrnn import bench

BACKENDS = bench.bench_backends()


CASES = bench.grid() + bench.grid(("layernorm_lstm", "layernorm_gru"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.cell}-{c.shape}-{c.mode}")
def test_rnn(benchmark, case, backend):
    if not bench.runs(case, backend):
        pytest.skip(f"{backend} has no {case.cell} kernels")
    benchmark.group = f"{case.cell} {case.shape} {case.mode}"
    benchmark.extra_info.update(gflop=case.flops / 1e9, dims=case.dims)
    run = bench.make_runner(case, backend)
    run()  # warm-up: JIT compile or load from cache
    benchmark(run)
