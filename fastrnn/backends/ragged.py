"""Batch plans for compiled kernels: ragged batches sorted, large batches split into parts.

The one place where a ragged batch is planned (:class:`~fastrnn.backends.driver.Driver` uses
it for every compiled backend). With a part's rows sorted longest first, the sequences that own
step t (lengths[b] > t) are its first ``active[t]`` rows, in both directions. A kernel then runs
each step on rows [0, active[t]) only, so a ragged batch costs what its valid steps cost, and
frozen rows need no mask. A large batch is dealt into parts (one per core) round-robin over the
sorted order, so every part stays sorted and gets its share of long and short sequences.
Without sorting (a GPU's single part, whose kernels follow each sequence's own length) the plan
is the identity and the part's ``lengths`` say where each sequence ends.
"""

from __future__ import annotations

import numpy as np


class BatchPlan:
    """How a batch is split into parts and ordered, and per part and step the active rows."""

    def __init__(self, lengths: np.ndarray | None, T: int, B: int, parts: int = 1,
                 sort: bool = True):
        sort = sort and lengths is not None
        order = np.argsort(-lengths, kind="stable") if sort else np.arange(B)
        self.B, self.T = B, T
        self.rows = [order[p::parts] for p in range(parts)]
        self._lengths = lengths
        self.active = [
            np.full(T, len(rows), dtype=np.int64) if lengths is None
            else (lengths[rows][None, :] > np.arange(T)[:, None]).sum(axis=1).astype(np.int64)
            for rows in self.rows
        ]
        self._identity = parts == 1 and (not sort or np.array_equal(order, np.arange(B)))

    @property
    def parts(self) -> int:
        return len(self.rows)

    def lengths(self, part: int) -> np.ndarray:
        """The sequence lengths of part `part`, in its row order."""
        rows = self.rows[part]
        if self._lengths is None:
            return np.full(len(rows), self.T, np.int64)
        return self._lengths[rows]

    def gather(self, a: np.ndarray, axis: int, part: int) -> np.ndarray:
        """Part `part` of `a` along its batch axis, C-contiguous (`a` itself if nothing moves)."""
        if self._identity:
            return a
        return np.ascontiguousarray(np.take(a, self.rows[part], axis=axis))

    def scatter(self, pieces: list[np.ndarray], axis: int) -> np.ndarray:
        """Inverse of :meth:`gather`: the parts' arrays put back into one, in batch order."""
        if self._identity:
            return pieces[0]
        shape = list(pieces[0].shape)
        shape[axis] = self.B
        out = np.empty(shape, pieces[0].dtype)
        index: list = [slice(None)] * len(shape)
        for rows, piece in zip(self.rows, pieces, strict=True):
            index[axis] = rows
            out[tuple(index)] = piece
        return out
