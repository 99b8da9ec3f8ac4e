"""The char-LM training step on fastrnn's model API against the same model in torch.

Both sides train the model ``fastrnn demo`` trains (Embedding -> 1-layer LSTM or GRU ->
Linear, stateful truncated BPTT, Adam, gradient-norm clipping at 1) from the same initial
weights on the same batches of the demo's corpus, in interleaved blocks of steps, so their
losses can be compared step by step and their times come from one run. torch gets as many
threads as this process may use (the same cores fastrnn uses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import charlm, nn, optim
from .bench import usable_cpus


@dataclass
class CharLMComparison:
    """Median milliseconds per training step of each side, and how far their losses drifted."""

    cell: str
    batch_size: int
    seq_len: int
    fastrnn_ms: float
    torch_ms: float
    max_loss_diff: float
    steps: int

    @property
    def speedup(self) -> float:
        """fastrnn's speed as a multiple of torch's (> 1: fastrnn is faster)."""
        return self.torch_ms / self.fastrnn_ms

    def chars_per_second(self, ms: float) -> float:
        return self.batch_size * self.seq_len / (ms / 1e3)

    def __str__(self) -> str:
        return (f"char-LM {self.cell.upper()} 1x256, batch {self.batch_size} x {self.seq_len}: "
                f"fastrnn {self.fastrnn_ms:.1f} ms/step "
                f"({self.chars_per_second(self.fastrnn_ms):,.0f} chars/s), torch "
                f"{self.torch_ms:.1f} ms/step ({self.chars_per_second(self.torch_ms):,.0f} "
                f"chars/s): {self.speedup:.2f}x; losses within {self.max_loss_diff:.1e} over "
                f"{self.steps} steps")


def _torch_twin(model: nn.Sequential, cell: str):
    """The same network in torch, holding a copy of `model`'s weights."""
    import torch

    state = model.state_dict()
    V, E = state["0.weight"].shape
    H = state["1.weight_hh_l0"].shape[1]
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](E, H, batch_first=True)
    twin = torch.nn.ModuleDict({"embed": torch.nn.Embedding(V, E), "rnn": recurrent,
                                "out": torch.nn.Linear(H, V)})
    with torch.no_grad():
        twin["embed"].weight.copy_(torch.from_numpy(state["0.weight"]))
        for name, p in twin["rnn"].named_parameters():
            p.copy_(torch.from_numpy(state[f"1.{name}"]))
        twin["out"].weight.copy_(torch.from_numpy(state["2.weight"]))
        twin["out"].bias.copy_(torch.from_numpy(state["2.bias"]))
    return twin


def compare(cell: str = "lstm", steps: int = 120, block: int = 10, batch_size: int = 32,
            seq_len: int = 64, hidden: int = 256, embed: int = 64,
            lr: float = 3e-3) -> CharLMComparison:
    """Train both sides for `steps` steps in alternating blocks of `block` steps (the first
    block of each is warm-up) and return the comparison."""
    import torch

    torch.set_num_threads(usable_cpus())
    text = charlm.default_corpus()
    vocab = charlm.Vocab.from_text(text)
    batches = charlm.stream_batches(vocab.encode(text), batch_size, seq_len)
    batches = [batches[i % len(batches)] for i in range(steps)]
    cfg = charlm.Config(vocab=vocab.chars, cell=cell, hidden=hidden, embed=embed)
    model = charlm.build_model(cfg)
    twin = _torch_twin(model, cell)
    loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model, lr=lr)
    t_opt = torch.optim.Adam(twin.parameters(), lr=lr)
    t_state = None

    def ours(x, y) -> float:
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        optim.clip_grad_norm(model, 1.0)
        opt.step()
        opt.zero_grad()
        return loss

    def theirs(x, y) -> float:
        nonlocal t_state
        h, t_state = twin["rnn"](twin["embed"](torch.from_numpy(x)), t_state)
        t_state = tuple(s.detach() for s in t_state) if cell == "lstm" else t_state.detach()
        logits = twin["out"](h)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(y).reshape(-1))
        t_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        t_opt.step()
        return loss.item()

    times: dict[str, list[float]] = {"fastrnn": [], "torch": []}
    losses: dict[str, list[float]] = {"fastrnn": [], "torch": []}
    for start in range(0, steps, block):
        chunk = batches[start:start + block]
        for name, step in (("fastrnn", ours), ("torch", theirs)):
            t0 = time.perf_counter()
            losses[name] += [step(x.astype(np.int64), y.astype(np.int64)) for x, y in chunk]
            if start > 0:  # the first block warms up
                times[name].append((time.perf_counter() - t0) / len(chunk))
    diff = float(np.max(np.abs(np.subtract(losses["fastrnn"], losses["torch"]))))
    return CharLMComparison(cell, batch_size, seq_len, 1e3 * float(np.median(times["fastrnn"])),
                            1e3 * float(np.median(times["torch"])), diff, steps)
