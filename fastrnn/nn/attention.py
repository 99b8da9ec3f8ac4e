"""Attention over a source sequence for step-by-step decoders (Bahdanau, Luong).

:class:`Attention` scores every source position s against a query q (a decoder state):

- ``"additive"`` (Bahdanau et al. 2015): score = v^T tanh(W_q q + W_k k_s)
- ``"dot"`` (Luong et al. 2015): score = k_s . q (keys and query of one width)
- ``"general"`` (Luong): score = k_s . (W q)

masks the positions beyond each source's length, and returns the context sum_s a_s k_s (the
keys are the values, as in both papers) and the weights a = softmax(scores).

Per source sequence, :meth:`Attention.keys` projects the keys once ([B,S,A], additive only);
then each decoder step calls :meth:`Attention.forward`. As the cells do
(:mod:`fastrnn.rnn_cell`), every step in training pushes what its backward needs on a tape
(a stack) and :meth:`Attention.backward` pops the newest; the keys' gradient accumulates over
the steps and :meth:`Attention.keys_backward` turns it into the gradient of the encoder's
output once, after the decoder's loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..linalg import matmul
from . import init
from .module import Module

KINDS = ("additive", "dot", "general")


class Attention(Module):
    """query [B,Q], keys [B,S,K] (mask [B,S] bool, True = a real position) -> context [B,K],
    weights [B,S]. attn_size: the additive score's hidden width."""

    def __init__(self, query_size: int, key_size: int, kind: str = "additive",
                 attn_size: int | None = None, *, dtype=np.float32, seed: int | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs query_size == key_size, got {query_size} "
                             f"and {key_size}")
        rng = np.random.default_rng(seed)
        self.kind, self.query_size, self.key_size = kind, query_size, key_size
        if kind == "additive":
            A = attn_size or key_size
            self.add_param("w_query", init.xavier_uniform((A, query_size), rng, dtype=dtype))
            self.add_param("w_key", init.xavier_uniform((A, key_size), rng, dtype=dtype))
            self.add_param("v", init.xavier_uniform((1, A), rng, dtype=dtype)[0])
        elif kind == "general":
            self.add_param("w", init.xavier_uniform((key_size, query_size), rng, dtype=dtype))
        self._source: tuple | None = None
        self._tape: list = []

    # -------------------------------------------------------------- per source sequence

    def keys(self, keys: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Set the source for the next steps: keys [B,S,K] and mask [B,S] (None: all real).
        Forgets the steps recorded for the previous source."""
        keys = np.asarray(keys)
        if keys.ndim != 3 or keys.shape[2] != self.key_size:
            raise ValueError(f"keys must have shape (B, S, {self.key_size}), got {keys.shape}")
        B, S, _ = keys.shape
        if mask is None:
            mask = np.ones((B, S), bool)
        mask = np.asarray(mask)
        if mask.shape != (B, S) or mask.dtype != bool:
            raise ValueError(f"mask must be a bool array of shape ({B}, {S}), got "
                             f"{mask.dtype} {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("every source needs at least one real position in mask")
        projected = None
        if self.kind == "additive":
            B, S, K = keys.shape
            projected = matmul(keys.reshape(B * S, K), self.params["w_key"],
                               trans_b=True).reshape(B, S, -1)
        self._source = (keys, mask, projected)
        self._d_keys = np.zeros_like(keys)
        self._d_projected = None if projected is None else np.zeros_like(projected)
        self._tape = []

    def keys_backward(self) -> np.ndarray:
        """The gradient of the keys [B,S,K] from every step's backward since :meth:`keys`
        (and the gradient of w_key for additive attention)."""
        keys, _, _ = self._need(self._source, "its keys")
        d_keys = self._d_keys.copy()
        if self.kind == "additive":
            B, S, A = self._d_projected.shape
            dp = self._d_projected.reshape(B * S, A)
            self.grads["w_key"] += matmul(dp, keys.reshape(B * S, -1), trans_a=True)
            d_keys += matmul(dp, self.params["w_key"]).reshape(keys.shape)
        self._d_keys[...] = 0
        if self._d_projected is not None:
            self._d_projected[...] = 0
        return d_keys

    # -------------------------------------------------------------- per decoder step

    def forward(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """query [B,Q] -> (context [B,K], weights [B,S])."""
        keys, mask, projected = self._need(self._source, "its keys (call keys() first)")
        query = np.asarray(query)
        if query.shape != (keys.shape[0], self.query_size):
            raise ValueError(f"query must have shape ({keys.shape[0]}, {self.query_size}), "
                             f"got {query.shape}")
        e = None
        B, S, K = keys.shape
        if self.kind == "additive":
            e = projected + matmul(query, self.params["w_query"], trans_b=True)[:, None, :]
            np.tanh(e, out=e)
            scores = matmul(e.reshape(B * S, -1), self.params["v"][:, None]).reshape(B, S)
        else:
            q = query if self.kind == "dot" else matmul(query, self.params["w"], trans_b=True)
            scores = np.matmul(keys, q[:, :, None])[:, :, 0]
        scores = np.where(mask, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=1, keepdims=True)
        context = np.matmul(weights[:, None, :], keys)[:, 0]
        if self.training:
            self._tape.append((query, weights, e))
        return context, weights

    def backward(self, d_context: np.ndarray, d_weights: np.ndarray | None = None
                 ) -> np.ndarray:
        """Backward of the newest recorded step: d_context [B,K] (and d_weights [B,S], if the
        weights fed a loss). Returns d_query [B,Q]; the keys' gradient waits for
        :meth:`keys_backward`."""
        keys, mask, _ = self._need(self._source, "its keys")
        if not self._tape:
            raise RuntimeError("Attention.backward() has no recorded step: every backward "
                               "needs its own forward in training mode (newest first)")
        query, weights, e = self._tape.pop()
        self._d_keys += weights[:, :, None] * d_context[:, None, :]
        dw = np.matmul(keys, d_context[:, :, None])[:, :, 0]
        if d_weights is not None:
            dw = dw + d_weights
        d_scores = weights * (dw - (dw * weights).sum(axis=1, keepdims=True))
        d_scores = np.where(mask, d_scores, 0)
        B, S, _ = keys.shape
        if self.kind == "additive":
            A = e.shape[2]
            self.grads["v"] += matmul(d_scores.reshape(1, B * S), e.reshape(B * S, A))[0]
            d_pre = e * e  # becomes d(score) v (1 - e^2), [B,S,A]
            np.subtract(1, d_pre, out=d_pre)
            d_pre *= self.params["v"]
            d_pre *= d_scores[:, :, None]
            self._d_projected += d_pre
            d_q_proj = d_pre.sum(axis=1)  # [B,A]
            self.grads["w_query"] += matmul(d_q_proj, query, trans_a=True)
            return matmul(d_q_proj, self.params["w_query"])
        d_q = np.matmul(d_scores[:, None, :], keys)[:, 0]
        q = query if self.kind == "dot" else matmul(query, self.params["w"], trans_b=True)
        self._d_keys += d_scores[:, :, None] * q[:, None, :]
        if self.kind == "dot":
            return d_q
        self.grads["w"] += matmul(d_q, query, trans_a=True)
        return matmul(d_q, self.params["w"])

    @property
    def recorded_steps(self) -> int:
        return len(self._tape)

    def children(self) -> dict[str, Any]:
        return {}
