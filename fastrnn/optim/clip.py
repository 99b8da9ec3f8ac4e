"""Gradient clipping over a model's gradients, in place."""

from __future__ import annotations

import math

import numpy as np

from ..nn.module import Module


def clip_grad_norm(model: Module, max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most max_norm; returns the norm
    before clipping (inf/NaN gradients give a non-finite norm and are left alone)."""
    grads = [g for _, _, g in model.named_parameters()]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


def clip_grad_value(model: Module, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value]."""
    for _, _, g in model.named_parameters():
        np.clip(g, -clip_value, clip_value, out=g)
