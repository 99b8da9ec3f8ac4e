"""The LayerNorm cells composed in torch, step by step under autograd: how users write them
today (torch.nn has none; pytorch's benchmarks/fastrnns/custom_lstms.py composes its
LayerNormLSTMCell the same way). The baseline ``fastrnn bench`` measures the fused LayerNorm
kernels against, with the parameters, names and equations of :mod:`fastrnn.torch`'s
LayerNormLSTM / LayerNormGRU (one layer, one direction), so a state_dict moves between them.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .cells import LAYER_NORM_EPS


class ComposedLayerNorm(torch.nn.Module):
    """One layer of a LayerNorm LSTM (``lstm=True``) or GRU over time-major x [T,B,I], with
    optional lengths [B] (states stop at each sequence's end, outputs 0 beyond it)."""

    def __init__(self, input_size: int, hidden_size: int, lstm: bool = True):
        super().__init__()
        G, H = (4 if lstm else 3) * hidden_size, hidden_size
        self.lstm, self.hidden_size = lstm, H
        bound = 1 / math.sqrt(H)

        def param(*shape, fill=None):
            t = torch.empty(shape).uniform_(-bound, bound) if fill is None else \
                torch.full(shape, float(fill))
            return torch.nn.Parameter(t)

        self.weight_ih_l0, self.weight_hh_l0 = param(G, input_size), param(G, H)
        self.bias_ih_l0, self.bias_hh_l0 = param(G), param(G)
        self.ln_ih_weight_l0, self.ln_hh_weight_l0 = param(G, fill=1), param(G, fill=1)
        if lstm:
            self.ln_c_weight_l0, self.ln_c_bias_l0 = param(H, fill=1), param(H, fill=0)

    def _norm(self, v: torch.Tensor, gain: torch.Tensor, shift: torch.Tensor | None = None):
        return F.layer_norm(v, v.shape[-1:], gain, shift, LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        T, B, _ = x.shape
        h = x.new_zeros(B, self.hidden_size)
        c = x.new_zeros(B, self.hidden_size)
        # the input side of every step at once, as a careful user would
        gi = self._norm(x @ self.weight_ih_l0.t(), self.ln_ih_weight_l0, self.bias_ih_l0)
        ys = []
        for t in range(T):
            gh = self._norm(h @ self.weight_hh_l0.t(), self.ln_hh_weight_l0, self.bias_hh_l0)
            if self.lstm:
                i, f, g, o = (gi[t] + gh).chunk(4, 1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h_new = torch.sigmoid(o) * torch.tanh(
                    self._norm(c_new, self.ln_c_weight_l0, self.ln_c_bias_l0))
            else:
                (ir, iz, i_n), (hr, hz, hn) = gi[t].chunk(3, 1), gh.chunk(3, 1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                h_new = (1 - z) * torch.tanh(i_n + r * hn) + z * h
                c_new = c
            if lengths is None:
                h, c = h_new, c_new
                ys.append(h)
            else:
                live = (t < lengths).unsqueeze(1)
                h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
                ys.append(torch.where(live, h_new, torch.zeros_like(h_new)))
        return torch.stack(ys), (h, c) if self.lstm else h
