"""Numba CPU backend: fused forward and BPTT time loops compiled by Numba (cached on disk).

Each cell's time loops live in their own module (:mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`,
:mod:`.ln_lstm`, :mod:`.ln_gru`, :mod:`.jordan`) and
the whole-sequence products in :mod:`._common`; :class:`~fastrnn.backends.driver.Driver`
implements the kernel contract around them (batch parts, ragged order, weight gradients).
"""

from __future__ import annotations

from ..driver import Driver, TimeLoop
from ..host import HostProducts
from . import _common, gru, jordan, ln_gru, ln_lstm, lstm, rnn

#: The kernels release the GIL, so the stack may run directions concurrently.
RELEASES_GIL = True


def available() -> tuple[bool, str]:
    import numba

    return True, f"numba {numba.__version__}, kernels JIT-compiled on first use and cached"


driver = Driver(
    {name: TimeLoop(module.forward, module.backward)
     for name, module in (("rnn", rnn), ("lstm", lstm), ("gru", gru), ("ln_lstm", ln_lstm),
                          ("ln_gru", ln_gru), ("jordan", jordan))},
    HostProducts(_common.project, _common.matmul_nn, _common.matmul_tn, _common.column_sums,
                 _common.layer_norm, _common.layer_norm_backward, _common.column_dots),
)
forward, backward, supports = driver.forward, driver.backward, driver.supports
step_forward, step_backward = driver.step_forward, driver.step_backward
row_products = driver.row_products
