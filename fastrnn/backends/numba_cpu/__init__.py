"""Numba CPU backend: fused forward and BPTT kernels compiled by Numba (cached on disk).

Each cell's time loops live in their own module (:mod:`.rnn`, :mod:`.lstm`, :mod:`.gru`) and
the whole-sequence products in :mod:`._common`; :class:`~fastrnn.backends.fused.FusedDriver`
implements the kernel contract around them (batch parts, ragged order, weight gradients).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

from ..fused import FusedDriver

#: The kernels release the GIL, so the stack may run directions concurrently.
RELEASES_GIL = True
_HERE = Path(__file__).parent


def available() -> tuple[bool, str]:
    import numba

    return True, f"numba {numba.__version__}, kernels JIT-compiled on first use and cached"


def _refresh_stale_cache() -> None:
    """Numba keys a cached kernel on its own file's mtime and size only, not on the helpers it
    inlines from _common.py: when _common.py changes (an upgrade of an editable install, a
    developer's edit), touch the kernel files so their cached machine code is rebuilt rather
    than silently reused."""
    stamp = hashlib.sha256((_HERE / "_common.py").read_bytes()).hexdigest()
    marker = _HERE / "__pycache__" / "fastrnn-common.stamp"
    try:
        if marker.read_text() == stamp:
            return
    except OSError:
        pass
    try:
        for name in ("rnn.py", "lstm.py", "gru.py"):
            os.utime(_HERE / name)
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(stamp)
    except OSError:  # read-only install: pip gave every file a fresh mtime anyway
        pass


def _kernels() -> SimpleNamespace:
    _refresh_stale_cache()
    from . import _common, gru, lstm, rnn

    return SimpleNamespace(
        rnn_forward=rnn.forward, rnn_backward=rnn.backward,
        lstm_forward=lstm.forward, lstm_backward=lstm.backward,
        gru_forward=gru.forward, gru_backward=gru.backward,
        project=_common.project, matmul_nn=_common.matmul_nn, matmul_tn=_common.matmul_tn,
        column_sums=_common.column_sums,
    )


_driver = FusedDriver(_kernels())
rnn_forward, rnn_backward = _driver.rnn_forward, _driver.rnn_backward
lstm_forward, lstm_backward = _driver.lstm_forward, _driver.lstm_backward
gru_forward, gru_backward = _driver.gru_forward, _driver.gru_backward
