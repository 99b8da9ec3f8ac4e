"""The base of the model API: a layer with named parameters, gradients, forward and backward."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Module:
    """A layer or a model: ``y = m(x)`` runs forward, ``dx = m.backward(dy)`` runs backward
    (gradients of the last forward, accumulated into ``m.grads``).

    Parameters live in ``self.params`` and their gradients in ``self.grads`` (same keys);
    sub-modules are returned by :meth:`children`, and :meth:`named_parameters` walks them all.
    """

    training: bool = True

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True

    # -------------------------------------------------------------- structure

    def children(self) -> dict[str, Module]:
        return {}

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(qualified name, parameter, gradient) for this module and every sub-module."""
        for name, p in self.params.items():
            yield prefix + name, p, self.grads[name]
        for child_name, child in self.children().items():
            yield from child.named_parameters(f"{prefix}{child_name}.")

    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def zero_grad(self) -> None:
        for _, _, g in self.named_parameters():
            g.fill(0)

    def train(self, mode: bool = True) -> Module:
        self.training = bool(mode)
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def reset_state(self) -> None:
        """Forget carried recurrent state (stateful layers), here and in every sub-module."""
        for child in self.children().values():
            child.reset_state()

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, depth first."""
        yield self
        for child in self.children().values():
            yield from child.modules()

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.named_parameters())

    # -------------------------------------------------------------- state

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter under its qualified name."""
        return {name: p.copy() for name, p, _ in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy `state` into the live parameters (in place), checking names and shapes first."""
        own = {name: p for name, p, _ in self.named_parameters()}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"state_dict does not match: missing {missing}, "
                           f"unexpected {unexpected}")
        for name, p in own.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, expected "
                                 f"{p.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"state_dict[{name!r}] holds NaN or inf")
        for name, p in own.items():
            p[...] = state[name]

    # -------------------------------------------------------------- computation

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, x: Any) -> Any:  # pragma: no cover (abstract)
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray | None:  # pragma: no cover (abstract)
        raise NotImplementedError

    def _need(self, value: Any, what: str) -> Any:
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward() first "
                               f"({what} is missing)")
        return value

    def _take(self, attr: str, what: str) -> Any:
        """What forward kept in `attr`, for the one backward of that forward: a layer with
        parameters frees it, so a second backward raises instead of adding the gradients
        twice (as torch frees a graph after its backward)."""
        value = getattr(self, attr)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward() needs a forward() first, "
                               f"and runs once per forward ({what} is missing: no forward, "
                               "or its backward already ran)")
        setattr(self, attr, None)
        return value
