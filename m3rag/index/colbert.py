"""ColBERT vectors of every document in one contiguous array plus offsets (float16 by default)."""

from __future__ import annotations

import numpy as np

__all__ = ["ColbertStore"]


class ColbertStore:
    """Document ``i``'s vectors are ``vectors[offsets[i]:offsets[i + 1]]``; chunks are joined lazily.

    ``dtype`` float16 halves memory (scores move by ~1e-3); float32 keeps them exact.
    """

    def __init__(self, dim: int, dtype: np.dtype | type = np.float16, vectors: np.ndarray | None = None, offsets: np.ndarray | None = None) -> None:
        self.dim, self.dtype = dim, np.dtype(dtype)
        self._vectors = np.zeros((0, dim), dtype=self.dtype) if vectors is None else vectors
        self._offsets = np.zeros(1, dtype=np.int64) if offsets is None else offsets
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._offsets) - 1 + sum(len(o) - 1 for _, o in self._pending)

    def add(self, vectors: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents given as flat ``[T, dim]`` vectors and ``[n + 1]`` offsets from 0."""
        self._pending.append((vectors.astype(self.dtype), np.asarray(offsets, dtype=np.int64)))

    def _join(self) -> None:
        if not self._pending:
            return
        base = int(self._offsets[-1])
        vectors = [self._vectors]
        offsets = [self._offsets]
        for vecs, offs in self._pending:
            vectors.append(vecs)
            offsets.append(offs[1:] + base)
            base += int(offs[-1])
        self._vectors = np.concatenate(vectors)
        self._offsets = np.concatenate(offsets)
        self._pending = []

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors [T, dim], offsets int64 [n + 1])``."""
        self._join()
        return self._vectors, self._offsets

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of ``rows`` as a new flat ``float32`` array and offsets from 0."""
        vectors, offsets = self.arrays
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = offsets[rows], offsets[rows + 1]
        new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=new_offsets[1:])
        out = np.empty((int(new_offsets[-1]), self.dim), dtype=np.float32)
        for a, b, dest in zip(starts.tolist(), ends.tolist(), new_offsets[:-1].tolist()):
            out[dest : dest + b - a] = vectors[a:b]  # each document's rows are contiguous: one copy each
        return out, new_offsets

    def keep(self, rows: np.ndarray) -> ColbertStore:
        vectors, offsets = self.gather(rows)
        return ColbertStore(self.dim, self.dtype, vectors.astype(self.dtype), offsets)
