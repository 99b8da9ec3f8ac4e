"""pytest-benchmark suite: ``pytest bench/ --benchmark-only``.

Grouped by cell x shape x mode, one benchmark per backend (reference, numba, ... and torch
when installed), the same cases as ``fastrnn bench`` (see fastrnn/bench.py). Compare with
``--benchmark-group-by=group --benchmark-sort=mean``.
"""

import pytest

from fastrnn import bench

BACKENDS = bench.bench_backends()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", bench.grid(), ids=lambda c: f"{c.cell}-{c.shape}-{c.mode}")
def test_rnn(benchmark, case, backend):
    benchmark.group = f"{case.cell} {case.shape} {case.mode}"
    benchmark.extra_info.update(gflop=case.flops / 1e9, dims=case.dims)
    run = bench.make_runner(case, backend)
    run()  # warm-up: JIT compile or load from cache
    benchmark(run)
