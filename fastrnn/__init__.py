"""fastrnn: fused, compiled RNN / LSTM / GRU (and LayerNorm LSTM / GRU, Jordan network,
ConvLSTM) kernels with a readable NumPy reference.

Quick use::

    import numpy as np, fastrnn
    lstm = fastrnn.LSTM(32, 64, num_layers=2, seed=0)
    y, (h_n, c_n) = lstm(np.random.rand(100, 8, 32).astype(np.float32))
    dx, (dh0, dc0) = lstm.backward(np.ones_like(y))   # gradients land in lstm.grads
"""

from . import backends
from .conv_lstm import ConvLSTM2d
from .rnn import GRU, LSTM, RNN, JordanRNN, LayerNormGRU, LayerNormLSTM, RNNBase
from .rnn_cell import (
    GRUCell,
    LayerNormGRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    RNNCell,
    RNNCellBase,
)

__version__ = "0.1.0"
__all__ = ["ConvLSTM2d", "GRU", "LSTM", "RNN", "GRUCell", "JordanRNN", "LSTMCell", "LayerNormGRU",
           "LayerNormGRUCell", "LayerNormLSTM", "LayerNormLSTMCell", "RNNBase", "RNNCell",
           "RNNCellBase", "backends", "__version__"]
