"""ColBERT vectors in immutable segments plus a span per document, and the rerank kernel that
scores candidates straight from them.

All vectors live in a global row space cut into segments: in-memory arrays for what was added
since the last save, memory-mapped files for what was saved. Document ``i``'s vectors are global
rows ``spans[i, 0]:spans[i, 1]``, always inside one segment. Deleting or reordering documents only
rewrites spans; a save writes the unsaved segments as one new file and hard-links the others from
the previous snapshot, so saving costs what changed, and memory stays flat as saved segments are
memory-mapped.

Storage dtypes (bytes per token at dimension ``d``; bge-m3: ``d = 1024``):

- ``"float32"``: ``4d``, exact.
- ``"float16"`` (default): ``2d``; scores move by ~1e-5 (unit vectors, fp32 compute).
- ``"bfloat16"``: ``2d``, kept as raw ``uint16`` bits; scored by native bf16 units (AMX /
  AVX512-BF16) without any conversion; scores move by ~1e-4.
- ``"int8"``: ``d + 4``: each row scaled to ``[-127, 127]`` by its own max (a float32 scale kept in
  the row's last 4 bytes); scored by int8 dot-product units (AMX-INT8 / VNNI), the query quantized
  the same way (AVX2-only CPUs too); scores move by ~2e-4. Half the bytes of fp16, which is what
  a memory-bound rerank pays for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from m3rag import _cpu

if TYPE_CHECKING:
    import torch

__all__ = ["COLBERT_DTYPES", "ColbertDType", "ColbertStore", "Compute", "Segment", "compute_for"]

ColbertDType = Literal["float16", "float32", "bfloat16", "int8"]
COLBERT_DTYPES: tuple[ColbertDType, ...] = ("float16", "float32", "bfloat16", "int8")
Compute = Literal["float32", "bfloat16", "int8"]
"""The precision a rerank multiplies in: float32 (exact for float32 stores), or natively in the
store's own bfloat16 / int8."""

_STORAGE: dict[str, type[np.generic]] = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16, "int8": np.int8}
_SCALE_BYTES = 4
_DIRECT_MIN_ROWS = 64
"""A candidate with at least this many rows is multiplied in place (a view of its segment); shorter
ones are copied into a block with their neighbours first, so small documents cost one GEMM per block."""
_BLOCK_BYTES = 1 << 20
"""Bytes of one scratch block (compute dtype): stays in L2 while it is multiplied."""


@dataclass
class Segment:
    """Rows ``base:base + len(vectors)`` of the global row space. ``file`` (with its recorded
    ``facts``) is a saved file holding exactly ``vectors``; ``None`` until saved."""

    vectors: np.ndarray
    base: int
    file: Path | None = None
    facts: dict[str, Any] | None = None


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (``uint16``), rounded to nearest even (finite input)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded: np.ndarray = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    return rounded.astype(np.uint16)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``uint16``) -> float32, exactly."""
    wide: np.ndarray = np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled by their own max to ``int8 [-127, 127]``: ``(values, float32 scales)``,
    ``x ~= values * scales[:, None]``; an all-zero row has scale 0."""
    x = np.asarray(x, dtype=np.float32)
    peak = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(len(x), dtype=np.float32)
    scales = (peak / 127).astype(np.float32)
    safe = np.where(scales > 0, scales, 1).astype(np.float32)
    values = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)
    return values, scales


def compute_for(kind: str) -> Compute:
    """The fastest faithful precision to score a ``kind`` store on this CPU: bf16 where the CPU
    multiplies it natively (emulated bf16 runs ~25x slower than float32), int8 wherever torch's
    int8 GEMM runs (AMX/VNNI, or AVX2), else float32."""
    if kind == "bfloat16" and _cpu.native_bf16_matmul():
        return "bfloat16"
    if kind == "int8" and _cpu.fast_int8_matmul():
        return "int8"
    return "float32"


class ColbertStore:
    """ColBERT rows of ``dim`` values in one of :data:`COLBERT_DTYPES` (module docstring)."""

    def __init__(self, dim: int, dtype: str | np.dtype | type = "float16") -> None:
        kind = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if kind not in _STORAGE:
            raise ValueError(f"ColBERT dtype must be one of {COLBERT_DTYPES}, got {dtype!r}")
        self.dim, self.kind = dim, kind
        self.dtype = np.dtype(_STORAGE[kind])
        """The stored arrays' numpy dtype (``uint16`` holds bfloat16 bits)."""
        self.width = dim + _SCALE_BYTES if kind == "int8" else dim
        """Values per stored row (int8 rows end with their 4-byte scale)."""
        self.segments: list[Segment] = []
        self.spans = np.zeros((0, 2), dtype=np.int64)
        self._bases = np.zeros(0, dtype=np.int64)
        self._tensors: dict[int, tuple[np.ndarray, Any, Any]] = {}

    def __len__(self) -> int:
        return len(self.spans)

    @property
    def total_rows(self) -> int:
        """Rows in all segments, live or not."""
        return self.segments[-1].base + len(self.segments[-1].vectors) if self.segments else 0

    @property
    def live_rows(self) -> int:
        return int((self.spans[:, 1] - self.spans[:, 0]).sum())

    @property
    def bytes_per_token(self) -> int:
        return self.width * self.dtype.itemsize

    # ------------------------------------------------------------------ conversion
    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """float ``[T, dim]`` -> stored rows ``[T, width]`` of :attr:`dtype`."""
        if self.kind == "bfloat16":
            return to_bfloat16_bits(vectors)
        if self.kind == "int8":
            values, scales = quantize_int8(vectors)
            out = np.empty((len(values), self.width), dtype=np.int8)
            out[:, : self.dim] = values
            out[:, self.dim :] = scales.astype("<f4").view(np.int8).reshape(-1, _SCALE_BYTES)
            return out
        return np.ascontiguousarray(vectors, dtype=self.dtype)

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows -> ``float32 [T, dim]`` (the values the store holds, exactly)."""
        if self.kind == "bfloat16":
            return from_bfloat16_bits(rows)
        if self.kind == "int8":
            values: np.ndarray = rows[:, : self.dim].astype(np.float32) * self.scales(rows)[:, None]
            return values
        return np.asarray(rows, dtype=np.float32)

    def scales(self, rows: np.ndarray) -> np.ndarray:
        """The float32 scales of stored int8 rows (a view)."""
        return rows[:, self.dim :].view("<f4")[:, 0]

    # ------------------------------------------------------------------ contents
    def _append_segment(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._bases = np.append(self._bases, segment.base)

    def add(self, vectors: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents given as flat float ``[T, dim]`` vectors and ``[n + 1]`` offsets from 0."""
        offsets = np.asarray(offsets, dtype=np.int64)
        base = self.total_rows
        if len(vectors):
            self._append_segment(Segment(self.encode(vectors), base))
        spans = np.stack([offsets[:-1], offsets[1:]], axis=1) + base
        self.spans = np.concatenate([self.spans, spans])

    def add_stored(self, rows: np.ndarray, offsets: np.ndarray) -> None:
        """Append documents given as already stored rows (``[T, width]`` of :attr:`dtype`)."""
        offsets = np.asarray(offsets, dtype=np.int64)
        base = self.total_rows
        if len(rows):
            self._append_segment(Segment(np.ascontiguousarray(rows, dtype=self.dtype), base))
        self.spans = np.concatenate([self.spans, np.stack([offsets[:-1], offsets[1:]], axis=1) + base])

    def keep(self, rows: np.ndarray) -> None:
        """Keep only documents ``rows``, in that order (vectors stay in their segments)."""
        self.spans = self.spans[np.asarray(rows, dtype=np.int64)]

    def _located(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per document of ``rows``: segment index, start and end within that segment (int64 arrays)."""
        spans = self.spans[np.asarray(rows, dtype=np.int64)]
        if not len(self._bases):
            return np.zeros(len(spans), dtype=np.int64), spans[:, 0], spans[:, 1]
        which = np.maximum(np.searchsorted(self._bases, spans[:, 0], side="right") - 1, 0)
        base = self._bases[which]
        return which, spans[:, 0] - base, spans[:, 1] - base

    def gather_stored(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored rows of documents ``rows`` as one new array (of :attr:`dtype`) and offsets from 0."""
        which, starts, ends = self._located(rows)
        offsets = np.zeros(len(which) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        out = np.empty((int(offsets[-1]), self.width), dtype=self.dtype)
        for seg, start, end, dest in zip(which.tolist(), starts.tolist(), ends.tolist(), offsets[:-1].tolist()):
            if end > start:  # each document's rows are contiguous in one segment: one copy each
                out[dest : dest + end - start] = self.segments[seg].vectors[start:end]
        return out, offsets

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The vectors of documents ``rows`` as one new ``float32`` array and offsets from 0."""
        stored, offsets = self.gather_stored(rows)
        return self.decode(stored), offsets

    def compacted(self) -> ColbertStore:
        """A store holding only live vectors, in document order, in one in-memory segment (bit for bit)."""
        stored, offsets = self.gather_stored(np.arange(len(self)))
        store = ColbertStore(self.dim, self.kind)
        store.add_stored(stored, offsets)
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

    def finite(self, rows: np.ndarray) -> bool:
        """True if stored ``rows`` hold no NaN or infinity (bf16 exponent bits; int8 scales)."""
        if self.kind == "bfloat16":
            return not bool(((rows & np.uint16(0x7F80)) == np.uint16(0x7F80)).any())
        if self.kind == "int8":
            return bool(np.isfinite(self.scales(rows)).all())
        return bool(np.isfinite(rows).all())

    # ------------------------------------------------------------------ rerank
    def _tensors_of(self, seg: int) -> tuple[Any, Any]:
        """Torch views of segment ``seg``'s values (compute-ready dtype) and int8 scales, made once."""
        segment = self.segments[seg]
        cached = self._tensors.get(seg)
        if cached is not None and cached[0] is segment.vectors:
            return cached[1], cached[2]
        import torch

        with warnings.catch_warnings():  # memory-mapped segments are read-only; nothing writes to these views
            warnings.simplefilter("ignore", UserWarning)
            values = torch.from_numpy(segment.vectors)
            scales = None
            if self.kind == "bfloat16":
                values = values.view(torch.bfloat16)
            elif self.kind == "int8":
                scales = torch.from_numpy(segment.vectors[:, self.dim :].view("<f4")).reshape(-1)
                values = values[:, : self.dim]
        self._tensors[seg] = (segment.vectors, values, scales)
        return values, scales

    @staticmethod
    def _blocks(docs: np.ndarray, which: np.ndarray, lengths: np.ndarray, block_rows: int) -> list[np.ndarray]:
        """``docs`` cut into runs of one segment holding at most ``block_rows`` rows (or one document)."""
        out: list[np.ndarray] = []
        first = 0
        total = 0
        for j, doc in enumerate(docs.tolist()):
            if j > first and (total + lengths[doc] > block_rows or which[doc] != which[docs[first]]):
                out.append(docs[first:j])
                first, total = j, 0
            total += int(lengths[doc])
        out.append(docs[first:])
        return out

    def _score_block(
        self, docs: np.ndarray, segs: np.ndarray, starts: np.ndarray, lengths: np.ndarray, compute: str, product: Any, best: np.ndarray
    ) -> None:
        """Copy the rows of ``docs`` (all in segment ``segs[0]``) into one block of the compute
        dtype, multiply it once, and take each document's max."""
        import torch

        values, scales = self._tensors_of(int(segs[0]))
        heads = np.zeros(len(docs), dtype=np.int64)
        np.cumsum(lengths[:-1], out=heads[1:])
        if len(docs) == 1:  # one document: its rows are already contiguous
            a, b = int(starts[0]), int(starts[0] + lengths[0])
            block, block_scales = values[a:b], None if scales is None else scales[a:b]
        else:
            index = torch.from_numpy(np.repeat(starts - heads, lengths) + np.arange(int(lengths.sum()), dtype=np.int64))
            block = values.index_select(0, index)
            block_scales = None if scales is None else scales.index_select(0, index)
        if compute == "float32" and self.kind == "int8":  # dequantize the block
            assert block_scales is not None
            block, block_scales = block.float().mul_(block_scales[:, None]), None
        elif compute == "float32" and block.dtype != torch.float32:
            block = block.float()
        sim = product(block, block_scales).numpy()
        best[docs] = np.maximum.reduceat(sim, heads, axis=0)

    def scores(self, query: np.ndarray, rows: np.ndarray, compute: Compute | None = None) -> np.ndarray:
        """ColBERT scores ``float64 [len(rows)]`` of ``query [Lq, dim]`` against documents ``rows``
        (``mean_i max_j q_i . p_j``; a document with no rows scores 0), read from the segments.

        ``compute`` (default :func:`compute_for` this store's dtype) is the precision of the
        products: ``"float32"`` (exact on the stored values), ``"bfloat16"`` (bf16 store only) or
        ``"int8"`` (int8 store only; the query is quantized per row too). Long documents are
        multiplied where they lie (no copy); short ones are packed into L2-sized blocks first.
        """
        import torch

        compute = compute or compute_for(self.kind)
        if compute not in ("float32", self.kind):
            raise ValueError(f"a {self.kind} store scores in float32 or {self.kind}, not {compute}")
        n = len(rows)
        out = np.zeros(n, dtype=np.float64)
        q = np.asarray(query, dtype=np.float32)
        if n == 0 or q.shape[0] == 0:
            return out
        q_scale = None
        if compute == "int8":
            q_values, q_scale = quantize_int8(q)
            qt = torch.from_numpy(q_values).T.contiguous()
        elif compute == "bfloat16":
            qt = torch.from_numpy(q).to(torch.bfloat16).T.contiguous()
        else:
            qt = torch.from_numpy(q).T.contiguous()
        best = np.zeros((n, q.shape[0]), dtype=np.float32)  # per document: max over its rows, per query token
        which, starts, ends = self._located(rows)
        lengths = ends - starts
        native = compute != "float32" or self.kind == "float32"
        block_rows = max(_DIRECT_MIN_ROWS, _BLOCK_BYTES // (self.dim * (4 if compute == "float32" else 2 if compute == "bfloat16" else 1)))

        def product(values: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
            if compute == "int8":
                assert scales is not None
                return torch._int_mm(values, qt).float().mul_(scales[:, None])
            return torch.mm(values, qt).float() if compute == "bfloat16" else torch.mm(values, qt)

        direct = (lengths >= _DIRECT_MIN_ROWS) if native else np.zeros(n, dtype=bool)
        for doc in np.flatnonzero(direct).tolist():  # in place: a view of the segment, no copy
            values, scales = self._tensors_of(int(which[doc]))
            a, b = int(starts[doc]), int(ends[doc])
            best[doc] = product(values[a:b], None if scales is None else scales[a:b]).amax(dim=0).numpy()
        packed = np.flatnonzero(~direct & (lengths > 0))
        if len(packed):
            packed = packed[np.argsort(which[packed], kind="stable")]  # one gather per segment run
            for group in self._blocks(packed, which, lengths, block_rows):
                self._score_block(group, which[group], starts[group], lengths[group], compute, product, best)
        nonempty = lengths > 0
        if q_scale is not None:
            best *= q_scale[None, :]
        out[nonempty] = best[nonempty].mean(axis=1, dtype=np.float64)
        return out
