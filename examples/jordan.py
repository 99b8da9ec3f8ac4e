"""Jordan vs Elman: where recurrence through the output helps, and where it cannot remember.

    python examples/jordan.py            # both tasks, ~12 s on 2 cores
    python examples/jordan.py --quick    # the test suite's shorter run (same bars)

A Jordan network (fastrnn.JordanRNN) feeds its previous *output* back, an Elman network
(fastrnn.RNN) its previous hidden state. Two per-step regression tasks on inputs x_t ~ U(-1, 1):

- feedback: y_t = tanh(1.5 y_{t-1} + x_t), the target's own recurrence. A Jordan network with
  one output unit learns it outright: its state *is* the previous target.
- memory: y_t = x_{t-2}, recall two steps back. A Jordan network with one output unit carries
  only y_{t-1} (the input of three steps ago, once trained) and cannot hold x_{t-1} and
  x_{t-2} besides: it stays near the target's variance, while an Elman network with a
  16-unit hidden state learns the delay.

Prints each network's test MSE against the target's variance (what predicting the mean
scores) and exits 1 when a bar below is missed.
"""

from __future__ import annotations

import argparse

import numpy as np

from fastrnn import nn, optim
from fastrnn.train import fit

#: the bars both runs assert, as fractions of the target's variance
FEEDBACK_JORDAN_MAX = 0.01
MEMORY_ELMAN_MAX = 0.10
MEMORY_JORDAN_MIN = 0.50


def make_task(task: str, n: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y [n, T, 1] float32 for "feedback" or "memory"."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, T)).astype(np.float32)
    y = np.zeros_like(x)
    if task == "feedback":
        prev = np.zeros(n, np.float32)
        for t in range(T):
            prev = np.tanh(1.5 * prev + x[:, t])
            y[:, t] = prev
    elif task == "memory":
        y[:, 2:] = x[:, :-2]
    else:
        raise ValueError(f"task must be 'feedback' or 'memory', got {task!r}")
    return x[..., None], y[..., None]


class Jordan(nn.Module):
    """JordanRNN whose output layer is the prediction (one unit, identity activation)."""

    def __init__(self, hidden: int, seed: int):
        super().__init__()
        self.rnn = nn.Recurrent("jordan_tanh_identity", 1, hidden, output_size=1, seed=seed)

    def children(self):
        return {"rnn": self.rnn}

    def forward(self, x):
        return self.rnn(x)

    def backward(self, dy):
        return self.rnn.backward(dy)


class Elman(nn.Module):
    """Elman RNN and a per-step Linear read-out."""

    def __init__(self, hidden: int, seed: int):
        super().__init__()
        self.rnn = nn.Recurrent("rnn_tanh", 1, hidden, seed=seed)
        self.head = nn.Linear(hidden, 1, seed=seed + 1)

    def children(self):
        return {"rnn": self.rnn, "head": self.head}

    def forward(self, x):
        return self.head(self.rnn(x))

    def backward(self, dy):
        return self.rnn.backward(self.head.backward(dy))


def train(model: nn.Module, task: str, n: int, epochs: int, seed: int) -> float:
    """Train on `n` sequences of `task`; returns the test MSE as a fraction of the target's
    variance."""
    x, y = make_task(task, n, 30, seed)
    x_test, y_test = make_task(task, 500, 30, seed + 1000)
    batch = 32
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(epochs)]

    def batches(epoch):
        perm = orders[epoch]
        return [(x[perm[i:i + batch]], y[perm[i:i + batch]]) for i in range(0, n, batch)]

    opt = optim.Adam(model, lr=1e-2)
    fit(model, nn.MSELoss(), opt, batches, epochs=epochs, clip_norm=1.0,
        scheduler=optim.CosineAnnealingLR(opt, epochs), progress=False, log=None)
    model.eval()
    mse = float(np.mean((model(x_test) - y_test) ** 2))
    return mse / float(np.var(y_test))


def run(quick: bool = False, seed: int = 0, log=print) -> dict[str, float]:
    """Both tasks, both networks: {"<task>_<network>": test MSE / target variance}."""
    n, epochs = (2000, 20) if quick else (4000, 30)
    results = {}
    for task in ("feedback", "memory"):
        for name, model in (("jordan", Jordan(8, seed)), ("elman", Elman(16, seed))):
            results[f"{task}_{name}"] = score = train(model, task, n, epochs, seed)
            log(f"{task:8s} {name:6s} ({model.num_parameters():3d} parameters): "
                f"test MSE {score:.5f} of the target's variance")
    return results


def bars_met(results: dict[str, float]) -> bool:
    return (results["feedback_jordan"] < FEEDBACK_JORDAN_MAX
            and results["memory_elman"] < MEMORY_ELMAN_MAX
            and results["memory_jordan"] > MEMORY_JORDAN_MIN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's shorter run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run(args.quick, args.seed)
    ok = bars_met(results)
    print("bars met" if ok else
          f"bars missed: feedback Jordan < {FEEDBACK_JORDAN_MAX}, memory Elman < "
          f"{MEMORY_ELMAN_MAX}, memory Jordan > {MEMORY_JORDAN_MIN} (of the variance)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
