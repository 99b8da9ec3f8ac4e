"""Ragged batches for compiled kernels: sort by length so active sequences form a prefix.

With the batch sorted longest first, the sequences that own step t (lengths[b] > t) are the
first ``active[t]`` rows, in both directions. A kernel then runs each step on rows
[0, active[t]) only, so a ragged batch costs what its valid steps cost, and frozen rows need no
mask. The permutation is undone on the way out.
"""

from __future__ import annotations

import numpy as np


class BatchOrder:
    """The longest-first order of a batch and, per step, how many sequences are active."""

    def __init__(self, lengths: np.ndarray | None, T: int, B: int):
        if lengths is None:
            self.perm = None
            self.active = np.full(T, B, dtype=np.int64)
            return
        perm = np.argsort(-lengths, kind="stable")
        self.perm = None if np.array_equal(perm, np.arange(B)) else perm
        self.active = (lengths[None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.int64)

    def gather(self, a: np.ndarray, axis: int) -> np.ndarray:
        """`a` with its batch axis in sorted order (C-contiguous; `a` itself when unsorted)."""
        if self.perm is None:
            return a
        return np.ascontiguousarray(np.take(a, self.perm, axis=axis))

    def scatter(self, a: np.ndarray, axis: int) -> np.ndarray:
        """Inverse of :meth:`gather`."""
        if self.perm is None:
            return a
        out = np.empty_like(a)
        index = [slice(None)] * a.ndim
        index[axis] = self.perm
        out[tuple(index)] = a
        return out
