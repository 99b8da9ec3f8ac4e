"""ConvLSTM: fastrnn's kernels beside the per-step torch composition, measured in one run.

``fastrnn bench --convlstm``: one shape (issue 15's: T=10, B=8, 16x16 frames, C=F=32, k=3,
one layer, float32) in two modes: "training" (forward + backward: every weight's gradient and
the initial states'; the frames are data, so no gradient for them) and "inference" (forward,
nothing kept). Runners: the NumPy module :class:`fastrnn.ConvLSTM2d` on every ConvLSTM
backend (the reference included), ``fastrnn.torch.ConvLSTM2d``, and the module users write in
torch (a ``torch.nn.Conv2d`` on ``cat([x_t, h])`` per step under autograd, torch's threads =
fastrnn's). Interleaved blocks (:func:`fastrnn.bench.measure_interleaved`), medians.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backends
from .bench import measure_interleaved, usable_cpus

#: T, B, C, F, frame side, k
SHAPE = (10, 8, 32, 32, 16, 3)
MODES = ("training", "inference")


@dataclass
class ConvResult:
    mode: str
    #: runner -> median milliseconds
    ms: dict[str, float]

    def vs(self, runner: str, base: str) -> float | None:
        """`runner`'s speed as a multiple of `base`'s (> 1: faster)."""
        return self.ms[base] / self.ms[runner] if base in self.ms else None


def _inputs(dtype=np.float32):
    T, B, C, F, S, _ = SHAPE
    rng = np.random.default_rng(0)
    return (rng.standard_normal((T, B, C, S, S)).astype(dtype),
            rng.standard_normal((T, B, F, S, S)).astype(dtype))


def _numpy_runner(backend: str, mode: str) -> Callable[[], Any]:
    from .conv_lstm import ConvLSTM2d

    T, B, C, F, S, k = SHAPE
    m = ConvLSTM2d(C, F, k, backend=backend, seed=0)
    x, dy = _inputs()
    if mode == "inference":
        m.eval()
        return lambda: m(x)

    def step():
        m(x)
        m.backward(dy, input_grad=False)

    return step


def _torch_runners(mode: str) -> dict[str, Callable[[], Any]]:
    import torch

    from . import torch as fastrnn_torch

    T, B, C, F, S, k = SHAPE
    x, dy = (torch.from_numpy(a) for a in _inputs())
    ours = fastrnn_torch.ConvLSTM2d(C, F, k)
    conv = torch.nn.Conv2d(C + F, 4 * F, k, padding=k // 2)
    h0 = torch.zeros(B, F, S, S, requires_grad=mode == "training")

    def composed():  # the per-step module users write in torch
        h, c, ys = h0, h0, []
        for t in range(T):
            i, f, g, o = conv(torch.cat([x[t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            ys.append(h)
        return torch.stack(ys)

    def drop_in():
        return ours(x, (h0[None], h0[None]))[0]

    def run(module: Callable[[], Any]) -> Callable[[], Any]:
        if mode == "inference":
            def infer():
                with torch.no_grad():
                    module()
            return infer
        return lambda: module().backward(dy)

    return {"fastrnn.torch": run(drop_in), "torch": run(composed)}


def compare(min_time: float = 1.0, warmup: float = 0.3,
            modes: tuple[str, ...] = MODES) -> list[ConvResult]:
    """Every mode, the runners interleaved; torch's only where torch is installed."""
    names = list(backends.CONV_MODULES)
    results = []
    for mode in modes:
        runners: dict[str, Callable[[], Any]] = {}
        for name in names:
            try:
                backends.conv(name)
            except ValueError:  # not available here
                continue
            runners[name] = _numpy_runner(name, mode)
        try:
            import torch

            torch.set_num_threads(usable_cpus())
            runners.update(_torch_runners(mode))
        except ImportError:
            pass
        timed = measure_interleaved(runners, min_time=min_time, warmup=warmup)
        results.append(ConvResult(mode, {name: s * 1e3 for name, (s, _) in timed.items()}))
    return results


def format_results(results: list[ConvResult]) -> str:
    T, B, C, F, S, k = SHAPE
    lines = [f"ConvLSTM T={T} B={B} {S}x{S} C={C} F={F} k={k}, float32 (ms, median; speed-up "
             "against the reference and the per-step torch composition):"]
    for r in results:
        for name, ms in r.ms.items():
            ref = r.vs(name, "reference")
            tor = r.vs(name, "torch")
            lines.append(f"  {r.mode:<10}{name:<15}{ms:10.1f} ms"
                         + (f"{ref:9.2f}x ref" if ref else "")
                         + (f"{tor:9.2f}x torch" if tor else ""))
    return "\n".join(lines)
