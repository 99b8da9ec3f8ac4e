"""Cython CPU backend: the fused time loops compiled ahead of time from src_kernels/.

The same time loops as the Numba backend (each cell in its own extension module, the gate
passes in C so that gcc vectorises them, the per-step product on a weight packed once per call
where the CPU has AVX2 (``FASTRNN_GEMM=blas|packed`` forces one), the whole-sequence GEMMs
through SciPy's cython_blas) behind the shared
:class:`~fastrnn.backends.driver.Driver`: no JIT, so the first call is as fast as any.
Unavailable, with the reason, when the extensions were not built (no C compiler at install).
"""

from __future__ import annotations

import os

from .driver import Driver, TimeLoop
from .host import HostProducts

#: The kernels release the GIL, so the stack may run directions concurrently.
RELEASES_GIL = True
#: Typed memoryviews refuse read-only buffers: the contract copies such an input once.
READS_READ_ONLY = False

try:
    from .._kernels import gru, jordan, ln_gru, ln_lstm, lstm, rnn, seq
except ImportError as exc:  # not built: reported by available()
    _missing: ImportError | None = exc
else:
    _missing = None


#: FASTRNN_GEMM: unset (chosen from the CPU), "blas" or "packed" (src_kernels/packed.h)
_gemm = os.environ.get("FASTRNN_GEMM", "")
_bad_gemm = None if _gemm in ("", "blas", "packed") else \
    f"FASTRNN_GEMM must be 'blas' or 'packed' (or unset), got {_gemm!r}"


def available() -> tuple[bool, str]:
    if _bad_gemm is not None:
        return False, _bad_gemm
    if _missing is not None:
        return False, (f"extensions not built ({_missing}); reinstall with a C compiler "
                       "at hand: pip install --force-reinstall --no-deps .")
    packed, why = seq.step_product()
    product = "W_hh packed once per call" if packed else "a BLAS call"
    return True, f"Cython extensions compiled at install; per-step product: {product} ({why})"


#: Parts need this much work each (multiply-adds of forward products, Driver.min_part_work).
#: Measured on 2 cores (training, float32): LSTM T=32 B=8 H=128 (17M per part) 3.2 ms in two
#: parts vs 2.4 in one; T=50 (26M) 4.1 vs 5.9; GRU T=10 B=32 H=128 (16M) 3.5 vs 2.8; LSTM
#: (21M) 3.6 vs 6.3; one step (T=1) B=8 H=128 1.31 ms vs 0.48, B=64 H=512 16.0 vs 12.8.
MIN_PART_WORK = 20_000_000

if _missing is None:
    # The packed per-step product keeps its rate down to 4 rows (its micro-kernel's height)
    # and on narrow products, where a BLAS call per step needed 8 rows and G*H >= 384 columns
    # to gain from parts (Driver). Measured on 2 cores: LSTM T=100 B=8 H=128 training 8.3 ->
    # 6.7 ms with B=8 in two parts; Elman RNN T=100 B=64 H=256 training 58 -> 44 ms in parts.
    _packed = seq.step_product()[0]
    driver = Driver({name: TimeLoop(m.forward, m.backward)
                     for name, m in (("rnn", rnn), ("lstm", lstm), ("gru", gru),
                                     ("ln_lstm", ln_lstm), ("ln_gru", ln_gru),
                                     ("jordan", jordan))},
                    HostProducts(seq.project, seq.matmul_nn, seq.matmul_tn, seq.column_sums,
                                 seq.layer_norm, seq.layer_norm_backward, seq.column_dots,
                                 seq.blas_free_rows()),
                    min_part_rows=4 if _packed else 8, min_part_columns=0 if _packed else 384,
                    min_part_work=MIN_PART_WORK)
    forward, backward, supports = driver.forward, driver.backward, driver.supports
    step_forward, step_backward = driver.step_forward, driver.step_backward
    row_products = driver.row_products
