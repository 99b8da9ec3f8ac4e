"""The model API: layers with forward/backward, named parameters and gradients, and losses."""

from . import init
from .attention import Attention
from .layers import Dropout, Embedding, LayerNorm, Linear, ReLU, Sequential, Sigmoid, Tanh
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .recurrent import ConvLSTM2d, Recurrent

__all__ = ["Attention", "BCEWithLogitsLoss", "ConvLSTM2d", "CrossEntropyLoss", "Dropout",
           "Embedding",
           "LayerNorm", "Linear", "MSELoss", "Module", "ReLU", "Recurrent", "Sequential",
           "Sigmoid", "Tanh", "init"]
