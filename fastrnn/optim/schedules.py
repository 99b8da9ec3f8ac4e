"""Learning-rate schedules: call ``step()`` once per epoch (ReduceLROnPlateau: ``step(metric)``)."""

from __future__ import annotations

import math
from typing import Any

from .optimizers import Optimizer


class _Schedule:
    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self, metric: float | None = None) -> None:
        self.epoch += 1
        self.optimizer.lr = self._lr()

    def _lr(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.__dict__.update(sd)


class StepLR(_Schedule):
    """lr = base * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def _lr(self) -> float:
        return self.base_lr * self.gamma ** (self.epoch // self.step_size)


class ExponentialLR(_Schedule):
    """lr = base * gamma ** epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        super().__init__(optimizer)
        self.gamma = gamma

    def _lr(self) -> float:
        return self.base_lr * self.gamma ** self.epoch


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        super().__init__(optimizer)
        self.T_max, self.eta_min = T_max, eta_min

    def _lr(self) -> float:
        e = min(self.epoch, self.T_max)
        cosine = (1 + math.cos(math.pi * e / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine


class ReduceLROnPlateau(_Schedule):
    """Multiply lr by `factor` when the metric has not improved (by `threshold`, relative)
    for `patience` epochs; never below `min_lr`."""

    def __init__(self, optimizer: Optimizer, factor: float = 0.1, patience: int = 2,
                 threshold: float = 1e-4, min_lr: float = 0.0):
        super().__init__(optimizer)
        self.factor, self.patience = factor, patience
        self.threshold, self.min_lr = threshold, min_lr
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric: float | None = None) -> None:
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the monitored metric")
        self.epoch += 1
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                self.optimizer.lr = max(self.min_lr, self.optimizer.lr * self.factor)
                self.bad_epochs = 0
