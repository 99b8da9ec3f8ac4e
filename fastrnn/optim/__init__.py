"""Optimisers, gradient clipping and learning-rate schedules for the model API."""

from .clip import clip_grad_norm, clip_grad_value
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop
from .schedules import CosineAnnealingLR, ExponentialLR, ReduceLROnPlateau, StepLR

__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "ExponentialLR", "Optimizer",
           "RMSprop", "ReduceLROnPlateau", "StepLR", "clip_grad_norm", "clip_grad_value"]
