"""The local store: faiss (dense), an inverted CSR/CSC matrix (sparse) and ColBERT segments, in
this process's memory, saved to an index directory as checksummed plain data.

Snapshot files (format version 2)::

    manifest.json       format, version, model identity, count, settings, files (bytes, sha256),
                        ColBERT segment names in order
    dense.npy           float32 [n, d] (flat), or dense.hnsw: faiss's HNSW serialisation
    sparse.*.npy        CSR indptr / indices / data of the lexical weights
    colbert.spans.npy   int64 [n, 2]: each document's rows in the global ColBERT row space
    colbert.seg-*.npy   immutable segments [rows, c], hard-linked from snapshot to snapshot
    docs.json           ids, texts, metadata

Version 1 snapshots (m3rag 0.1) load too; their model fingerprint was computed differently, so the
model is verified by re-encoding stored documents, and the next save writes version 2.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from m3rag import scoring
from m3rag.encoder.output import M3Output
from m3rag.errors import IndexFormatError, InputValueError, ModelMismatchError, StoreError
from m3rag.index.filters import Filter, matches
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.plan import EncodeColbert, SearchPlan, execute
from m3rag.stores.base import EncodeDense, Store, check_identity
from m3rag.stores.local import snapshot as snap
from m3rag.stores.local.colbert import COLBERT_DTYPES, ColbertDType, ColbertStore
from m3rag.stores.local.dense import DenseKind, DenseStore
from m3rag.stores.local.sparse import SparseStore

__all__ = ["LocalStore"]

_VERIFY_DOCS = 8
"""Documents re-encoded to verify the model of a version-1 snapshot."""
_VERIFY_MIN_COSINE = 0.995
"""Each re-encoded dense vector must be this close to the stored one (bf16/fp16 builds stay above 0.999)."""


def _int(settings: Mapping[str, Any], key: str, default: int, low: int, high: int, path: Path) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise IndexFormatError(f"{path}: settings.{key} must be an integer in [{low}, {high}], got {value!r}", path)
    return value


class LocalStore(Store):
    """Documents and vectors in this process (see the module docstring for the saved layout).

    ``LocalStore(store_colbert=True, colbert_dtype="float16", dense_index="flat", hnsw_m=32,
    ef_construction=200, ef_search=128)``. ``store_colbert=False`` keeps no ColBERT vectors (the
    index recomputes them from the text to rerank: no memory, more compute per query).
    ``colbert_dtype``: ``"float16"`` (default), ``"float32"`` (exact), ``"bfloat16"`` or ``"int8"``
    (fastest rerank; see :mod:`m3rag.stores.local.colbert` for memory and score error of each).
    """

    kind: ClassVar[str] = "local"

    def __init__(
        self,
        *,
        store_colbert: bool = True,
        colbert_dtype: ColbertDType = "float16",
        dense_index: DenseKind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
    ) -> None:
        if colbert_dtype not in COLBERT_DTYPES:
            raise InputValueError(f"colbert_dtype must be one of {', '.join(map(repr, COLBERT_DTYPES))}, got {colbert_dtype!r}")
        if dense_index not in ("flat", "hnsw"):
            raise InputValueError(f"dense_index must be 'flat' or 'hnsw', got {dense_index!r}")
        for name, value, high in (
            ("hnsw_m", hnsw_m, 512),
            ("ef_construction", ef_construction, 1 << 16),
            ("ef_search", ef_search, 1 << 16),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= high:
                raise InputValueError(f"{name} must be an integer in [2, {high}], got {value!r}")
        self.keeps_colbert = bool(store_colbert)
        self.colbert_dtype: ColbertDType = colbert_dtype
        self._dense_settings = dict(hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        self.dense_kind: DenseKind = dense_index
        self.settings: dict[str, Any] = {}
        self.identity: dict[str, Any] | None = None
        self._legacy_identity = False
        self._reset(dim=None, vocab_size=None, colbert_dim=None)

    def _reset(self, dim: int | None, vocab_size: int | None, colbert_dim: int | None) -> None:
        self._dense: DenseStore | None = None if dim is None else DenseStore(dim, self.dense_kind, **self._dense_settings)
        self._sparse: SparseStore | None = None if vocab_size is None else SparseStore(vocab_size)
        self._colbert: ColbertStore | None = (
            None if colbert_dim is None or not self.keeps_colbert else ColbertStore(colbert_dim, self.colbert_dtype)
        )
        self._ids: list[str | None] = []  # per row; None once deleted
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._alive = np.zeros(0, dtype=bool)
        self._row_of: dict[str, int] = {}

    def describe(self) -> str:
        colbert = f"{self.colbert_dtype} ColBERT" if self.keeps_colbert else "ColBERT recomputed"
        return f"local ({self.dense_kind} dense, {colbert})"

    # ------------------------------------------------------------------ model
    def bind(self, identity: Mapping[str, Any], *, encode_dense: EncodeDense | None = None) -> None:
        if self.identity is None:
            self.identity = dict(identity)
            self._reset(int(identity["dim"]), int(identity["vocab_size"]), identity.get("colbert_dim"))
            return
        if not self._legacy_identity:
            check_identity(self.identity, identity, "the index")
            self.identity = dict(identity)  # the name may differ (a moved model directory): keep the new one
            return
        self._verify_by_reencoding(identity, encode_dense)

    def recorded_model(self) -> str | None:
        return None if self.identity is None else str(self.identity.get("name"))

    def _verify_by_reencoding(self, identity: Mapping[str, Any], encode_dense: EncodeDense | None) -> None:
        """A version-1 snapshot: its fingerprint scheme is gone, so compare sizes, then re-encode
        a sample of stored documents and compare with their stored dense vectors."""
        assert self.identity is not None and self._dense is not None
        check_identity({**self.identity, "fingerprint": None}, {**identity, "fingerprint": None}, "the index")
        rows = np.flatnonzero(self._alive)
        if len(rows) and encode_dense is None:
            raise ModelMismatchError("this index was saved by m3rag 0.1; loading it needs the encoder to verify its model")
        sample = rows[np.linspace(0, len(rows) - 1, min(_VERIFY_DOCS, len(rows))).astype(np.int64)] if len(rows) else rows
        if len(sample):
            fresh = encode_dense([self._texts[r] for r in sample.tolist()])  # type: ignore[misc]
            stored = self._dense.vectors(sample)
            cosine = np.einsum("ij,ij->i", fresh, stored) / np.maximum(
                np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored, axis=1), 1e-12
            )
            if cosine.min() < _VERIFY_MIN_COSINE:
                raise ModelMismatchError(
                    f"the index was built with model {self.identity.get('name')!r}, and the encoder's {identity.get('name')!r} "
                    f"gives other vectors for its documents (cosine {cosine.min():.3f} < {_VERIFY_MIN_COSINE})"
                )
        self.identity, self._legacy_identity = dict(identity), False

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self._row_of)

    def ids(self) -> list[str]:
        return [i for i in self._ids if i is not None]

    def existing(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._row_of}

    def write(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]], vectors: M3Output) -> None:
        assert self._dense is not None and self._sparse is not None and vectors.dense is not None and vectors.sparse is not None
        if self._colbert is not None and (vectors.colbert is None or vectors.colbert_offsets is None):
            raise InputValueError("this store keeps ColBERT vectors: encode the documents with return_colbert_vecs=True")
        self._mark_deleted([self._row_of[i] for i in ids if i in self._row_of])
        start = len(self._ids)
        self._dense.add(vectors.dense)
        self._sparse.add(vectors.sparse)
        if self._colbert is not None:
            self._colbert.add(vectors.colbert, vectors.colbert_offsets)  # type: ignore[arg-type]
        self._ids.extend(ids)
        self._texts.extend(texts)
        self._metadatas.extend(metadatas)
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        self._row_of.update((doc_id, start + i) for i, doc_id in enumerate(ids))

    def delete(self, ids: Sequence[str]) -> None:
        self._mark_deleted([self._row_of[i] for i in ids])
        if (~self._alive).sum() > max(1024, int(self._alive.sum())):
            self._compact()

    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        return [IndexedDocument(i, self._texts[r], dict(self._metadatas[r])) for i, r in ((i, self._row_of[i]) for i in ids)]

    def _mark_deleted(self, rows: list[int]) -> None:
        for row in rows:
            doc_id = self._ids[row]
            if doc_id is not None:
                del self._row_of[doc_id]
                self._ids[row] = None
                self._alive[row] = False

    def _compact(self) -> None:
        """Drop deleted rows from every part (rebuilds the faiss index; ColBERT keeps its segments)."""
        keep = np.flatnonzero(self._alive)
        if len(keep) == len(self._alive) or self._dense is None or self._sparse is None:
            return
        self._dense = self._dense.keep(keep)
        self._sparse = self._sparse.keep(keep)
        if self._colbert is not None:
            self._colbert.keep(keep)
        self._ids = [self._ids[r] for r in keep]
        self._texts = [self._texts[r] for r in keep]
        self._metadatas = [self._metadatas[r] for r in keep]
        self._alive = np.ones(len(keep), dtype=bool)
        self._row_of = {doc_id: r for r, doc_id in enumerate(self._ids) if doc_id is not None}

    def export(self, batch_size: int = 256) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]], M3Output]]:
        assert self._dense is not None and self._sparse is not None
        rows = np.flatnonzero(self._alive)
        matrix = self._sparse.matrix
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            colbert = offsets = None
            if self._colbert is not None:
                colbert, offsets = self._colbert.gather(part)
            num_tokens = np.diff(offsets) + 1 if offsets is not None else np.zeros(len(part), dtype=np.int64)
            out = M3Output(
                self._dense.vectors(part), sp.csr_array(matrix[part]), colbert, offsets, num_tokens, np.zeros(len(part), dtype=bool)
            )
            yield (
                [self._ids[r] for r in part.tolist()],
                [self._texts[r] for r in part.tolist()],
                [dict(self._metadatas[r]) for r in part.tolist()],
                out,
            )

    def nbytes(self) -> dict[str, int]:
        """Bytes held per part: ``dense`` (vectors, and the graph for HNSW), ``sparse`` (CSR and
        its CSC twin), ``colbert`` (in memory), ``colbert_mapped`` (memory-mapped files: page cache,
        not process memory) and ``docs`` (texts and metadata as UTF-8 JSON)."""
        dense = (
            0
            if self._dense is None
            else (len(self._dense.serialized()) if self.dense_kind == "hnsw" else len(self._dense) * self._dense.dim * 4)
        )
        sparse = 0 if self._sparse is None else self._sparse.nbytes()
        colbert = mapped = 0
        if self._colbert is not None:
            for segment in self._colbert.segments:
                if isinstance(segment.vectors, np.memmap):
                    mapped += segment.vectors.nbytes
                else:
                    colbert += segment.vectors.nbytes
            colbert += self._colbert.spans.nbytes
        docs = sum(len(t.encode("utf-8")) for t in self._texts) + len(json.dumps(self._metadatas).encode("utf-8"))
        return {"dense": dense, "sparse": sparse, "colbert": colbert, "colbert_mapped": mapped, "docs": docs}

    # ------------------------------------------------------------------ search
    def _allowed(self, filter: Filter | None) -> np.ndarray:
        if not filter:
            return self._alive
        allowed: np.ndarray = self._alive.copy()
        for row in np.flatnonzero(allowed).tolist():
            allowed[row] = matches(self._metadatas[row], filter)
        return allowed

    def search(self, plan: SearchPlan, queries: M3Output, encode_colbert: EncodeColbert) -> list[list[SearchHit]]:
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        return execute(plan, queries, _Source(self, plan, queries), encode_colbert)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, timeout: float = snap.LOCK_TIMEOUT) -> Path:
        """Write a new snapshot of ``path`` atomically (see :mod:`m3rag.stores.local.snapshot`)."""
        if self.identity is None or self._dense is None or self._sparse is None:
            raise InputValueError("the store is not bound to a model yet: nothing to save")
        counts = {"ids": len(self._ids), "texts": len(self._texts), "metadatas": len(self._metadatas), "rows": len(self._alive),
                  "dense": len(self._dense), "sparse": len(self._sparse)}  # fmt: skip
        if self._colbert is not None:
            counts["colbert"] = len(self._colbert)
        if len(set(counts.values())) != 1:  # a write cut short (e.g. by a signal): never commit it over the last good snapshot
            raise StoreError(f"the store is inconsistent ({counts}): not saved, the previous snapshot is kept")
        self._compact()
        sparse = self._sparse.matrix
        files: dict[str, snap.Writer] = {}
        if self.dense_kind == "flat":
            files["dense.npy"] = snap.save_npy(self._dense.all_vectors())
        else:
            files["dense.hnsw"] = snap.save_npy(self._dense.serialized())
        files["sparse.indptr.npy"] = snap.save_npy(sparse.indptr.astype(np.int64))
        files["sparse.indices.npy"] = snap.save_npy(sparse.indices.astype(np.int32))
        files["sparse.data.npy"] = snap.save_npy(sparse.data.astype(np.float32))
        files["docs.json"] = snap.save_json({"ids": self._ids, "texts": self._texts, "metadatas": self._metadatas})
        segment_names: list[str] = []
        if self._colbert is not None:
            if self._colbert.total_rows > 2 * max(self._colbert.live_rows, 1 << 16):
                self._colbert = self._colbert.compacted()  # mostly deleted rows: rewrite once
            self._colbert.seal()
            files["colbert.spans.npy"] = snap.save_npy(self._colbert.spans)
            root = Path(path).resolve()
            for segment in self._colbert.segments:
                # link a segment only within one index directory: other directories get their own copy
                linkable = segment.file is not None and segment.file.parent.parent.resolve() == root
                named = segment.file is not None and segment.file.name.startswith("colbert.seg-")
                name = segment.file.name if named else f"colbert.seg-{uuid.uuid4().hex}.npy"  # type: ignore[union-attr]
                write = snap.save_npy(segment.vectors)
                files[name] = snap.Existing(segment.file, segment.facts or {}, write) if linkable else write  # type: ignore[arg-type]
                segment_names.append(name)
        manifest = {
            "model": dict(self.identity),
            "count": len(self._ids),
            "settings": self._settings(),
            "colbert": {"segments": segment_names},
        }
        directory, facts = snap.write_snapshot(path, files, manifest, timeout=timeout)
        if self._colbert is not None:  # the next save links these files instead of writing them
            for segment, name in zip(self._colbert.segments, segment_names):
                if segment.file is None and len(segment.vectors):  # just written: map it, free the memory
                    segment.vectors = np.load(directory / name, mmap_mode="r", allow_pickle=False)
                segment.file, segment.facts = directory / name, facts[name]
        return directory

    def _settings(self) -> dict[str, Any]:
        return {
            **self.settings,
            "store_colbert": self.keeps_colbert,
            "colbert_dtype": self.colbert_dtype if self.keeps_colbert else None,
            "dense_index": self.dense_kind,
            **self._dense_settings,
        }

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = True, timeout: float = snap.LOCK_TIMEOUT) -> LocalStore:
        """A store from the current snapshot of ``path``: every file checked against the manifest
        (names, sizes, checksums, shapes, dtypes, finite values) before it is used. The model is
        checked when the index binds it (:meth:`bind`)."""
        with snap.open_snapshot(path, timeout=timeout) as s:
            return cls._from_snapshot(s, mmap)

    @classmethod
    def _from_snapshot(cls, s: snap.Snapshot, mmap: bool) -> LocalStore:
        manifest_path = s.dir / "manifest.json"
        settings, model, n = s.manifest["settings"], s.manifest["model"], s.manifest["count"]

        def bad(message: str, name: str = "manifest.json") -> IndexFormatError:
            return IndexFormatError(f"{s.dir / name}: {message}", s.dir / name)

        store_colbert, colbert_dtype, dense_kind = (
            settings.get("store_colbert"),
            settings.get("colbert_dtype") or "float16",
            settings.get("dense_index"),
        )
        if not isinstance(store_colbert, bool) or colbert_dtype not in COLBERT_DTYPES or dense_kind not in ("flat", "hnsw"):
            raise bad(f"invalid settings store_colbert={store_colbert!r}, colbert_dtype={colbert_dtype!r}, dense_index={dense_kind!r}")
        store = cls(
            store_colbert=store_colbert,
            colbert_dtype=colbert_dtype,
            dense_index=dense_kind,
            hnsw_m=_int(settings, "hnsw_m", 32, 2, 512, manifest_path),
            ef_construction=_int(settings, "ef_construction", 200, 2, 1 << 16, manifest_path),
            ef_search=_int(settings, "ef_search", 128, 2, 1 << 16, manifest_path),
        )
        max_length = settings.get("max_length")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= 1 << 20):
            raise bad(f"settings.max_length must be null or an integer >= 2, got {max_length!r}")
        store.settings = {"max_length": max_length}
        dim, vocab_size, colbert_dim = model["dim"], model["vocab_size"], model.get("colbert_dim")
        if store_colbert and colbert_dim is None:
            raise bad("settings store ColBERT vectors but the model has no colbert_dim")
        store.identity = dict(model)
        store._legacy_identity = s.version == 1
        store._reset(dim, vocab_size, colbert_dim)

        docs = s.json("docs.json")
        ids, texts, metas = (docs.get(k) if isinstance(docs, dict) else None for k in ("ids", "texts", "metadatas"))
        if not (
            isinstance(ids, list) and isinstance(texts, list) and isinstance(metas, list) and len(ids) == len(texts) == len(metas) == n
        ):
            raise bad(f"does not hold {n} documents (ids, texts, metadatas)", "docs.json")
        if (
            not all(isinstance(i, str) for i in ids)
            or len(set(ids)) != n
            or not all(isinstance(t, str) for t in texts)
            or not all(isinstance(m, dict) for m in metas)
        ):
            raise bad("ids must be unique str, texts str and metadatas objects", "docs.json")

        # dense
        if dense_kind == "flat" and "dense.npy" in s.files:
            vectors = s.array("dense.npy", dtype_kinds="f")
            if vectors.shape != (n, dim) or not np.isfinite(vectors).all():
                raise bad(f"holds {vectors.shape} values (finite float32 [{n}, {dim}] expected)", "dense.npy")
            dense = DenseStore(dim, "flat", **store._dense_settings)
            dense.add(vectors)
        else:
            name = "dense.hnsw" if "dense.hnsw" in s.files else "dense.faiss"  # dense.faiss: version 1
            data = s.array(name, dtype_kinds="u") if name == "dense.hnsw" else np.frombuffer(s.read(name), dtype=np.uint8)
            try:
                dense = DenseStore.from_serialized(data, dense_kind, dim, **store._dense_settings)
            except Exception as exc:  # faiss raises RuntimeError for unreadable data
                raise bad(f"is not a usable {dense_kind!r} dense index: {exc}", name) from None
            if len(dense) != n:
                raise bad(f"holds {len(dense)} vectors, expected {n}", name)

        # sparse
        indptr = s.array("sparse.indptr.npy", dtype_kinds="iu")
        indices = s.array("sparse.indices.npy", dtype_kinds="iu")
        data = s.array("sparse.data.npy", dtype_kinds="f")
        if not np.isfinite(data).all() or (data < 0).any():
            raise bad("holds negative, NaN or infinite weights", "sparse.data.npy")
        try:
            matrix = sp.csr_array((data.astype(np.float32), indices, indptr), shape=(n, vocab_size))
            matrix.check_format(full_check=True)
        except (ValueError, TypeError, IndexError) as exc:
            raise bad(f"sparse arrays are inconsistent: {exc}", "sparse.indptr.npy") from None

        # ColBERT
        colbert = None
        if store_colbert:
            colbert = ColbertStore(colbert_dim, store.colbert_dtype)
            if s.version == 1:
                _colbert_v1(s, colbert, n, mmap, bad)
            else:
                _colbert_v2(s, colbert, n, mmap, bad)

        store._dense, store._sparse, store._colbert = dense, SparseStore(vocab_size, matrix), colbert
        store._ids, store._texts, store._metadatas = list(ids), list(texts), list(metas)
        store._alive = np.ones(n, dtype=bool)
        store._row_of = {doc_id: r for r, doc_id in enumerate(ids)}
        return store


def _finite_rows(colbert: ColbertStore, vectors: np.ndarray, bad: Any, name: str) -> None:
    for start in range(0, len(vectors), 1 << 16):  # in blocks: a memory-mapped array stays mapped
        if not colbert.finite(vectors[start : start + (1 << 16)]):
            raise bad("holds NaN or infinite values", name)


def _colbert_v1(s: snap.Snapshot, colbert: ColbertStore, n: int, mmap: bool, bad: Any) -> None:
    vectors = s.array("colbert.vectors.npy", mmap=mmap, dtype_kinds="f")
    offsets = s.array("colbert.offsets.npy", dtype_kinds="iu").astype(np.int64)
    if offsets.shape != (n + 1,) or (n + 1 and offsets[0] != 0) or np.any(np.diff(offsets) < 0):
        raise bad(f"offsets must be int [{n + 1}], from 0, non-decreasing", "colbert.offsets.npy")
    if vectors.shape != (int(offsets[-1]), colbert.dim) or vectors.dtype != colbert.dtype:
        raise bad(
            f"holds {vectors.dtype} {vectors.shape}, expected {colbert.dtype} [{int(offsets[-1])}, {colbert.dim}]", "colbert.vectors.npy"
        )
    _finite_rows(colbert, vectors, bad, "colbert.vectors.npy")
    from m3rag.stores.local.colbert import Segment

    if len(vectors):
        colbert._append_segment(Segment(vectors, 0, s.dir / "colbert.vectors.npy", s.files["colbert.vectors.npy"]))
    colbert.spans = np.stack([offsets[:-1], offsets[1:]], axis=1)


def _colbert_v2(s: snap.Snapshot, colbert: ColbertStore, n: int, mmap: bool, bad: Any) -> None:
    from m3rag.stores.local.colbert import Segment

    section = s.manifest.get("colbert")
    names = section.get("segments") if isinstance(section, dict) else None
    if (
        not isinstance(names, list)
        or not all(isinstance(x, str) and x.startswith("colbert.seg-") for x in names)
        or len(set(names)) != len(names)
    ):
        raise bad("colbert.segments must be a list of distinct colbert.seg-* file names")
    base = 0
    for name in names:
        vectors = s.array(name, mmap=mmap, dtype_kinds="fiu")
        if vectors.ndim != 2 or vectors.shape[1] != colbert.width or vectors.dtype != colbert.dtype:
            raise bad(f"holds {vectors.dtype} {vectors.shape}, expected {colbert.dtype} [rows, {colbert.width}] ({colbert.kind})", name)
        _finite_rows(colbert, vectors, bad, name)
        colbert._append_segment(Segment(vectors, base, s.dir / name, s.files[name]))
        base += len(vectors)
    spans = s.array("colbert.spans.npy", dtype_kinds="iu").astype(np.int64)
    if spans.shape != (n, 2) or (n and (spans.min() < 0 or spans.max() > base or np.any(spans[:, 1] < spans[:, 0]))):
        raise bad(f"spans must be int [{n}, 2] with 0 <= start <= end <= {base}", "colbert.spans.npy")
    if n and len(colbert.segments):
        bases = np.array([seg.base for seg in colbert.segments] + [base])
        which = np.searchsorted(bases, spans[:, 0], side="right") - 1
        nonempty = spans[:, 1] > spans[:, 0]
        if np.any(spans[nonempty, 1] > bases[np.minimum(which[nonempty] + 1, len(bases) - 1)]):
            raise bad("a document's span crosses a segment boundary", "colbert.spans.npy")
    colbert.spans = spans


class _Source:
    """The local store as an exact plan source: rows are keys; sparse scores of all documents
    and the dense first stage are computed once for all queries."""

    def __init__(self, store: LocalStore, plan: SearchPlan, q: M3Output) -> None:
        assert store._dense is not None and store._sparse is not None
        self.store, self.plan, self.q = store, plan, q
        allowed = store._allowed(plan.filter)
        self.allowed = allowed
        n_allowed = int(allowed.sum())
        self.depth = min(plan.depth, n_allowed)
        selector = None if n_allowed == len(allowed) else allowed
        self.dense_top = (
            store._dense.search(q.dense, max(self.depth, 1), selector)[1]
            if plan.mode in ("dense", "hybrid") and q.dense is not None
            else None
        )
        self.sparse_all = store._sparse.scores(q.sparse) if q.sparse is not None else None  # [m, N]
        self.empty = n_allowed == 0

    def first_stage(self, i: int) -> dict[str, np.ndarray]:
        lists: dict[str, np.ndarray] = {}
        if self.empty:
            return {m: np.zeros(0, dtype=np.int64) for m in ("dense", "sparse")}
        if self.dense_top is not None:
            rows = self.dense_top[i][: self.depth]
            rows = rows[rows >= 0]
            # faiss returns equal scores in no set order: rank by the exact score, ties by row (insertion order)
            lists["dense"] = rows[np.lexsort((rows, -self.dense_scores(i, rows)))]
        if self.plan.mode in ("sparse", "hybrid"):
            assert self.sparse_all is not None
            s = np.where(self.allowed, self.sparse_all[i], -np.inf)
            top = scoring.top_k(s, self.depth)
            lists["sparse"] = top[s[top] > 0]
        return lists

    def dense_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        dense: np.ndarray = self.store._dense.vectors(keys).astype(np.float64) @ self.q.dense[i].astype(np.float64)  # type: ignore[union-attr,index]
        return dense

    def sparse_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        sparse: np.ndarray = self.sparse_all[i, keys]  # type: ignore[index]
        return sparse

    def colbert_scores(self, i: int, keys: np.ndarray) -> np.ndarray | None:
        if self.store._colbert is None:
            return None
        return self.store._colbert.scores(self.q.colbert_vecs[i], keys)  # type: ignore[index]

    def texts(self, keys: np.ndarray) -> list[str]:
        return [self.store._texts[r] for r in keys.tolist()]

    def hits(self, keys: np.ndarray, final: np.ndarray, per_mode: Mapping[str, np.ndarray]) -> list[SearchHit]:
        store = self.store
        return [
            SearchHit(
                id=store._ids[r],
                text=store._texts[r],
                metadata=dict(store._metadatas[r]),
                score=float(final[j]),
                scores={m: float(s[j]) for m, s in per_mode.items()},
            )
            for j, r in enumerate(keys.tolist())
        ]
