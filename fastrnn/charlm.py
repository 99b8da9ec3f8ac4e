"""Character-level language model: the corpus, the model, truncated-BPTT training, sampling.

The default corpus ships with Python itself: the text of the help topics of the Python
reference (``pydoc_data.topics``, about 700 kB of English technical prose).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import nn, optim
from .train import History, fit, load_checkpoint, restore


def default_corpus() -> str:
    """The help topics of Python's reference documentation, from the standard library."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def check_text(text: str, source: str = "text") -> str:
    """`text` if it is usable for training, else a ValueError that says why."""
    if not text or not text.strip():
        raise ValueError(f"{source} is empty")
    if "\x00" in text:
        raise ValueError(f"{source} looks binary (it contains NUL characters)")
    printable = sum(ch.isprintable() or ch in "\n\t\r" for ch in text)
    if printable < 0.95 * len(text):
        raise ValueError(f"{source} looks binary ({len(text) - printable} of {len(text)} "
                         "characters are not printable)")
    if len(text) < 1000:
        raise ValueError(f"{source} is too short to train on ({len(text)} characters; "
                         "give at least 1000)")
    return text


def read_text(path: str) -> str:
    """A UTF-8 text file, checked by :func:`check_text`; clear errors for the rest."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise OSError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"\x00" in raw:
        raise ValueError(f"{path} looks binary (it contains NUL bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return check_text(text, path)


class Vocab:
    """The characters of a corpus and their ids."""

    def __init__(self, chars: str):
        self.chars = chars
        self.index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r}")
        return np.fromiter((self.index[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Any) -> str:
        return "".join(self.chars[i] for i in ids)


def unigram_entropy(ids: np.ndarray, vocab_size: int) -> float:
    """Entropy of the character frequencies, in nats per character (the no-context bound)."""
    p = np.bincount(ids, minlength=vocab_size) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) + 0.0  # (+ 0.0: one character gives 0, not -0)


@dataclass
class Config:
    """What defines a char-LM (stored in its checkpoint)."""

    vocab: str
    cell: str = "lstm"
    hidden: int = 256
    layers: int = 1
    embed: int = 48
    dropout: float = 0.0
    seed: int = 0


def build_model(cfg: Config, backend: str | None = None) -> nn.Sequential:
    """Embedding -> stateful recurrent stack -> Linear to logits over the vocabulary."""
    V = len(cfg.vocab)
    return nn.Sequential(
        nn.Embedding(V, cfg.embed, seed=cfg.seed),
        nn.Recurrent(cfg.cell, cfg.embed, cfg.hidden, cfg.layers, dropout=cfg.dropout,
                     stateful=True, backend=backend, seed=cfg.seed + 1),
        nn.Linear(cfg.hidden, V, init_="xavier", seed=cfg.seed + 2),  # (learns faster here
        # than torch's default: 2.68 vs 2.72 nats/char after 3 short epochs, tests/test_training)
    )


def stream_batches(ids: np.ndarray, batch_size: int, seq_len: int):
    """Truncated-BPTT batches: the stream cut into `batch_size` rows read left to right, so
    batch k+1 continues batch k row by row (the state a stateful model carries is right).
    Returns a list of (x [B,T], y [B,T]) with y the next character."""
    n = (len(ids) - 1) // batch_size
    if n < 2:
        raise ValueError(f"{len(ids)} characters are too few for batches of {batch_size} rows")
    x = ids[:n * batch_size].reshape(batch_size, n)
    y = ids[1:n * batch_size + 1].reshape(batch_size, n)
    return [(x[:, s:s + seq_len], y[:, s:s + seq_len]) for s in range(0, n - 1, seq_len)]


def train(text: str, cfg: Config | None = None, *, seq_len: int = 64, batch_size: int = 32,
          lr: float = 3e-3, epochs: int = 20, time_budget: float | None = None,
          checkpoint: str | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, backend: str | None = None,
          log: Callable[[str], None] | None = print):
    """Train a char-LM on `text` (90% train, 10% validation). Returns (model, cfg, history,
    unigram entropy of the training text in nats/char). `checkpoint`, `resume`, `overwrite`:
    as :func:`fastrnn.train.fit` (a checkpoint resumes only with the same config and
    vocabulary)."""
    check_text(text)
    cfg = cfg or Config(vocab=Vocab.from_text(text).chars)
    vocab = Vocab(cfg.vocab)
    ids = vocab.encode(text)
    split = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:split], ids[split:]
    train_set = stream_batches(train_ids, batch_size, seq_len)
    val_set = stream_batches(val_ids, min(batch_size, max(1, len(val_ids) // (4 * seq_len))),
                             seq_len)
    model = build_model(cfg, backend)
    opt = optim.Adam(model, lr=lr)
    sched = optim.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    history = fit(model, nn.CrossEntropyLoss(), opt, lambda epoch: train_set,
                  val_batches=lambda: val_set, epochs=epochs, clip_norm=1.0, scheduler=sched,
                  checkpoint=checkpoint, resume=resume, overwrite=overwrite,
                  meta={"charlm": asdict(cfg)},
                  time_budget=time_budget, progress=progress, unit="chars",
                  batches_per_epoch=len(train_set), log=log)
    return model, cfg, history, unigram_entropy(train_ids, len(vocab))


def load(path: str, backend: str | None = None) -> tuple[nn.Sequential, Config]:
    """A char-LM and its config from a checkpoint written by :func:`train`."""
    ckpt = load_checkpoint(path)
    if "charlm" not in ckpt["meta"]:
        raise ValueError(f"{path} is a fastrnn checkpoint but not of a char-LM")
    try:
        cfg = Config(**ckpt["meta"]["charlm"])
        model = build_model(cfg, backend)
        restore(ckpt, model)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is a damaged char-LM checkpoint: {exc}") from exc
    return model, cfg


def _vocab_of(vocab: Config | Vocab | str) -> Vocab:
    if isinstance(vocab, Vocab):
        return vocab
    if isinstance(vocab, Config):
        return Vocab(vocab.vocab)
    if isinstance(vocab, str):
        return Vocab(vocab)
    raise TypeError(f"vocab must be a Config, a Vocab or the vocabulary's characters, got "
                    f"{type(vocab).__name__}")


def sample(model: nn.Sequential, vocab: Config | Vocab | str, prime: str = "\n",
           length: int = 300, temperature: float = 1.0, top_k: int | None = None,
           seed: int | None = None) -> str:
    """Generate `length` characters after `prime`, sampling softmax(logits / temperature),
    optionally among the `top_k` likeliest characters only. An empty `prime` starts from a
    newline (from the vocabulary's first character in a corpus without one).

    `model`: Embedding -> Recurrent (unidirectional) -> layers that map [B,T,H] to logits
    [B,T,V] (build_model's, or any such Sequential); `vocab`: its vocabulary (a Config, a
    Vocab or the characters). The recurrent layer runs one step per character on the
    single-step path (:meth:`fastrnn.nn.Recurrent.step`) with the state carried here, so
    ``stateful`` is not needed and the model's own state is left alone; the model samples in
    eval mode and is put back in the mode it was in.
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if top_k is not None and not 1 <= top_k:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    vocab = _vocab_of(vocab)
    layers = list(model.layers)
    if len(layers) < 2 or not isinstance(layers[0], nn.Embedding) or \
            not isinstance(layers[1], nn.Recurrent):
        raise ValueError("sample() needs a Sequential of Embedding, Recurrent and the layers "
                         f"to the logits, got {[type(m).__name__ for m in layers]}")
    embedding, recurrent, head = layers[0].params["weight"], layers[1], layers[2:]
    if embedding.shape[0] != len(vocab):
        raise ValueError(f"the model's Embedding has {embedding.shape[0]} rows but the "
                         f"vocabulary {len(vocab)} characters")
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    try:
        state = None
        start = prime or ("\n" if "\n" in vocab.index else vocab.chars[0])
        for i in vocab.encode(start):
            y, state = recurrent.step(embedding[i:i + 1], state)
        out = []
        for _ in range(length):
            logits = y[:, None, :]
            for module in head:
                logits = module(logits)
            z = logits[0, -1].astype(np.float64) / temperature
            if top_k is not None and top_k < len(z):
                z[z < np.partition(z, -top_k)[-top_k]] = -np.inf
            cdf = np.cumsum(np.exp(z - z.max()))
            # what rng.choice(p=...) draws (one uniform against the normalised CDF) without
            # its checks, which cost more than the network's step
            nxt = int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right"))
            out.append(nxt)
            y, state = recurrent.step(embedding[nxt:nxt + 1], state)
    finally:
        model.train(was_training)
    return vocab.decode(out)


def demo(minutes: float = 2.0, cfg_overrides: dict | None = None, *, progress: bool = True,
         checkpoint: str | None = None, overwrite: bool = False, backend: str | None = None,
         seed: int = 0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on the default corpus for about `minutes`, then print samples at temperatures
    0.2, 0.5, 1.0 and 1.2. Returns the numbers it printed."""
    text = default_corpus()
    vocab = Vocab.from_text(text)
    cfg = Config(vocab=vocab.chars, seed=seed, **(cfg_overrides or {}))
    log(f"corpus: Python's help topics (pydoc_data.topics), {len(text):,} characters, "
        f"{len(vocab)} distinct; model: {cfg.cell.upper()} {cfg.layers}x{cfg.hidden}; "
        f"budget {minutes:g} min")
    t0 = time.perf_counter()
    model, cfg, history, h_unigram = train(text, cfg, time_budget=minutes * 60,
                                           checkpoint=checkpoint, overwrite=overwrite,
                                           progress=progress, backend=backend, log=log)
    val = history.val_loss[-1]
    log(f"\nvalidation loss {val:.3f} nats/char ({val / math.log(2):.2f} bits) vs unigram "
        f"entropy {h_unigram:.3f} nats/char ({h_unigram / math.log(2):.2f} bits), "
        f"trained {time.perf_counter() - t0:.0f} s")
    samples = {}
    for temperature in (0.2, 0.5, 1.0, 1.2):
        samples[temperature] = sample(model, cfg, prime="The ", length=240,
                                      temperature=temperature, seed=seed)
        log(f"\n--- temperature {temperature} ---\nThe {samples[temperature]}")
    return {"val_loss": val, "unigram_entropy": h_unigram, "history": history,
            "samples": samples}


__all__ = ["Config", "History", "Vocab", "build_model", "check_text", "default_corpus", "demo",
           "load", "read_text", "sample", "stream_batches", "train", "unigram_entropy"]
