"""ColBERT vectors in immutable segments plus a span per document (float16 by default).

All vectors live in a global row space cut into segments: in-memory arrays for what was added
since the last save, memory-mapped files for what was saved. Document ``i``'s vectors are global
rows ``spans[i, 0]:spans[i, 1]``, always inside one segment. Deleting or reordering documents only
rewrites spans; a save writes the unsaved segments as one new file and hard-links the others from
the previous snapshot, so saving costs what changed, and memory stays flat as saved segments are
memory-mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ColbertStore", "Segment"]


@dataclass
class Segment:
    """Rows ``base:base + len(vectors)`` of the global row space. ``file`` (with its recorded
    ``facts``) is a saved file holding exactly ``vectors``; ``None`` until saved."""

    vectors: np.ndarray
    base: int
    file: Path | None = None
    facts: dict[str, Any] | None = None


class ColbertStore:
    """``dtype`` float16 halves memory (scores move by ~1e-3); float32 keeps them exact."""

    def __init__(self, dim: int, dtype: np.dtype | type = np.float16) -> None:
        self.dim, self.dtype = dim, np.dtype(dtype)
        self.segments: list[Segment] = []
        self.spans = np.zeros((0, 2), dtype=np.int64)
        self._bases = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def total_rows(self) -> int:
        """Rows in all segments, live or not."""
        return self.segments[-1].base + len(self.segments[-1].vectors) if self.segments else 0

    @property
    def live_rows(self) -> int:
        return int((self.spans[:, 1] - self.spans[:, 0]).sum())

    def _append_segment(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._bases = np.append(self._bases, segment.base)

    def add(self, vectors: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents given as flat ``[T, dim]`` vectors and ``[n + 1]`` offsets from 0."""
        offsets = np.asarray(offsets, dtype=np.int64)
        base = self.total_rows
        if len(vectors):
            self._append_segment(Segment(np.ascontiguousarray(vectors, dtype=self.dtype), base))
        spans = np.stack([offsets[:-1], offsets[1:]], axis=1) + base
        self.spans = np.concatenate([self.spans, spans])

    def keep(self, rows: np.ndarray) -> None:
        """Keep only documents ``rows``, in that order (vectors stay in their segments)."""
        self.spans = self.spans[np.asarray(rows, dtype=np.int64)]

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of documents ``rows`` as one new ``float32`` array and offsets from 0."""
        spans = self.spans[np.asarray(rows, dtype=np.int64)]
        lengths = spans[:, 1] - spans[:, 0]
        offsets = np.zeros(len(spans) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty((int(offsets[-1]), self.dim), dtype=np.float32)
        which = np.searchsorted(self._bases, spans[:, 0], side="right") - 1
        for (start, end), seg, dest in zip(spans.tolist(), which.tolist(), offsets[:-1].tolist()):
            if end > start:  # each document's rows are contiguous in one segment: one copy each
                segment = self.segments[seg]
                out[dest : dest + end - start] = segment.vectors[start - segment.base : end - segment.base]
        return out, offsets

    def compacted(self) -> ColbertStore:
        """A store holding only live vectors, in document order, in one in-memory segment."""
        vectors, offsets = self.gather(np.arange(len(self)))
        store = ColbertStore(self.dim, self.dtype)
        store.add(vectors.astype(self.dtype), offsets)
        return store

    def seal(self) -> Segment | None:
        """Join the unsaved segments into one (they are always the last ones); returns it."""
        unsaved = [s for s in self.segments if s.file is None]
        if not unsaved:
            return None
        if len(unsaved) > 1:
            joined = Segment(np.concatenate([s.vectors for s in unsaved]), unsaved[0].base)
            self.segments = [s for s in self.segments if s.file is not None]
            self._bases = np.array([s.base for s in self.segments], dtype=np.int64)
            self._append_segment(joined)
        return self.segments[-1]
