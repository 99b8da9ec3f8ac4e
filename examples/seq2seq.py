"""Date normalisation with an attention sequence-to-sequence model, nothing to download.

    python examples/seq2seq.py [--plot attention.png] [--quick]

Dates from 1950 to 2049 written in many human formats ("3 March 1998", "03/03/98",
"March 3rd, 1998", "1998 Mar 3", "Tuesday, 3 March 1998", ...) are translated character by
character into ISO form ("1998-03-03") by fastrnn.seq2seq.Seq2Seq: a bidirectional GRU encoder,
an additive-attention GRU decoder. Train, validation and test sets are split by date (no test
date is ever seen in training). The full run must reach 99% exact match on the test split
within 5 minutes on 2 cores; --quick is the test suite's short run, with its own bar.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import numpy as np

from fastrnn import nn, optim
from fastrnn.seq2seq import Seq2Seq

TARGET_ACCURACY = 0.99
QUICK_ACCURACY = 0.80
PAD, SOS, EOS = 0, 1, 2
FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


#: human formats: date -> text (two-digit years stand for 1950-2049)
FORMATS = (
    lambda d: f"{d.day} {d:%B %Y}",                       # 3 March 1998
    lambda d: f"{d:%d/%m/%y}",                             # 03/03/98
    lambda d: f"{d:%B} {_ordinal(d.day)}, {d.year}",       # March 3rd, 1998
    lambda d: f"{d.year} {d:%b} {d.day}",                  # 1998 Mar 3
    lambda d: f"{d:%A}, {d.day} {d:%B %Y}",                # Tuesday, 3 March 1998
    lambda d: f"{d:%d.%m.%Y}",                             # 03.03.1998
    lambda d: f"{d:%b} {d.day}, {d.year}",                 # Mar 3, 1998
    lambda d: f"{d.day} {d:%b %y}".lower(),                # 3 mar 98
    lambda d: f"{d:%Y/%m/%d}",                             # 1998/03/03
    lambda d: f"the {_ordinal(d.day)} of {d:%B %Y}",       # the 3rd of March 1998
    lambda d: f"{d:%a %d %b %Y}".upper(),                  # TUE 03 MAR 1998
    lambda d: f"{d:%d-%b-%Y}",                             # 03-Mar-1998
)


class Chars:
    """Character vocabulary; ids 0-2 are pad, sos, eos."""

    def __init__(self, texts):
        self.chars = sorted({c for t in texts for c in t})
        self.index = {c: i + 3 for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars) + 3

    def encode(self, texts, eos: bool = False) -> tuple[np.ndarray, np.ndarray]:
        rows = [[self.index[c] for c in t] + ([EOS] if eos else []) for t in texts]
        lengths = np.array([len(r) for r in rows])
        out = np.full((len(rows), lengths.max()), PAD)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out, lengths

    def decode(self, ids) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3)


def make_splits(seed: int = 0, per_date: int = 1):
    """(train, validation, test) lists of (human text, ISO text); the dates are disjoint."""
    rng = np.random.default_rng(seed)
    days = (LAST - FIRST).days + 1
    order = rng.permutation(days)
    n_test, n_val = days // 10, days // 20
    parts = (order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test])
    splits = []
    for k, part in enumerate(parts):
        repeat = per_date if k == 0 else 1
        pairs = []
        for offset in part:
            d = FIRST + dt.timedelta(days=int(offset))
            for f in rng.choice(len(FORMATS), repeat, replace=repeat > len(FORMATS)):
                pairs.append((FORMATS[f](d), d.isoformat()))
        splits.append(pairs)
    return splits


def exact_match(model: Seq2Seq, src_vocab: Chars, tgt_vocab: Chars, pairs, beam: int = 1,
                batch: int = 512) -> float:
    right = 0
    for i in range(0, len(pairs), batch):
        chunk = pairs[i:i + batch]
        src, lengths = src_vocab.encode([p[0] for p in chunk])
        out, _ = model.translate(src, lengths, max_len=11, beam=beam)
        right += sum(tgt_vocab.decode(o) == p[1] for o, p in zip(out, chunk, strict=True))
    return right / len(pairs)


def run(epochs: int = 8, per_date: int = 1, minutes: float = 4.5, batch: int = 64,
        hidden: int = 64, seed: int = 0, log=print, plot: str | None = None,
        test_size: int | None = None) -> float:
    """Train, then return the exact-match accuracy on the test split (greedy decoding)."""
    train, val, test = make_splits(seed, per_date)
    test = test[:test_size] if test_size else test
    src_vocab = Chars([s for s, _ in train + val + test])
    tgt_vocab = Chars([t for _, t in train])
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), embed=32, hidden=hidden, cell="gru",
                    attention="additive", seed=seed)
    opt = optim.Adam(model, lr=3e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    log(f"{len(train)} training pairs, {len(val)} validation, {len(test)} test; "
        f"{model.num_parameters()} parameters")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train))
        losses = []
        for i in range(0, len(order), batch):
            chunk = [train[j] for j in order[i:i + batch]]
            src, lengths = src_vocab.encode([p[0] for p in chunk])
            target, _ = tgt_vocab.encode([p[1] for p in chunk], eos=True)
            model.zero_grad()
            losses.append(loss_fn(model(src, lengths, target, rng=rng), target))
            model.backward(loss_fn.backward())
            optim.clip_grad_norm(model, 1.0)
            opt.step()
            if time.perf_counter() - start > minutes * 60:
                break
        accuracy = exact_match(model, src_vocab, tgt_vocab, val)
        log(f"epoch {epoch}: loss {np.mean(losses):.4f}, validation exact match "
            f"{accuracy:.2%}, {time.perf_counter() - start:.0f} s")
        if time.perf_counter() - start > minutes * 60 or accuracy == 1.0:
            break
    accuracy = exact_match(model, src_vocab, tgt_vocab, test)
    log(f"test exact match {accuracy:.2%} ({len(test)} dates never seen in training), "
        f"{time.perf_counter() - start:.0f} s in all")
    samples = test[:6]
    src, lengths = src_vocab.encode([p[0] for p in samples])
    out, weights = model.translate(src, lengths, max_len=11, beam=3)
    for (text, iso), o in zip(samples, out, strict=True):
        got = tgt_vocab.decode(o)
        log(f"  {text!r:32} -> {got}  ({'ok' if got == iso else 'expected ' + iso})")
    if plot:
        plot_attention(samples[0][0], tgt_vocab.decode(out[0]), weights[0], plot)
        log(f"attention heat-map saved to {plot}")
    return accuracy


def plot_attention(source: str, output: str, weights: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastrnn.atomic import save_figure

    steps = len(output) + 1  # the output's characters and its end
    fig, ax = plt.subplots(figsize=(0.35 * len(source) + 2, 0.35 * steps + 1.5))
    ax.imshow(weights[:steps, :len(source)], cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(source)), list(source))
    ax.set_yticks(range(steps), [*output, "<eos>"])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title("attention weights")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (the test suite's)")
    parser.add_argument("--plot", metavar="PNG", help="save an attention heat-map")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        accuracy = run(epochs=1, minutes=0.35, test_size=500, seed=args.seed, plot=args.plot)
        bar = QUICK_ACCURACY
    else:
        accuracy = run(seed=args.seed, plot=args.plot)
        bar = TARGET_ACCURACY
    if accuracy < bar:
        print(f"test exact match {accuracy:.2%} is below the bar of {bar:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
