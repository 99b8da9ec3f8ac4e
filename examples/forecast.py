"""Time-series forecasting with a GRU: one step ahead, against the persistence baseline.

    python examples/forecast.py                      # noisy multi-sine (known structure)
    python examples/forecast.py --csv data.csv --column temperature --plot forecast.png

Windows of `window` past values predict the next one; the last 20% of the series is the test
set. Reports the RMSE of the GRU and of persistence (predict the last seen value).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys

import numpy as np

from fastrnn import nn, optim
from fastrnn.atomic import save_figure
from fastrnn.train import fit


def multi_sine(n: int = 3000, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """Three sines of incommensurate periods plus Gaussian noise."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    clean = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 23 + 1) \
        + 0.3 * np.sin(2 * np.pi * t / 137)
    return (clean + noise * rng.standard_normal(n)).astype(np.float32)


def read_column(path: str, column: str) -> np.ndarray:
    """One numeric column of a CSV file with a header row."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0]:
        raise ValueError(f"{path} has no column {column!r}"
                         + (f" (columns: {', '.join(rows[0])})" if rows else " (it is empty)"))
    try:
        values = np.array([float(r[column]) for r in rows], dtype=np.float32)
    except ValueError as exc:
        raise ValueError(f"column {column!r} of {path} is not numeric: {exc}") from exc
    if len(values) < 100 or not np.all(np.isfinite(values)):
        raise ValueError(f"column {column!r} needs at least 100 finite values")
    return values


class Forecaster(nn.Module):
    """GRU over the window, the last state through a Linear layer: the next value."""

    def __init__(self, hidden: int = 32, seed: int = 0):
        super().__init__()
        self.rnn = nn.Recurrent("gru", 1, hidden, output="last", seed=seed)
        self.head = nn.Linear(hidden, 1, seed=seed + 1)

    def children(self):
        return {"rnn": self.rnn, "head": self.head}

    def forward(self, x):
        return self.head(self.rnn(x[..., None]))[:, 0]

    def backward(self, dy):
        return self.rnn.backward(self.head.backward(dy[:, None]))


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(window)[None, :] + np.arange(len(series) - window)[:, None]
    return series[idx], series[window:]


def run(series: np.ndarray, window: int = 40, hidden: int = 32, epochs: int = 15,
        batch_size: int = 64, seed: int = 0, progress: bool = False, plot: str | None = None,
        log=print) -> dict[str, float]:
    """Train and test; returns {"rmse", "persistence_rmse"} on the last 20% (original units)."""
    mean, std = float(series.mean()), float(series.std()) or 1.0
    z = (series - mean) / std
    x, y = windows(z, window)
    split = int(len(x) * 0.8)
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    rng = np.random.default_rng(seed)
    order = [rng.permutation(split) for _ in range(epochs)]  # a fixed shuffle per epoch

    def batches(epoch):
        perm = order[epoch]
        return [(x_train[perm[i:i + batch_size]], y_train[perm[i:i + batch_size]])
                for i in range(0, split, batch_size)]

    model = Forecaster(hidden, seed)
    opt = optim.Adam(model, lr=1e-2)
    fit(model, nn.MSELoss(), opt, batches, val_batches=lambda: [(x_test, y_test)],
        epochs=epochs, clip_norm=1.0, scheduler=optim.CosineAnnealingLR(opt, epochs),
        progress=progress, log=log)
    model.eval()
    pred = model(x_test) * std + mean
    truth = y_test * std + mean
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    persistence = float(np.sqrt(np.mean((x_test[:, -1] * std + mean - truth) ** 2)))
    log(f"test RMSE: GRU {rmse:.4f}, persistence {persistence:.4f} "
        f"({persistence / rmse:.1f}x better)")
    if plot:
        _plot(truth, pred, plot)
    return {"rmse": rmse, "persistence_rmse": persistence}


def _plot(truth: np.ndarray, pred: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    n = min(300, len(truth))
    ax.plot(truth[:n], label="truth")
    ax.plot(pred[:n], label="GRU forecast")
    ax.set_xlabel("test step")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", help="a CSV file with a header row")
    parser.add_argument("--column", help="the column to forecast (with --csv)")
    parser.add_argument("--window", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--plot", help="save prediction vs truth here (needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        if args.csv:
            if not args.column:
                raise ValueError("--csv needs --column")
            series = read_column(args.csv, args.column)
        else:
            series = multi_sine()
        result = run(series, window=args.window, epochs=args.epochs, plot=args.plot,
                     progress=sys.stderr.isatty())
    except (OSError, ValueError, ImportError) as exc:
        print(f"forecast: error: {exc}", file=sys.stderr)
        return 1
    return 0 if result["rmse"] < result["persistence_rmse"] or math.isnan(result["rmse"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
