"""The CUDA backend against the float64 reference at sizes the simulator cannot run: the
per-step kernels over several tiles, every cell, float32 and float64, ragged, reverse, an LSTM
with projection. Prints one line per case and exits 1 if any fails."""

import sys
import time

import numpy as np

from tests.helpers import make_problem
from tests.test_conformance import check_backend

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "layernorm_lstm", "layernorm_gru"]
SHAPES = [(20, 64, 256, 256, 0, np.float32), (7, 33, 65, 129, 0, np.float64),
          (10, 16, 512, 512, 0, np.float32), (9, 5, 31, 200, 77, np.float64)]


def main() -> int:
    failed = 0
    for cell in CELLS:
        for T, B, I, H, P, dtype in SHAPES:
            if P and cell != "lstm":
                continue
            start = time.perf_counter()
            try:
                check_backend("cuda", make_problem(cell, T, B, I, H, P=P, ragged=True,
                                                   reverse=B % 2 == 1, seed=H), dtype)
                verdict = "ok"
            except Exception as exc:  # report every case, then fail
                verdict, failed = f"FAIL {exc!r:.300}", failed + 1
            print(f"{verdict} {cell} T={T} B={B} I={I} H={H} P={P} {dtype.__name__} "
                  f"{time.perf_counter() - start:.2f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
