"""Numba-backend specifics: the on-disk compile cache."""

import subprocess
import sys

import numpy as np
import pytest

from fastrnn import backends

from .helpers import make_problem

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


def test_a_changed_helper_module_invalidates_the_kernel_cache(monkeypatch):
    """Numba's own stamp covers a kernel's file only; the backend's locator adds the hash of
    the helpers the kernels inline (_common.py), so a changed helper means a stale cache."""
    from fastrnn.backends.numba_cpu import _common, lstm

    locator = lstm.forward._cache._impl.locator
    assert isinstance(locator, (_common.DirKernelCacheLocator, _common.KernelCacheLocator,
                                _common.UserKernelCacheLocator))
    stamp = locator.get_source_stamp()
    assert stamp[1] == _common.helpers_hash()
    monkeypatch.setattr(_common, "helpers_hash", lambda: "an edited _common.py")
    assert locator.get_source_stamp() != stamp
    assert locator.get_source_stamp()[0] == stamp[0]  # the kernel file itself is unchanged
