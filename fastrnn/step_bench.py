"""Single steps: fastrnn's cells beside torch.nn's, and the char-LM sampler's characters/s.

Cells (``fastrnn bench --steps``): the NumPy cell (``fastrnn.LSTMCell`` ...), ``fastrnn.torch``'s
cell and torch.nn's cell, float32, I = H, in two modes: "inference" (one step, nothing kept)
and "decoder50" (a 50-step decoder loop forward, then backward through all 50 steps from the
last state's gradient: BPTT as a decoder trains). All runners of one case are timed in
interleaved blocks (:func:`fastrnn.bench.measure_interleaved`); torch gets the threads fastrnn
may use.

Sampling: characters per second of :func:`fastrnn.charlm.sample` (the recurrent layer one
step per character on the single-step path) beside the same model run through its layer
forward at T=1 with a stateful layer, which is how the sampler ran before the single-step path
(an untrained model of ``fastrnn demo``'s shape: Embedding 48 -> LSTM 1x256 -> Linear).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import charlm
from .bench import measure_interleaved, usable_cpus

#: (B, H) of the cell cases, I = H
CELL_SHAPES = ((1, 128), (1, 256), (8, 128), (8, 256))
CELL_MODES = ("inference", "decoder50")
CELL_CLASSES = ("LSTMCell", "GRUCell")
DECODER_STEPS = 50


@dataclass
class StepResult:
    cell: str
    B: int
    H: int
    mode: str
    #: runner -> median milliseconds ("numpy", "fastrnn.torch", "torch")
    ms: dict[str, float]

    def vs_torch(self, runner: str) -> float | None:
        """`runner`'s speed as a multiple of torch.nn's cell (> 1: faster)."""
        return self.ms["torch"] / self.ms[runner] if "torch" in self.ms else None


def _numpy_runner(cls: str, B: int, H: int, mode: str) -> Callable[[], Any]:
    import fastrnn

    cell = getattr(fastrnn, cls)(H, H, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, H)).astype(np.float32)
    lstm = cls.startswith("LSTM")
    if mode == "inference":
        cell.eval()
        h = np.zeros((B, H), np.float32)
        state = (h, h) if lstm else h
        return lambda: cell(x, state)
    dh_last = np.ones((B, H), np.float32)

    def decoder():
        state = None
        for _ in range(DECODER_STEPS):
            state = cell(x, state)
        dh, dc = dh_last, None
        for _ in range(DECODER_STEPS):
            _, d = cell.backward(dh, dc)
            dh, dc = d if lstm else (d, None)

    return decoder


def _torch_runner(source: Any, cls: str, B: int, H: int, mode: str) -> Callable[[], Any]:
    import torch

    cell = getattr(source, cls)(H, H)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((B, H)).astype(np.float32))
    lstm = cls.startswith("LSTM")
    if mode == "inference":
        def infer():
            with torch.no_grad():
                cell(x)

        return infer

    def decoder():
        state = None
        for _ in range(DECODER_STEPS):
            state = cell(x, state)
        (state[0] if lstm else state).sum().backward()

    return decoder


def cells(min_time: float = 0.5, warmup: float = 0.2,
          progress: Callable[[str], None] | None = None) -> list[StepResult]:
    """Every cell x shape x mode, the runners interleaved; torch's runners only where torch
    is installed."""
    runners_of: dict[str, Callable[..., Callable[[], Any]]] = {"numpy": _numpy_runner}
    try:
        import torch

        from . import torch as fastrnn_torch

        torch.set_num_threads(usable_cpus())
        runners_of["fastrnn.torch"] = lambda *a: _torch_runner(fastrnn_torch, *a)
        runners_of["torch"] = lambda *a: _torch_runner(torch.nn, *a)
    except ImportError:
        pass
    results = []
    for cls in CELL_CLASSES:
        for B, H in CELL_SHAPES:
            for mode in CELL_MODES:
                if progress:
                    progress(f"{cls} B={B} H={H} {mode}")
                timed = measure_interleaved({name: make(cls, B, H, mode)
                                             for name, make in runners_of.items()},
                                            min_time=min_time, warmup=warmup)
                results.append(StepResult(cls, B, H, mode,
                                          {name: s * 1e3 for name, (s, _) in timed.items()}))
    return results


def format_cells(results: list[StepResult]) -> str:
    names = list(results[0].ms) if results else []
    header = f"{'cell':<10}{'B':>3}{'H':>5}  {'mode':<11}" + "".join(
        f"{n + ' ms':>18}" for n in names) + "".join(
        f"{n + ' vs torch':>24}" for n in names if n != "torch" and "torch" in names)
    lines = [header]
    for r in results:
        line = f"{r.cell:<10}{r.B:>3}{r.H:>5}  {r.mode:<11}" + "".join(
            f"{r.ms[n]:>18.3f}" for n in names)
        line += "".join(f"{r.vs_torch(n):>23.2f}x" for n in names
                        if n != "torch" and "torch" in names)
        lines.append(line)
    return "\n".join(lines)


@dataclass
class SamplingResult:
    step_chars_per_s: float
    layer_chars_per_s: float

    def __str__(self) -> str:
        return (f"char-LM sampling (LSTM 1x256): {self.step_chars_per_s:,.0f} chars/s on the "
                f"single-step path, {self.layer_chars_per_s:,.0f} through the layer at T=1: "
                f"{self.step_chars_per_s / self.layer_chars_per_s:.2f}x")


def sampling(length: int = 300, min_time: float = 2.0) -> SamplingResult:
    """Characters per second of charlm.sample against the layer path, interleaved."""
    cfg = charlm.Config(vocab="".join(chr(c) for c in range(32, 127)) + "\n")
    model = charlm.build_model(cfg)  # its Recurrent layer is stateful, as the demo's

    def layer_path():  # the sampler before the single-step path (with sample()'s draw)
        rng = np.random.default_rng(0)
        model.eval()
        model.reset_state()
        logits = model(np.array([[52, 72, 69, 0]]))[0, -1]
        for _ in range(length):
            z = logits.astype(np.float64)
            cdf = np.cumsum(np.exp(z - z.max()))
            nxt = int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right"))
            logits = model(np.array([[nxt]]))[0, -1]
        model.reset_state()

    timed = measure_interleaved(
        {"step": lambda: charlm.sample(model, cfg, "The ", length, seed=0),
         "layer": layer_path}, min_time=min_time, rounds=5, warmup=0.3)
    return SamplingResult(length / timed["step"][0], length / timed["layer"][0])
