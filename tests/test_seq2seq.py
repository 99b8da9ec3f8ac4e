"""The sequence-to-sequence model: its gradients against central finite differences in
float64 (every parameter, ragged sources, GRU and LSTM, every attention kind), beam search
against an exhaustive search, and clear errors."""

import itertools

import numpy as np
import pytest

from fastrnn import nn
from fastrnn.seq2seq import Seq2Seq

EPS = 1e-6


def tiny(cell, attention, seed=0):
    model = Seq2Seq(7, 6, embed=3, hidden=2, cell=cell, attention=attention,
                    dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 7, (3, 5))
    lengths = np.array([5, 2, 4])
    src[1, 2:] = 0
    src[2, 4:] = 0
    target = rng.integers(3, 6, (3, 4))
    target[:, -1] = 2
    target[0, 2:] = [2, 0]
    return model, src, lengths, target


def loss_of(model, src, lengths, target):
    ce = nn.CrossEntropyLoss(ignore_index=0)
    value = ce(model(src, lengths, target), target)
    return value, ce


@pytest.mark.parametrize("cell,attention", [("gru", "additive"), ("lstm", "general"),
                                            ("gru", "dot"), ("layernorm_lstm", "additive")])
def test_gradients_match_finite_differences(cell, attention):
    model, src, lengths, target = tiny(cell, attention)
    model.zero_grad()
    _, ce = loss_of(model, src, lengths, target)
    model.backward(ce.backward())
    assert model.decoder.obj.recorded_steps == 0 and model.attention.recorded_steps == 0
    checked = 0
    for name, p, g in model.named_parameters():
        flat, gflat = p.reshape(-1), g.reshape(-1)
        idx = np.random.default_rng(1).choice(flat.size, min(flat.size, 12), replace=False)
        for j in idx:
            orig = flat[j]
            flat[j] = orig + EPS
            up = loss_of(model, src, lengths, target)[0]
            flat[j] = orig - EPS
            down = loss_of(model, src, lengths, target)[0]
            flat[j] = orig
            num = (up - down) / (2 * EPS)
            assert abs(gflat[j] - num) <= 1e-6 * max(1.0, abs(num)) + 1e-8, (name, j,
                                                                               gflat[j], num)
            checked += 1
    assert checked > 100
    # the decoder's tapes are empty again: a backward per forward
    model.decoder.obj.reset_tape()


def test_beam_search_finds_the_best_sequence_and_greedy_is_beam_one():
    """With beam >= every prefix (vocabulary^steps), beam search equals an exhaustive search
    over sequences of length <= max_len by log-probability / length^alpha."""
    model, src, lengths, _ = tiny("gru", "additive", seed=3)
    V, max_len = model.tgt_vocab, 3
    beam_out, weights = model.translate(src, lengths, max_len, beam=V ** max_len,
                                        length_penalty=0.7)
    assert weights.shape[0] == 3 and weights.shape[2] == 5
    assert np.all(weights[1, :, 2:] == 0)  # padded source positions get no attention
    greedy, _ = model.translate(src, lengths, max_len, beam=1)
    from scipy.special import log_softmax

    for b in range(3):
        best, best_score = None, -np.inf
        for n in range(1, max_len + 1):
            for seq in itertools.product(range(V), repeat=n):
                if any(t in (model.pad, model.sos) for t in seq):
                    continue
                if any(t == model.eos for t in seq[:-1]):
                    continue
                if n < max_len and seq[-1] != model.eos:
                    continue
                logp = score_sequence(model, src[b:b + 1], lengths[b:b + 1], seq, log_softmax)
                length = n
                value = logp / length ** 0.7
                if value > best_score:
                    best, best_score = seq, value
        assert beam_out[b] == [t for t in best if t != model.eos], b
    assert all(len(g) <= max_len for g in greedy)


def score_sequence(model, src, lengths, seq, log_softmax):
    """log P(seq | src) under the model, decoding step by step with the given tokens."""
    enc_out, h0, mask = model._encode(src, lengths)
    model.eval()
    model.attention.keys(enc_out, mask)
    cell, E = model.decoder.obj, model.tgt_embed.params["weight"]
    state = model._initial_state(h0)
    context = np.zeros((1, enc_out.shape[2]))
    prev, total = np.array([model.sos]), 0.0
    for tok in seq:
        state = cell(np.concatenate([E[prev], context], axis=1), state)
        h = state[0] if model._lstm else state
        context, _ = model.attention(h)
        total += log_softmax(model._logits(np.concatenate([h, context], 1)), axis=1)[0, tok]
        prev = np.array([tok])
    model.train()
    return total


def test_errors():
    model, src, lengths, target = tiny("gru", "additive")
    with pytest.raises(ValueError, match="src_lengths"):
        model(src, [5, 0, 4], target)
    with pytest.raises(ValueError, match="target must be"):
        model(src, lengths, target[:2])
    with pytest.raises(ValueError, match="teacher_forcing"):
        model(src, lengths, target, teacher_forcing=1.5)
    with pytest.raises(ValueError, match="beam"):
        model.translate(src, lengths, 3, beam=0)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((3, 4, 6)))
