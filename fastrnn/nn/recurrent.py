"""The recurrent layer of the model API: fastrnn's stack of any cell as a Module."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.contract import check_flag
from ..conv_lstm import ConvLSTM2d as ConvStack
from ..rnn import RNNBase
from .module import Module


class Recurrent(Module):
    """A batch-first recurrent stack: x [B,T,I] -> [B,T,D*H] ("sequence") or [B,D*H] ("last").

    "last" is the final state of the top layer (both directions concatenated), i.e. each
    sequence's own last valid step when `lengths` is given. With ``stateful=True`` the final
    state of one batch is the initial state of the next (truncated BPTT: no gradient flows
    back into the previous batch) until :meth:`reset_state`; a batch of another size resets it.
    `output_size`: a Jordan cell's output width (required: ``Recurrent("jordan", I, H,
    output_size=O)`` gives [B,T,D*O]), an LSTM's projection size (0: none).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, dropout: float = 0.0, output: str = "sequence",
                 stateful: bool = False, output_size: int = 0, dtype=np.float32,
                 backend: str | None = None, seed: int | None = None):
        super().__init__()
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        self.stack = RNNBase(cell, input_size, hidden_size, num_layers, batch_first=True,
                             dropout=dropout, bidirectional=bidirectional,
                             proj_size=output_size, dtype=dtype, backend=backend, seed=seed)
        self.params, self.grads = self.stack.params, self.stack.grads
        self.output, self.stateful = output, stateful
        self.state: Any = None
        self.dhx: Any = None
        self._shape: tuple | None = None
        self._given_hx = False

    def reset_state(self) -> None:
        self.state = None

    @property
    def rng(self) -> np.random.Generator:
        """The generator of the stack's inter-layer dropout (saved in checkpoints)."""
        return self.stack._rng

    def train(self, mode: bool = True) -> Recurrent:
        super().train(mode)
        self.stack.train(mode)
        return self

    def forward(self, x: np.ndarray, lengths: Any = None, hx: Any = None) -> np.ndarray:
        """x [B,T,I] -> y; `hx`: the initial state as the stack takes it ((L*D, B, H); LSTM:
        (h0, c0)), None for zeros or, when stateful, the carried state. After backward, the
        gradient reaching `hx` is in ``self.dhx`` (None when hx was not given)."""
        if np.ndim(x) != 3:  # the stack would read a 2-d (B, I) as one unbatched sequence
            raise ValueError(f"Recurrent expects x of shape (batch, time, features), got "
                             f"shape {np.shape(x)}: one sequence is x[None], one time step "
                             "of a batch is x[:, None] (or step())")
        self._given_hx = hx is not None
        if hx is None and self.stateful and self.state is not None:
            h = self.state[0] if isinstance(self.state, tuple) else self.state
            hx = self.state if h.shape[1] == x.shape[0] else None
        y, h_n = self.stack(x, hx, lengths)
        if self.stateful:
            self.state = tuple(s.copy() for s in h_n) if isinstance(h_n, tuple) else h_n.copy()
        self._shape = (y.shape, h_n[0].shape if isinstance(h_n, tuple) else h_n.shape)
        if self.output == "sequence":
            return y
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        D = self.stack.num_directions
        return np.concatenate(list(h[-D:]), axis=-1)  # [B, D*H_out]

    def step(self, x: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        """One time step for inference, x [B,I] -> (y [B,H_out], the new state): the state
        is passed and returned explicitly (None: zeros; its format is the stack's h_n, which
        ``stateful`` keeps in ``self.state``), nothing is recorded for backward, no dropout
        applies (:meth:`fastrnn.rnn.RNNBase.step`)."""
        return self.stack.step(x, state)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        y_shape, h_shape = self._need(self._shape, "its input")
        if self.output == "sequence":
            dx, dhx = self.stack.backward(dy)
        else:
            D, Hout = self.stack.num_directions, self.stack.output_size
            dh = np.zeros(h_shape, dy.dtype)
            for d in range(D):
                dh[h_shape[0] - D + d] = dy[:, d * Hout:(d + 1) * Hout]
            dx, dhx = self.stack.backward(np.zeros(y_shape, dy.dtype), dh)
        self.dhx = dhx if self._given_hx else None
        return dx


class ConvLSTM2d(Module):
    """Batch-first ConvLSTM layers (:class:`fastrnn.conv_lstm.ConvLSTM2d`) as a Module: x
    [B,T,C,Hh,Ww] -> [B,T,F,Hh,Ww] ("sequence") or the top layer's last state [B,F,Hh,Ww]
    ("last": each sequence's own last valid step when `lengths` is given). With
    ``input_grad=False`` (a first layer reading data) backward returns None instead of dx and
    saves a sixth of the work."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int,
                 num_layers: int = 1, *, bias: bool = True, output: str = "sequence",
                 input_grad: bool = True, dtype=np.float32, backend: str | None = None,
                 seed: int | None = None):
        super().__init__()
        if output not in ("sequence", "last"):
            raise ValueError(f"output must be 'sequence' or 'last', got {output!r}")
        self.input_grad = check_flag(input_grad, "input_grad")
        self.stack = ConvStack(in_channels, hidden_channels, kernel_size, num_layers, bias,
                               batch_first=True, dtype=dtype, backend=backend, seed=seed)
        self.params, self.grads = self.stack.params, self.stack.grads
        self.output = output
        self._shape: tuple | None = None

    def train(self, mode: bool = True) -> ConvLSTM2d:
        super().train(mode)
        self.stack.train(mode)
        return self

    def forward(self, x: np.ndarray, lengths: Any = None) -> np.ndarray:
        y, (h_n, _) = self.stack(x, None, lengths)
        self._shape = (y.shape, h_n.shape)
        return y if self.output == "sequence" else h_n[-1]

    def backward(self, dy: np.ndarray) -> np.ndarray | None:
        y_shape, h_shape = self._need(self._shape, "its input")
        if self.output == "sequence":
            dx, _ = self.stack.backward(dy, input_grad=self.input_grad)
        else:
            dh = np.zeros(h_shape, dy.dtype)
            dh[-1] = dy
            dx, _ = self.stack.backward(np.zeros(y_shape, dy.dtype), (dh, np.zeros_like(dh)),
                                        input_grad=self.input_grad)
        return dx
