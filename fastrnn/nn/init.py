"""Weight initialisers (fan_in/fan_out of a [out, in] matrix, as torch.nn.init)."""

from __future__ import annotations

import math

import numpy as np


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"fan in/out need at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def xavier_uniform(shape: tuple[int, ...], rng: np.random.Generator, gain: float = 1.0,
                   dtype=np.float32) -> np.ndarray:
    """Glorot: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape).astype(dtype)


def torch_linear(shape: tuple[int, ...], rng: np.random.Generator,
                 dtype=np.float32) -> np.ndarray:
    """torch.nn.Linear's default (kaiming_uniform_ with a = sqrt(5)): U(-b, b),
    b = 1 / sqrt(fan_in); its bias takes the same bound."""
    fan_in, _ = _fans(shape)
    b = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-b, b, size=shape).astype(dtype)


def kaiming_uniform(shape: tuple[int, ...], rng: np.random.Generator,
                    nonlinearity: str = "relu", dtype=np.float32) -> np.ndarray:
    """He: U(-b, b), b = gain * sqrt(3 / fan_in), gain sqrt(2) for relu, 1 for linear."""
    gain = {"relu": math.sqrt(2.0), "linear": 1.0, "tanh": 5.0 / 3}[nonlinearity]
    fan_in, _ = _fans(shape)
    b = gain * math.sqrt(3.0 / fan_in)
    return rng.uniform(-b, b, size=shape).astype(dtype)


def orthogonal(shape: tuple[int, ...], rng: np.random.Generator, gain: float = 1.0,
               dtype=np.float32) -> np.ndarray:
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian one."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # a uniform draw over orthogonal matrices
    q = q if rows >= cols else q.T
    return (gain * q[:rows, :cols]).reshape(shape).astype(dtype)
