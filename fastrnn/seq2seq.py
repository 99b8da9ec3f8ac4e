"""Sequence to sequence with attention on fastrnn's kernels (model API).

:class:`Seq2Seq`: token ids in, token ids out. The encoder is a bidirectional layer stack
(the fused layer kernels, ragged source lengths); a bridge (Linear + tanh) turns its final
states into the decoder's initial state; the decoder is a single-step cell
(:mod:`fastrnn.rnn_cell`) fed its previous token's embedding and the previous attention
context ("input feeding", Luong et al. 2015), attending over the encoder's outputs
(:class:`~fastrnn.nn.Attention`, additive or multiplicative) with the source mask; a Linear
layer maps [h, context] to the target vocabulary's logits.

Training: :meth:`Seq2Seq.forward` runs the decoder with teacher forcing (each step's input is
the true previous token with probability `teacher_forcing`, else the model's own greedy
guess) and returns the logits of every step; :meth:`Seq2Seq.backward` takes their gradient
and runs BPTT through the decoder steps (newest first, through the cell's and the
attention's tapes), the bridge and the encoder. Decoding: :meth:`Seq2Seq.translate`, greedy
(beam 1) or batched beam search with length normalisation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import log_softmax

from .nn import Attention, Embedding, Linear
from .nn.module import Module
from .rnn import RNNBase
from .rnn_cell import RNNCellBase


class _Held(Module):
    """A layer stack or a cell (params / grads dicts of their own) as a child Module."""

    def __init__(self, obj: Any):
        super().__init__()
        self.obj, self.params, self.grads = obj, obj.params, obj.grads

    def train(self, mode: bool = True) -> _Held:
        super().train(mode)
        self.obj.train(mode)
        return self


class Seq2Seq(Module):
    """src ids [B,S] (ragged: `src_lengths`) -> target logits [B,T,V].

    Token ids: `pad` (0) pads, `sos` (1) starts every decoder input, `eos` (2) ends every
    target. cell: "gru", "lstm" or a LayerNorm cell; attention: "additive", "dot" or
    "general". The encoder has `hidden` units per direction, the decoder 2 * hidden.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 32, hidden: int = 64,
                 cell: str = "gru", attention: str = "additive", *, pad: int = 0,
                 sos: int = 1, eos: int = 2, dtype=np.float32, backend: str | None = None,
                 seed: int | None = 0):
        super().__init__()
        rng = np.random.default_rng(seed)

        def sub_seed() -> int:
            return int(rng.integers(2**31))

        H, D = hidden, 2 * hidden
        self.pad, self.sos, self.eos = pad, sos, eos
        self.embed, self.hidden, self.tgt_vocab = embed, hidden, tgt_vocab
        self.src_embed = Embedding(src_vocab, embed, dtype=dtype, seed=sub_seed())
        self.encoder = _Held(RNNBase(cell, embed, H, bidirectional=True, batch_first=True,
                                     dtype=dtype, backend=backend, seed=sub_seed()))
        self.bridge = Linear(D, D, dtype=dtype, seed=sub_seed())
        self.tgt_embed = Embedding(tgt_vocab, embed, dtype=dtype, seed=sub_seed())
        self.decoder = _Held(RNNCellBase(cell, embed + D, D, dtype=dtype, backend=backend,
                                         seed=sub_seed()))
        self.attention = Attention(D, D, attention, dtype=dtype, seed=sub_seed())
        self.out = Linear(2 * D, tgt_vocab, dtype=dtype, seed=sub_seed())
        self.dtype = np.dtype(dtype)
        self._cache: dict | None = None

    def children(self) -> dict[str, Module]:
        return {"src_embed": self.src_embed, "encoder": self.encoder, "bridge": self.bridge,
                "tgt_embed": self.tgt_embed, "decoder": self.decoder,
                "attention": self.attention, "out": self.out}

    @property
    def _lstm(self) -> bool:
        return "c" in self.decoder.obj.spec.cell.states

    # -------------------------------------------------------------- encoder

    def _encode(self, src: np.ndarray, lengths: np.ndarray):
        """(encoder outputs [B,S,D], the decoder's initial state, mask [B,S], bridge
        pre-activation's tanh)."""
        src = np.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"src must be 2-d (B, S) token ids, got shape {src.shape}")
        B, S = src.shape
        lengths = np.asarray(lengths, np.int64)
        if lengths.shape != (B,) or lengths.min(initial=1) < 1 or lengths.max(initial=1) > S:
            raise ValueError(f"src_lengths must have shape ({B},) with entries in [1, {S}], "
                             f"got {lengths}")
        emb = self.src_embed(src)
        enc_out, h_n = self.encoder.obj(emb, lengths=lengths)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # [2,B,H]
        bridge = np.tanh(self.bridge(np.concatenate([h_n[0], h_n[1]], axis=1)))
        mask = np.arange(S)[None, :] < lengths[:, None]
        return enc_out, bridge, mask

    def _initial_state(self, h0: np.ndarray):
        return (h0, np.zeros_like(h0)) if self._lstm else h0

    def _logits(self, feat: np.ndarray) -> np.ndarray:
        """The output layer without its tape (decoding and greedy guesses)."""
        logits = feat @ self.out.params["weight"].T
        return logits + self.out.params["bias"]

    # -------------------------------------------------------------- training

    def forward(self, src: np.ndarray, src_lengths: Any, target: np.ndarray,
                teacher_forcing: float = 1.0, rng: np.random.Generator | None = None
                ) -> np.ndarray:
        """Logits [B,T,V] for target [B,T] (each row ending in eos, then pad). Step t's input
        is sos at t=0, then target[:, t-1] with probability `teacher_forcing` (per step, for
        the whole batch), else the model's greedy guess of the step before."""
        target = np.asarray(target)
        if target.ndim != 2 or target.shape[0] != np.asarray(src).shape[0]:
            raise ValueError(f"target must be (B, T) token ids for the {np.asarray(src).shape[0]}"
                             f" sources, got shape {target.shape}")
        if not 0 <= teacher_forcing <= 1:
            raise ValueError(f"teacher_forcing must lie in [0, 1], got {teacher_forcing}")
        rng = rng or np.random.default_rng()
        enc_out, h0, mask = self._encode(src, src_lengths)
        B, T = target.shape
        self.attention.keys(enc_out, mask)  # also forgets the steps of an earlier forward
        cell = self.decoder.obj
        cell.reset_tape()  # likewise: a forward whose backward never ran leaves nothing
        E = self.tgt_embed.params["weight"]
        state = self._initial_state(h0)
        context = np.zeros((B, enc_out.shape[2]), self.dtype)
        prev = np.full(B, self.sos)
        inputs, feats = [], []
        for t in range(T):
            inputs.append(prev)
            state = cell(np.concatenate([E[prev], context], axis=1), state)
            h = state[0] if self._lstm else state
            context, _ = self.attention(h)
            feats.append(np.concatenate([h, context], axis=1))
            if t + 1 < T:
                forced = rng.random() < teacher_forcing
                prev = target[:, t] if forced else self._logits(feats[-1]).argmax(axis=1)
        self._cache = {"inputs": np.stack(inputs, axis=1), "h0": h0, "T": T}
        return self.out(np.stack(feats, axis=1))

    def backward(self, d_logits: np.ndarray) -> None:
        """BPTT of the last forward from d_logits [B,T,V]; gradients accumulate in grads."""
        cache = self._need(self._cache, "its forward")
        self._cache = None
        d_feats = self.out.backward(d_logits)
        D = self.decoder.obj.hidden_size
        cell = self.decoder.obj
        B, T = cache["inputs"].shape
        d_emb = np.zeros((B, T, self.embed), self.dtype)
        dh = np.zeros((B, D), self.dtype)
        dc = np.zeros((B, D), self.dtype) if self._lstm else None
        d_context = np.zeros((B, d_feats.shape[2] - D), self.dtype)
        for t in reversed(range(T)):
            d_context = d_context + d_feats[:, t, D:]
            dh = dh + d_feats[:, t, :D] + self.attention.backward(d_context)
            dx, d_state = cell.backward(dh, dc)
            dh, dc = d_state if self._lstm else (d_state, None)
            d_emb[:, t], d_context = dx[:, :self.embed], dx[:, self.embed:]
        self.tgt_embed(cache["inputs"])
        self.tgt_embed.backward(d_emb)
        d_enc_out = self.attention.keys_backward()
        d_final = self.bridge.backward(dh * (1 - cache["h0"] ** 2))  # [B, 2H]
        H = self.hidden
        dh_n = np.stack([d_final[:, :H], d_final[:, H:]])
        dh_n = (dh_n, None) if self._lstm else dh_n
        d_src, _ = self.encoder.obj.backward(d_enc_out, dh_n)
        self.src_embed.backward(d_src)

    # -------------------------------------------------------------- decoding

    def translate(self, src: np.ndarray, src_lengths: Any, max_len: int, beam: int = 1,
                  length_penalty: float = 1.0) -> tuple[list[list[int]], np.ndarray]:
        """Decode a batch: (token ids of each output without sos / eos, attention weights of
        the best hypothesis [B, steps, S]). beam 1 is greedy; otherwise batched beam search,
        hypotheses ranked by log-probability / length ** length_penalty."""
        if beam < 1 or max_len < 1:
            raise ValueError(f"beam and max_len must be >= 1, got {beam} and {max_len}")
        was_training = self.training
        self.eval()
        try:
            return self._beam_search(src, src_lengths, max_len, beam, length_penalty)
        finally:
            self.train(was_training)

    def _beam_search(self, src, src_lengths, max_len: int, W: int, alpha: float):
        enc_out, h0, mask = self._encode(src, src_lengths)
        B, S, _ = enc_out.shape
        rows = np.repeat(np.arange(B), W)  # hypothesis (b, w) lives in row b * W + w
        self.attention.keys(enc_out[rows], mask[rows])
        cell = self.decoder.obj
        E = self.tgt_embed.params["weight"]
        state = self._initial_state(h0[rows])
        context = np.zeros((B * W, enc_out.shape[2]), self.dtype)
        prev = np.full(B * W, self.sos)
        scores = np.full((B, W), -np.inf)
        scores[:, 0] = 0.0  # one live hypothesis per source to start
        finished = np.zeros((B, W), bool)
        lengths = np.zeros((B, W), np.int64)
        tokens = np.zeros((B, W, 0), np.int64)
        weights_hist = np.zeros((B, W, 0, S), self.dtype)
        V = self.tgt_vocab
        for _ in range(max_len):
            state = cell(np.concatenate([E[prev], context], axis=1), state)
            h = state[0] if self._lstm else state
            context, attn = self.attention(h)
            logp = log_softmax(self._logits(np.concatenate([h, context], axis=1)), axis=1)
            logp = logp.reshape(B, W, V)
            # a finished hypothesis extends only by pad, at no cost
            logp = np.where(finished[:, :, None], -np.inf, logp)
            logp[..., self.pad] = np.where(finished, 0.0, -np.inf)
            total = (scores[:, :, None] + logp).reshape(B, W * V)
            best = np.argsort(-total, axis=1, kind="stable")[:, :W]
            src_w, tok = best // V, best % V
            scores = np.take_along_axis(total, best, axis=1)
            pick = (np.arange(B)[:, None] * W + src_w).reshape(-1)
            finished = np.take_along_axis(finished, src_w, axis=1)
            lengths = np.take_along_axis(lengths, src_w, axis=1) + ~finished
            finished = finished | (tok == self.eos)
            tokens = np.concatenate([tokens[np.arange(B)[:, None], src_w], tok[..., None]], 2)
            weights_hist = np.concatenate(
                [weights_hist[np.arange(B)[:, None], src_w],
                 attn[pick].reshape(B, W, 1, S)], axis=2)
            state = tuple(s[pick] for s in state) if self._lstm else state[pick]
            context, prev = context[pick], tok.reshape(-1)
            if finished.all():
                break
        ranked = np.where(np.isfinite(scores), scores / np.maximum(lengths, 1) ** alpha,
                          -np.inf)
        top = ranked.argmax(axis=1)
        out = []
        for b in range(B):
            seq = [int(t) for t in tokens[b, top[b]] if t not in (self.eos, self.pad)]
            out.append(seq)
        return out, weights_hist[np.arange(B), top]
