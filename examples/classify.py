"""Sequence classification with a bidirectional LSTM: which of 4 frequencies is in the noise?

    python examples/classify.py

Each sequence is a sine of one of four frequencies with random phase, amplitude and strong
noise (SNR about 1); a bidirectional LSTM reads it and its final states feed a Linear layer
over the 4 classes. The test accuracy must reach 90% (chance is 25%).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from fastrnn import nn, optim
from fastrnn.train import fit

PERIODS = (6.0, 9.0, 14.0, 22.0)
TARGET_ACCURACY = 0.90


def make_data(n: int, length: int = 48, noise: float = 0.7, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(PERIODS), n)
    t = np.arange(length)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.6, 1.4, (n, 1))
    x = amp * np.sin(2 * np.pi * t / np.array(PERIODS)[labels][:, None] + phase)
    x += noise * rng.standard_normal(x.shape)
    return x[..., None].astype(np.float32), labels


class Classifier(nn.Module):
    def __init__(self, hidden: int = 32, seed: int = 0):
        super().__init__()
        self.rnn = nn.Recurrent("lstm", 1, hidden, bidirectional=True, output="last", seed=seed)
        self.head = nn.Linear(2 * hidden, len(PERIODS), seed=seed + 1)

    def children(self):
        return {"rnn": self.rnn, "head": self.head}

    def forward(self, x):
        return self.head(self.rnn(x))

    def backward(self, dy):
        return self.rnn.backward(self.head.backward(dy))


def run(n_train: int = 4000, epochs: int = 12, hidden: int = 32, seed: int = 0,
        progress: bool = False, log=print) -> float:
    """Train and return the test accuracy (1000 fresh sequences)."""
    x, y = make_data(n_train, seed=seed)
    x_test, y_test = make_data(1000, seed=seed + 1)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n_train) for _ in range(epochs)]

    def batches(epoch):
        p = orders[epoch]
        return [(x[p[i:i + 64]], y[p[i:i + 64]]) for i in range(0, n_train, 64)]

    model = Classifier(hidden, seed)
    opt = optim.AdamW(model, lr=1e-2, weight_decay=1e-4)
    fit(model, nn.CrossEntropyLoss(), opt, batches,
        val_batches=lambda: [(x_test, y_test)], epochs=epochs, clip_norm=1.0,
        scheduler=optim.StepLR(opt, step_size=max(1, epochs // 2), gamma=0.3),
        progress=progress, log=log)
    model.eval()
    accuracy = float((model(x_test).argmax(axis=1) == y_test).mean())
    log(f"test accuracy {accuracy:.3f} (target {TARGET_ACCURACY}, chance {1 / len(PERIODS)})")
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args(argv)
    accuracy = run(epochs=args.epochs, progress=sys.stderr.isatty())
    return 0 if accuracy >= TARGET_ACCURACY else 1


if __name__ == "__main__":
    raise SystemExit(main())
