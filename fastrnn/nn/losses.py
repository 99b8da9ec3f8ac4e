"""Losses with their gradients: ``value = loss(pred, target)``, then ``dpred = loss.backward()``."""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log_softmax

_REDUCTIONS = ("mean", "sum", "none")


class _Loss:
    def __init__(self, reduction: str = "mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache: tuple | None = None

    def _reduce(self, values: np.ndarray, count: int):
        if self.reduction == "none":
            return values
        total = values.sum()
        return float(total / max(count, 1)) if self.reduction == "mean" else float(total)

    def _scale(self, grad: np.ndarray, count: int) -> np.ndarray:
        return grad / max(count, 1) if self.reduction == "mean" else grad

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a call first")
        return self._grad()


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits [..., C] and integer targets [...]; targets equal to
    `ignore_index` add nothing (and "mean" averages over the others)."""

    def __init__(self, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def __call__(self, logits: np.ndarray, target: np.ndarray):
        target = np.asarray(target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"targets must be integers, got dtype {target.dtype}")
        if logits.shape[:-1] != target.shape:
            raise ValueError(f"logits {logits.shape} and targets {target.shape} disagree: "
                             "expected logits [..., C] for targets [...]")
        C = logits.shape[-1]
        keep = target != self.ignore_index
        if np.any(keep & ((target < 0) | (target >= C))):
            raise ValueError(f"targets must lie in [0, {C}) or equal ignore_index")
        logp = log_softmax(logits, axis=-1)
        safe = np.where(keep, target, 0)
        nll = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0] * keep
        count = int(keep.sum())
        self._cache = (logp, safe, keep, count)
        return self._reduce(nll.astype(logits.dtype), count)

    def _grad(self) -> np.ndarray:
        logp, safe, keep, count = self._cache
        grad = np.exp(logp)
        np.put_along_axis(grad, safe[..., None],
                          np.take_along_axis(grad, safe[..., None], axis=-1) - 1, axis=-1)
        grad *= keep[..., None]
        return self._scale(grad, count).astype(logp.dtype)


class MSELoss(_Loss):
    """Mean squared error between predictions and targets of one shape."""

    def __call__(self, pred: np.ndarray, target: np.ndarray):
        target = np.asarray(target, dtype=pred.dtype)
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} must match")
        diff = pred - target
        self._cache = (diff,)
        return self._reduce(diff * diff, diff.size)

    def _grad(self) -> np.ndarray:
        (diff,) = self._cache
        return self._scale(2 * diff, diff.size)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy from logits, computed stably: max(z,0) - z*y + log(1+exp(-|z|))."""

    def __call__(self, logits: np.ndarray, target: np.ndarray):
        target = np.asarray(target, dtype=logits.dtype)
        if logits.shape != target.shape:
            raise ValueError(f"logits {logits.shape} and target {target.shape} must match")
        loss = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
        self._cache = (logits, target)
        return self._reduce(loss, logits.size)

    def _grad(self) -> np.ndarray:
        logits, target = self._cache
        return self._scale((expit(logits) - target).astype(logits.dtype), logits.size)
