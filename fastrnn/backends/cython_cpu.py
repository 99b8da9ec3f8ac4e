"""Cython CPU backend: the fused kernels compiled ahead of time from src_kernels/.

The same time loops as the Numba backend (each cell in its own extension module, the gate
passes in C so that gcc vectorises them, BLAS through SciPy's cython_blas) behind the shared
:class:`~fastrnn.backends.fused.FusedDriver`: no JIT, so the first call is as fast as any.
Unavailable, with the reason, when the extensions were not built (no C compiler at install).
"""

from __future__ import annotations

from types import SimpleNamespace

from .fused import FusedDriver

#: The kernels release the GIL, so the stack may run directions concurrently.
RELEASES_GIL = True

try:
    from .._kernels import gru, lstm, rnn, seq
except ImportError as exc:  # not built: reported by available()
    _missing: ImportError | None = exc
else:
    _missing = None


def available() -> tuple[bool, str]:
    if _missing is not None:
        return False, (f"extensions not built ({_missing}); reinstall with a C compiler "
                       "at hand: pip install --force-reinstall --no-deps .")
    return True, "Cython extensions compiled at install"


if _missing is None:
    _driver = FusedDriver(SimpleNamespace(
        rnn_forward=rnn.forward, rnn_backward=rnn.backward,
        lstm_forward=lstm.forward, lstm_backward=lstm.backward,
        gru_forward=gru.forward, gru_backward=gru.backward,
        project=seq.project, matmul_nn=seq.matmul_nn, matmul_tn=seq.matmul_tn,
        column_sums=seq.column_sums,
    ))
    rnn_forward, rnn_backward = _driver.rnn_forward, _driver.rnn_backward
    lstm_forward, lstm_backward = _driver.lstm_forward, _driver.lstm_backward
    gru_forward, gru_backward = _driver.gru_forward, _driver.gru_backward
