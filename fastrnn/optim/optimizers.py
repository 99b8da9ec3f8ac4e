"""Optimisers over a model's (name, parameter, gradient) triples, updating in place."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.module import Module


class Optimizer:
    """Base: holds the parameters, the learning rate and per-parameter state (moments)."""

    def __init__(self, model: Module, lr: float):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.params = [(name, p, g) for name, p, g in model.named_parameters()]
        self.lr = float(lr)
        self.step_count = 0
        self.state: dict[str, dict[str, np.ndarray]] = {name: {} for name, _, _ in self.params}

    def zero_grad(self) -> None:
        for _, _, g in self.params:
            g.fill(0)

    def step(self) -> None:
        self.step_count += 1
        for name, p, g in self.params:
            self._update(p, g, self.state[name])

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def _buffer(self, state: dict, key: str, like: np.ndarray) -> np.ndarray:
        if key not in state:
            state[key] = np.zeros_like(like)
        return state[key]

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "step_count": self.step_count,
                "state": {n: {k: v.copy() for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if set(sd["state"]) != set(self.state):
            raise KeyError("optimizer state does not match the model's parameters")
        self.lr, self.step_count = float(sd["lr"]), int(sd["step_count"])
        self.state = {n: {k: np.array(v) for k, v in s.items()} for n, s in sd["state"].items()}


class SGD(Optimizer):
    """SGD with momentum (optionally Nesterov) and L2 weight decay, as torch.optim.SGD."""

    def __init__(self, model: Module, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(model, lr)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def _update(self, p, g, state):
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            first = "v" not in state
            v = self._buffer(state, "v", p)
            if first:
                v[...] = d
            else:
                v *= self.momentum
                v += d
            d = d + self.momentum * v if self.nesterov else v
        p -= self.lr * d


class RMSprop(Optimizer):
    """RMSprop (torch's form): s = a s + (1-a) g^2; p -= lr g / (sqrt(s) + eps)."""

    def __init__(self, model: Module, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(model, lr)
        self.alpha, self.eps, self.momentum, self.weight_decay = alpha, eps, momentum, weight_decay

    def _update(self, p, g, state):
        d = g + self.weight_decay * p if self.weight_decay else g
        s = self._buffer(state, "square_avg", p)
        s *= self.alpha
        s += (1 - self.alpha) * d * d
        step = d / (np.sqrt(s) + self.eps)
        if self.momentum:
            buf = self._buffer(state, "momentum", p)
            buf *= self.momentum
            buf += step
            step = buf
        p -= self.lr * step


class Adam(Optimizer):
    """Adam with bias correction; weight_decay adds L2 to the gradient (torch.optim.Adam)."""

    decoupled = False

    def __init__(self, model: Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(model, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _update(self, p, g, state):
        b1, b2 = self.betas
        if self.weight_decay and self.decoupled:
            p *= 1 - self.lr * self.weight_decay
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m, v = self._buffer(state, "m", p), self._buffer(state, "v", p)
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.step_count
        m_hat_scale = 1 / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        p -= (self.lr * m_hat_scale * m / (np.sqrt(v_hat) + self.eps)).astype(p.dtype)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step."""

    decoupled = True

    def __init__(self, model: Module, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(model, lr, betas, eps, weight_decay)
