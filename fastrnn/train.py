"""The training loop: epochs, validation, clipping, schedules, early stopping, checkpoints.

Data comes as a function of the epoch number returning that epoch's batches, so that a
shuffle seeded by the epoch makes the data order a pure function of it; together with the
parameters, the optimiser and schedule state and every random generator of the model (all
in the checkpoint), a resumed run continues bit-identically to an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .atomic import check_writable, save_figure, write_bytes
from .nn.module import Module
from .optim.clip import clip_grad_norm
from .optim.optimizers import Optimizer

Batch = tuple  # (inputs, targets) or (inputs, targets, lengths)
FORMAT = "fastrnn-checkpoint-1"


@dataclass
class History:
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _forward(model: Module, batch: Batch):
    x, y = batch[0], batch[1]
    out = model(x, batch[2]) if len(batch) > 2 else model(x)
    return out, y


def evaluate(model: Module, loss_fn: Any, batches: Iterable[Batch]) -> float:
    """Mean loss over `batches` in eval mode (weighted by each batch's number of targets)."""
    was_training = model.training
    model.eval()
    model.reset_state()
    total, count = 0.0, 0
    for batch in batches:
        out, y = _forward(model, batch)
        n = int(np.sum(np.asarray(y) != getattr(loss_fn, "ignore_index", object())))
        total += loss_fn(out, y) * n
        count += n
    model.reset_state()
    model.train(was_training)
    return total / max(count, 1)


def _rngs(model: Module) -> list[np.random.Generator]:
    return [m.rng for m in model.modules() if isinstance(getattr(m, "rng", None),
                                                         np.random.Generator)]


def save_checkpoint(path: str, model: Module, optimizer: Optimizer | None = None,
                    scheduler: Any = None, meta: dict[str, Any] | None = None) -> None:
    """Write parameters, optimiser and schedule state, random generators and `meta` (JSON)
    to `path` atomically: a temporary file, fsync, then a rename over the old one."""
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    info: dict[str, Any] = {"format": FORMAT, "meta": meta or {},
                            "rngs": [g.bit_generator.state for g in _rngs(model)]}
    if optimizer is not None:
        sd = optimizer.state_dict()
        info["optimizer"] = {"lr": sd["lr"], "step_count": sd["step_count"]}
        for name, state in sd["state"].items():
            for key, value in state.items():
                arrays[f"opt/{key}/{name}"] = value
    if scheduler is not None:
        info["scheduler"] = scheduler.state_dict()
    arrays["info"] = np.array(json.dumps(info))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint: {"params", "optimizer" (or None), "scheduler", "rngs", "meta"}.

    A missing, truncated or foreign file raises ValueError (FileNotFoundError if missing).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # a text file, random bytes, a truncated archive
        raise ValueError(f"{path} is not a fastrnn checkpoint: not a readable .npz archive "
                         f"({type(exc).__name__})") from exc
    if not isinstance(arrays, dict) or "info" not in arrays:
        raise ValueError(f"{path} is not a fastrnn checkpoint: no 'info' entry")
    try:
        info = json.loads(str(arrays.pop("info")))
    except ValueError as exc:
        raise ValueError(f"{path} is not a fastrnn checkpoint: its 'info' is not JSON") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise ValueError(f"{path} is not a fastrnn checkpoint (format {found!r}, expected "
                         f"{FORMAT!r})")
    if not isinstance(info.get("rngs"), list) or not isinstance(info.get("meta"), dict):
        raise ValueError(f"{path} is a damaged fastrnn checkpoint: 'rngs' or 'meta' missing")
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    optimizer = None
    if "optimizer" in info:
        state: dict[str, dict[str, np.ndarray]] = {}
        for k, v in arrays.items():
            if k.startswith("opt/"):
                _, key, name = k.split("/", 2)
                state.setdefault(name, {})[key] = v
        optimizer = {**info["optimizer"], "state": state}
    return {"params": params, "optimizer": optimizer, "scheduler": info.get("scheduler"),
            "rngs": info["rngs"], "meta": info["meta"]}


def restore(ckpt: dict[str, Any], model: Module, optimizer: Optimizer | None = None,
            scheduler: Any = None) -> None:
    """Put a loaded checkpoint back into model, optimiser, schedule and generators."""
    model.load_state_dict(ckpt["params"])
    if optimizer is not None and ckpt["optimizer"] is not None:
        names = {name for name, _, _ in optimizer.params}
        ckpt["optimizer"]["state"] = {n: ckpt["optimizer"]["state"].get(n, {}) for n in names}
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["scheduler"] is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    gens = _rngs(model)
    if len(gens) != len(ckpt["rngs"]):
        raise ValueError("checkpoint's random generators do not match the model")
    for g, state in zip(gens, ckpt["rngs"], strict=True):
        g.bit_generator.state = state


class _Progress:
    """A tqdm bar when tqdm is installed and progress is wanted, else nothing per batch."""

    def __init__(self, enabled: bool, total: int | None, desc: str):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False,
                                file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, loss: float, rate: float, unit: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} {unit}/s")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def fit(model: Module, loss_fn: Any, optimizer: Optimizer,
        train_batches: Callable[[int], Iterable[Batch]], *,
        val_batches: Callable[[], Iterable[Batch]] | None = None, epochs: int = 10,
        clip_norm: float | None = None, scheduler: Any = None,
        early_stopping: int | None = None, checkpoint: str | None = None,
        resume: bool = False, overwrite: bool = False, meta: dict[str, Any] | None = None,
        time_budget: float | None = None, progress: bool = True, unit: str = "samples",
        batches_per_epoch: int | None = None,
        log: Callable[[str], None] | None = print) -> History:
    """Train `model` and return its :class:`History`.

    train_batches(epoch) gives that epoch's batches; val_batches() the validation batches.
    Each epoch ends with validation (when given), the schedule's step, early stopping
    (`early_stopping` epochs without a better validation loss) and a checkpoint (when a path
    is given; `meta` is stored in it). ``resume=True`` continues from `checkpoint` if it
    exists, and only a checkpoint of this run (its stored `meta` equal to `meta`). An existing
    file at `checkpoint` is never replaced otherwise unless ``overwrite=True``, and the path is
    checked writable before the first epoch. `time_budget` (seconds) stops training after the
    batch that exceeds it. `unit` names what the progress bar counts per second (the targets'
    elements).
    """
    history, start_epoch, best, stale = History(), 0, math.inf, 0
    if checkpoint:
        if os.path.exists(checkpoint) and not (resume or overwrite):
            raise FileExistsError(f"{checkpoint} exists: resume=True continues it, "
                                  "overwrite=True replaces it (never done silently)")
        check_writable(checkpoint)
    if resume and checkpoint and os.path.exists(checkpoint):
        ckpt = load_checkpoint(checkpoint)
        _check_same_run(ckpt["meta"], meta or {}, checkpoint)
        restore(ckpt, model, optimizer, scheduler)
        state = ckpt["meta"]["_fit"]
        history = History(**state["history"])
        start_epoch, best, stale = state["epoch"] + 1, state["best"], state["stale"]
    started = time.perf_counter()
    model.train()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        model.reset_state()
        bar = _Progress(progress, batches_per_epoch, f"epoch {epoch + 1}/{epochs}")
        total, count, seen, out_of_time = 0.0, 0, 0, False
        for batch in train_batches(epoch):
            out, y = _forward(model, batch)
            loss = loss_fn(out, y)
            if not math.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"training diverged: loss {loss} at epoch {epoch + 1}"
                                         " (lower the learning rate or clip gradients)")
            model.backward(loss_fn.backward())
            if clip_norm is not None:
                clip_grad_norm(model, clip_norm)
            optimizer.step()
            optimizer.zero_grad()
            n = int(np.asarray(y).size)
            total, count, seen = total + loss * n, count + n, seen + n
            bar.update(loss, seen / (time.perf_counter() - t0), unit)
            if time_budget is not None and time.perf_counter() - started > time_budget:
                out_of_time = True
                break
        bar.close()
        history.epoch.append(epoch + 1)
        history.train_loss.append(total / max(count, 1))
        history.lr.append(optimizer.lr)
        val = evaluate(model, loss_fn, val_batches()) if val_batches else math.nan
        history.val_loss.append(val)
        history.seconds.append(time.perf_counter() - t0)
        if log:
            log(f"epoch {epoch + 1}: train loss {history.train_loss[-1]:.4f}"
                + (f", val loss {val:.4f}" if val_batches else "")
                + f", {seen / history.seconds[-1]:,.0f} {unit}/s")
        monitored = val if val_batches else history.train_loss[-1]
        if monitored < best:
            best, stale = monitored, 0
        else:
            stale += 1
        if scheduler is not None:
            scheduler.step(monitored) if _needs_metric(scheduler) else scheduler.step()
        if checkpoint:
            fit_state = {"epoch": epoch, "best": best, "stale": stale,
                         "history": asdict(history)}
            save_checkpoint(checkpoint, model, optimizer, scheduler,
                            {**(meta or {}), "_fit": fit_state})
        if out_of_time or (early_stopping is not None and stale >= early_stopping):
            break
    return history


def _check_same_run(stored: dict[str, Any], meta: dict[str, Any], path: str) -> None:
    """A checkpoint resumes only the run that wrote it: every entry of this run's `meta` must
    be in the checkpoint's, unchanged (a char-LM's vocabulary: another corpus would remap the
    characters)."""
    meta = json.loads(json.dumps(meta))  # as stored (tuples become lists)
    for key, value in meta.items():
        if stored.get(key) != value:
            detail = ""
            if isinstance(value, dict) and isinstance(stored.get(key), dict):
                detail = ": " + ", ".join(
                    k for k in sorted(value.keys() | stored[key].keys())
                    if value.get(k) != stored[key].get(k)) + " differ"
            raise ValueError(f"{path} is a checkpoint of another run ({key}{detail}); "
                             "resume it with the settings and data that wrote it, or start "
                             "a new run at another path")


def _needs_metric(scheduler: Any) -> bool:
    from .optim.schedules import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)


def plot_history(history: History, path: str) -> None:
    """Training and validation loss per epoch, saved atomically (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'fastrnn[plot]'") from exc
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history.epoch, history.train_loss, marker="o", label="train")
    if not all(math.isnan(v) for v in history.val_loss):
        ax.plot(history.epoch, history.val_loss, marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
