"""Numba-backend specifics: the on-disk compile cache."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastrnn import backends

from .helpers import make_problem

numba_cpu = pytest.importorskip("fastrnn.backends.numba_cpu")
pytestmark = pytest.mark.skipif(not backends.available()["numba"][0], reason="numba missing")


def test_second_process_loads_kernels_from_the_cache():
    """cache=True: after this process compiled them, a new process must not compile again."""
    pb = make_problem("gru", T=3, B=2, I=2, H=3, dtype=np.float32)
    nb = backends.get("numba")
    nb.backward(pb.dy, pb.dh_n, None, nb.forward(*pb.args(), **pb.kwargs()).ctx)
    code = (
        "import numpy as np, time; from fastrnn import backends\n"
        "from fastrnn.backends.numba_cpu import gru\n"
        "nb = backends.get('numba'); x = np.ones((3, 2, 2), np.float32)\n"
        "w = np.ones((9, 2), np.float32) * 0.1; u = np.ones((9, 3), np.float32) * 0.1\n"
        "b = np.zeros(9, np.float32); h = np.zeros((2, 3), np.float32)\n"
        "out = nb.forward('gru', x, w, u, b, b, h)\n"
        "nb.backward(out.y, None, None, out.ctx)\n"
        "print(len(gru.forward.stats.cache_misses), len(gru.forward.stats.cache_hits))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    misses, hits = map(int, done.stdout.split())
    assert misses == 0 and hits >= 1


def test_a_changed_common_module_invalidates_the_kernel_cache():
    """Numba's cache does not see changes to inlined helpers; the backend touches the kernel
    files when _common.py's hash differs from the one it last saw."""
    marker = numba_cpu._HERE / "__pycache__" / "fastrnn-common.stamp"
    if not os.access(numba_cpu._HERE, os.W_OK):
        pytest.skip("read-only installation")
    kernel = numba_cpu._HERE / "lstm.py"
    os.utime(kernel, (1_000_000_000, 1_000_000_000))
    marker.write_text("stale")
    numba_cpu._refresh_stale_cache()
    assert kernel.stat().st_mtime > 1_000_000_000
    assert marker.read_text() != "stale"
    before = kernel.stat().st_mtime
    numba_cpu._refresh_stale_cache()  # unchanged: nothing is touched
    assert kernel.stat().st_mtime == before
