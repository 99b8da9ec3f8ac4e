"""Next-frame prediction with ConvLSTM on bouncing squares, against copying the last frame.

    python examples/nextframe.py                     # ~2.5 minutes on 2 cores
    python examples/nextframe.py --plot strip.png    # true vs predicted frames
    python examples/nextframe.py --quick             # the test suite's shorter run

Each sequence shows two 3x3 squares moving 1-2 pixels per frame and bouncing off the walls of
a 16x16 frame (generated in NumPy; nothing to download). The model (fastrnn's model API) reads
frames 0..t with a ConvLSTM (fastrnn.nn.ConvLSTM2d, k=5) and predicts frame t+1 through a
per-pixel read-out; it trains with binary cross-entropy on the pixels. Reported: the MSE of its
predictions on held-out sequences (steps t >= 2, once the motion can be seen) against the
copy-last-frame baseline's on the same frames. Exits 1 if the model does not beat the baseline
by the bar (30%; --quick: 20%).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastrnn import nn, optim
from fastrnn.atomic import save_figure

SIZE, SQUARE, FRAMES = 16, 3, 10
#: the bars: how much lower than the copy-last-frame baseline's the model's test MSE must be
BAR, QUICK_BAR = 0.30, 0.20
#: predictions are scored from this step on (the motion needs two frames to be seen)
FIRST_SCORED = 2


def bouncing_squares(n: int, seed: int, frames: int = FRAMES, size: int = SIZE,
                     squares: int = 2) -> np.ndarray:
    """n sequences [n, frames, 1, size, size] float32 in {0, 1}."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, frames, 1, size, size), np.float32)
    top = size - SQUARE
    for i in range(n):
        pos = rng.integers(0, top + 1, size=(squares, 2))
        vel = rng.choice([-2, -1, 1, 2], size=(squares, 2))
        for t in range(frames):
            for (y, x) in pos:
                out[i, t, 0, y:y + SQUARE, x:x + SQUARE] = 1
            pos = pos + vel
            for axis in range(2):  # bounce: reflect at the walls
                low, high = pos[:, axis] < 0, pos[:, axis] > top
                pos[low, axis] = -pos[low, axis]
                pos[high, axis] = 2 * top - pos[high, axis]
                vel[low | high, axis] *= -1
    return out


class NextFrame(nn.Module):
    """ConvLSTM over the frames, then a per-pixel Linear read-out: logits of frame t+1."""

    def __init__(self, hidden: int = 16, kernel: int = 5, seed: int = 0):
        super().__init__()
        self.rnn = nn.ConvLSTM2d(1, hidden, kernel, input_grad=False, seed=seed)  # data in
        self.head = nn.Linear(hidden, 1, seed=seed + 1)

    def children(self):
        return {"rnn": self.rnn, "head": self.head}

    def forward(self, frames):  # [B,T,1,S,S] -> logits [B,T,1,S,S]
        h = self.rnn(frames)
        return np.ascontiguousarray(np.moveaxis(self.head(np.moveaxis(h, 2, -1)), -1, 2))

    def backward(self, dlogits):
        dh = self.head.backward(np.ascontiguousarray(np.moveaxis(dlogits, 2, -1)))
        return self.rnn.backward(np.ascontiguousarray(np.moveaxis(dh, -1, 2)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def scores(model: NextFrame, seqs: np.ndarray) -> tuple[float, float]:
    """(model MSE, copy-last-frame MSE) on frames FIRST_SCORED+1 .. end of `seqs`."""
    model.eval()
    pred = sigmoid(model(seqs[:, :-1]))[:, FIRST_SCORED:]
    truth = seqs[:, FIRST_SCORED + 1:]
    copy = seqs[:, FIRST_SCORED:-1]
    model.train()
    return float(np.mean((pred - truth) ** 2)), float(np.mean((copy - truth) ** 2))


def run(quick: bool = False, seed: int = 0, plot: str | None = None,
        log=print) -> dict[str, float]:
    """Train and test; returns {"mse", "copy_mse", "improvement", "seconds"}."""
    steps, batch = (200, 16) if quick else (1800, 16)
    train = bouncing_squares(1000 if quick else 8000, seed)
    test = bouncing_squares(200, seed + 1)
    model = NextFrame(seed=seed)
    opt = optim.Adam(model, lr=3e-3)
    sched = optim.CosineAnnealingLR(opt, steps)
    loss_fn = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for step in range(steps):
        seqs = train[rng.integers(0, len(train), batch)]
        model.zero_grad()
        loss = loss_fn(model(seqs[:, :-1]), seqs[:, 1:])
        model.backward(loss_fn.backward())
        optim.clip_grad_norm(model, 1.0)
        opt.step()
        sched.step()
        if log and (step + 1) % (steps // 6) == 0:
            mse, copy = scores(model, test[:50])
            log(f"step {step + 1:5d}  loss {float(loss):.4f}  test MSE {mse:.4f} "
                f"(copy-last {copy:.4f})  {time.perf_counter() - start:5.0f} s")
    mse, copy = scores(model, test)
    result = {"mse": mse, "copy_mse": copy, "improvement": 1 - mse / copy,
              "seconds": time.perf_counter() - start}
    if log:
        log(f"held-out MSE {mse:.4f} vs copy-last-frame {copy:.4f}: "
            f"{100 * result['improvement']:.0f}% lower, trained in {result['seconds']:.0f} s")
    if plot:
        _plot(model, test[:1], plot)
    return result


def _plot(model: NextFrame, seq: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    pred = sigmoid(model(seq[:, :-1]))[0, :, 0]
    n = FRAMES - 1
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3))
    for t in range(n):
        axes[0, t].imshow(seq[0, t + 1, 0], cmap="gray", vmin=0, vmax=1)
        axes[1, t].imshow(pred[t], cmap="gray", vmin=0, vmax=1)
        axes[0, t].set_title(f"t={t + 1}", fontsize=8)
        for ax in axes[:, t]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("true")
    axes[1, 0].set_ylabel("predicted")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's shorter run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="save true vs predicted frames here (needs matplotlib)")
    args = parser.parse_args(argv)
    result = run(args.quick, args.seed, args.plot)
    if args.plot:
        print(f"saved {args.plot}")
    bar = QUICK_BAR if args.quick else BAR
    return 0 if result["improvement"] >= bar else 1


if __name__ == "__main__":
    raise SystemExit(main())
