"""M3Index: a local hybrid index (dense faiss + sparse inverted + ColBERT) on the shared encoder."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from m3rag import scoring
from m3rag.encoder import M3Encoder, M3Output
from m3rag.errors import DuplicateIdError, IndexFormatError, InputTypeError, InputValueError, UnknownIdError
from m3rag.index import persistence
from m3rag.index.colbert import ColbertStore
from m3rag.index.dense import DenseKind, DenseStore
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.sparse import SparseStore
from m3rag.rerank import RerankMode, resolve_weights
from m3rag.validation import check_positive_int, check_texts

__all__ = ["M3Index", "SearchMode", "Fusion"]

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["weighted", "rrf"]
_RRF_K = 60


def _check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise InputValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


class M3Index:
    """Documents searchable by dense, sparse or hybrid retrieval, with optional ColBERT reranking.

    ``M3Index(encoder, *, store_colbert=True, colbert_dtype="float16", dense_index="flat")``.
    ``encoder`` is an :class:`M3Encoder` or a model name (resolved with :meth:`M3Encoder.shared`).
    Each added text is encoded once for every representation the index keeps.

    - Dense: faiss ``IndexFlatIP`` (exact) or ``"hnsw"`` (approximate, for large corpora).
    - Sparse: a CSR/CSC inverted index over the vocabulary; a query touches only its tokens' postings.
    - ColBERT: all vectors in one contiguous array plus offsets, float16 by default (scores move by
      ~1e-3); or, with ``store_colbert=False``, recomputed from the text at rerank time.

    Ids are strings. Adding an existing id is a :class:`DuplicateIdError` unless ``upsert=True``,
    which replaces the document (text, metadata and vectors). Reads and writes from several threads
    are serialised by one lock; encoding runs outside it.
    """

    def __init__(
        self,
        encoder: M3Encoder | str | os.PathLike[str] | None = None,
        *,
        store_colbert: bool = True,
        colbert_dtype: Literal["float16", "float32"] = "float16",
        dense_index: DenseKind = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        max_length: int | None = None,
    ) -> None:
        self.encoder = encoder if isinstance(encoder, M3Encoder) else M3Encoder.shared(encoder)
        if self.encoder.dense_only:
            raise InputValueError("M3Index needs the sparse and ColBERT heads; the encoder was loaded dense_only")
        _check_choice(colbert_dtype, "colbert_dtype", ("float16", "float32"))
        _check_choice(dense_index, "dense_index", ("flat", "hnsw"))
        self.store_colbert = bool(store_colbert)
        self.max_length = check_positive_int(max_length, "max_length", minimum=2, optional=True)
        assert self.encoder.colbert_dim is not None
        self._dense = DenseStore(self.encoder.dim, dense_index, hnsw_m=hnsw_m, ef_search=ef_search)
        self._sparse = SparseStore(self.encoder.vocab_size)
        self._colbert = ColbertStore(self.encoder.colbert_dim, np.dtype(colbert_dtype)) if store_colbert else None
        self._ids: list[str | None] = []  # per row; None once deleted
        self._texts: list[str] = []
        self._metadatas: list[dict[str, Any]] = []
        self._alive = np.zeros(0, dtype=bool)
        self._row_of: dict[str, int] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self._row_of)

    def __repr__(self) -> str:
        return f"M3Index({len(self)} documents, dense={self._dense.kind}, colbert={'stored' if self.store_colbert else 'recomputed'}, model={self.encoder.name!r})"

    @property
    def ids(self) -> list[str]:
        """Ids of the stored documents, in insertion order."""
        with self._lock:
            return [i for i in self._ids if i is not None]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._row_of

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
    ) -> list[str]:
        """Encode and store ``texts``; returns their ids (new uuid4 hex strings when ``ids`` is None).

        Metadata must be JSON-serialisable (it is saved as JSON). Repeated ids (in the call or
        against the index) raise :class:`DuplicateIdError` unless ``upsert``: then the last
        occurrence wins and replaces the stored document. Nothing is stored if anything fails.
        """
        texts, _ = check_texts(texts)
        ids = self._check_ids(ids, len(texts))
        metas = self._check_metadatas(metadatas, len(texts), ids)
        if upsert:  # the last occurrence of an id within the call wins
            last = {doc_id: i for i, doc_id in enumerate(ids)}
            keep = sorted(last.values())
            texts, ids, metas = [texts[i] for i in keep], [ids[i] for i in keep], [metas[i] for i in keep]
        else:
            seen: set[str] = set()
            repeated = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
            if repeated:
                raise DuplicateIdError(f"ids repeat within the call: {repeated[:10]}")
            existing = [i for i in ids if i in self._row_of]
            if existing:
                raise DuplicateIdError(f"ids already in the index: {existing[:10]} (pass upsert=True to replace them)")
        if not texts:
            return []
        out = self.encoder.encode_corpus(
            texts, max_length=self.max_length, return_dense=True, return_sparse=True, return_colbert_vecs=self.store_colbert
        )
        with self._lock:
            replaced = [self._row_of[i] for i in ids if i in self._row_of]
            if not upsert and replaced:  # another thread added them meanwhile
                raise DuplicateIdError(f"ids already in the index: {[self._ids[r] for r in replaced][:10]}")
            self._mark_deleted(replaced)
            self._append(out, texts, ids, metas)
        return list(ids)

    def _append(self, out: M3Output, texts: list[str], ids: list[str], metas: list[dict[str, Any]]) -> None:
        assert out.dense is not None and out.sparse is not None
        start = len(self._ids)
        self._dense.add(out.dense)
        self._sparse.add(out.sparse)
        if self._colbert is not None:
            assert out.colbert is not None and out.colbert_offsets is not None
            self._colbert.add(out.colbert, out.colbert_offsets)
        self._ids.extend(ids)
        self._texts.extend(texts)
        self._metadatas.extend(metas)
        self._alive = np.concatenate([self._alive, np.ones(len(ids), dtype=bool)])
        self._row_of.update((doc_id, start + i) for i, doc_id in enumerate(ids))

    @staticmethod
    def _check_ids(ids: Sequence[str] | None, n: int) -> list[str]:
        if ids is None:
            return [uuid.uuid4().hex for _ in range(n)]
        items, single = check_texts(ids, "ids")
        if single:
            raise InputTypeError("ids must be a sequence of str, not one str")
        if len(items) != n:
            raise InputValueError(f"{len(items)} ids for {n} texts")
        return items

    @staticmethod
    def _check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int, ids: list[str]) -> list[dict[str, Any]]:
        if metadatas is None:
            return [{} for _ in range(n)]
        if isinstance(metadatas, Mapping | str) or not isinstance(metadatas, Sequence):
            raise InputTypeError(f"metadatas must be a sequence of dicts, got {type(metadatas).__name__}")
        if len(metadatas) != n:
            raise InputValueError(f"{len(metadatas)} metadatas for {n} texts")
        checked = []
        for i, meta in enumerate(metadatas):
            if meta is None:
                meta = {}
            if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
                raise InputTypeError(f"metadatas[{i}] (id {ids[i]!r}) must be a dict with str keys")
            try:
                checked.append(json.loads(json.dumps(dict(meta), allow_nan=False)))
            except (TypeError, ValueError) as exc:
                raise InputTypeError(f"metadatas[{i}] (id {ids[i]!r}) is not JSON-serialisable: {exc}") from None
        return checked

    def _rows(self, ids: Sequence[str]) -> list[int]:
        ids, single = check_texts(ids, "ids")
        if single:
            raise InputTypeError("ids must be a sequence of str, not one str")
        unknown = [i for i in ids if i not in self._row_of]
        if unknown:
            raise UnknownIdError(f"ids not in the index: {unknown[:10]}")
        return [self._row_of[i] for i in ids]

    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        """The stored documents of ``ids``, in that order; unknown ids raise :class:`UnknownIdError`."""
        with self._lock:
            return [IndexedDocument(self._ids[r], self._texts[r], dict(self._metadatas[r])) for r in self._rows(ids)]  # type: ignore[arg-type]

    def delete(self, ids: Sequence[str]) -> None:
        """Remove ``ids``; if any is unknown, nothing is removed (:class:`UnknownIdError`)."""
        with self._lock:
            self._mark_deleted(self._rows(ids))
            if (~self._alive).sum() > max(1024, int(self._alive.sum())):
                self._compact()

    def _mark_deleted(self, rows: list[int]) -> None:
        for row in rows:
            doc_id = self._ids[row]
            if doc_id is not None:
                del self._row_of[doc_id]
                self._ids[row] = None
                self._alive[row] = False

    def _compact(self) -> None:
        """Drop deleted rows from every store (rebuilds the faiss index)."""
        keep = np.flatnonzero(self._alive)
        if len(keep) == len(self._alive):
            return
        self._dense = self._dense.keep(keep)
        self._sparse = self._sparse.keep(keep)
        if self._colbert is not None:
            self._colbert = self._colbert.keep(keep)
        self._ids = [self._ids[r] for r in keep]
        self._texts = [self._texts[r] for r in keep]
        self._metadatas = [self._metadatas[r] for r in keep]
        self._alive = np.ones(len(keep), dtype=bool)
        self._row_of = {doc_id: r for r, doc_id in enumerate(self._ids)}  # type: ignore[misc]

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: SearchMode = "hybrid",
        weights: Sequence[float] | dict[str, float] | None = None,
        fusion: Fusion = "weighted",
        rerank: RerankMode | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best documents for ``query``, best first.

        - ``mode``: ``"dense"`` (faiss), ``"sparse"`` (lexical; only documents sharing a token
          with the query) or ``"hybrid"``: the union of each mode's top ``candidates``, every
          candidate scored in both modes and fused.
        - ``fusion="weighted"``: ``(w_d*dense + w_s*sparse) / (w_d + w_s)`` on the raw scores
          (M3's own ensemble; defaults ``w_d=1, w_s=0.3``); ``"rrf"``: ``sum_m w_m / (60 + rank_m)``.
        - ``rerank="colbert"``: the first stage's top ``candidates`` re-scored by ColBERT;
          ``"hybrid"``: by ``(w_d*dense + w_s*sparse + w_c*colbert) / (w_d + w_s + w_c)``.
        - ``weights``: ``[w_dense, w_sparse, w_colbert]`` or a dict (default ``1, 0.3, 1``).
        - ``candidates``: first-stage depth per mode, default ``max(k, 100)``.
        - ``filter``: ``{field: value}``; only documents whose metadata equals every pair, applied
          before the top-k.
        """
        return self.search_batch([query], k, mode=mode, weights=weights, fusion=fusion, rerank=rerank, candidates=candidates, filter=filter)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: SearchMode = "hybrid",
        weights: Sequence[float] | dict[str, float] | None = None,
        fusion: Fusion = "weighted",
        rerank: RerankMode | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for many queries: one encoder call, one faiss call, one sparse product."""
        queries, args, heads = self._check_search(queries, k, mode, weights, fusion, rerank, candidates, filter)
        if not queries or len(self) == 0:
            return [[] for _ in queries]
        q = self.encoder.encode_queries(queries, **heads)
        with self._lock:
            return self._search_encoded(q, **args)

    async def asearch(self, query: str, k: int = 10, **kwargs: Any) -> list[SearchHit]:
        """:meth:`search` for asyncio (the encoder's :meth:`~M3Encoder.aencode`; retrieval in a thread)."""
        return (await self.asearch_batch([query], k, **kwargs))[0]

    async def asearch_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: SearchMode = "hybrid",
        weights: Sequence[float] | dict[str, float] | None = None,
        fusion: Fusion = "weighted",
        rerank: RerankMode | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search_batch` for asyncio."""
        queries, args, heads = self._check_search(queries, k, mode, weights, fusion, rerank, candidates, filter)
        if not queries or len(self) == 0:
            return [[] for _ in queries]
        q = await self.encoder.aencode_queries(queries, **heads)

        def search() -> list[list[SearchHit]]:
            with self._lock:
                return self._search_encoded(q, **args)

        return await asyncio.to_thread(search)

    def _check_search(
        self,
        queries: Sequence[str],
        k: int,
        mode: str,
        weights: Sequence[float] | dict[str, float] | None,
        fusion: str,
        rerank: str | None,
        candidates: int | None,
        filter: Mapping[str, Any] | None,
    ) -> tuple[list[str], dict[str, Any], dict[str, bool]]:
        """Validate a search: ``(queries, arguments of _search_encoded, heads to encode)``."""
        queries, single = check_texts(queries, "queries")
        if single:
            raise InputTypeError("search_batch takes a sequence of queries; use search() for one")
        check_positive_int(k, "k")
        check_positive_int(candidates, "candidates", optional=True)
        _check_choice(mode, "mode", ("dense", "sparse", "hybrid"))
        _check_choice(fusion, "fusion", ("weighted", "rrf"))
        _check_choice(rerank, "rerank", (None, "colbert", "hybrid"))
        if filter is not None and not isinstance(filter, Mapping):
            raise InputTypeError(f"filter must be a dict of metadata field -> value, got {type(filter).__name__}")
        args = dict(k=k, mode=mode, w=resolve_weights(weights), fusion=fusion, rerank=rerank, depth=candidates or max(k, 100), filter=filter)
        heads = dict(
            return_dense=mode in ("dense", "hybrid") or rerank == "hybrid",
            return_sparse=mode in ("sparse", "hybrid") or rerank == "hybrid",
            return_colbert_vecs=rerank is not None,
        )
        return queries, args, heads

    def _allowed(self, filter: Mapping[str, Any] | None) -> np.ndarray:
        if not filter:
            return self._alive
        allowed = self._alive.copy()
        items = list(filter.items())
        for row in np.flatnonzero(allowed).tolist():
            meta = self._metadatas[row]
            allowed[row] = all(key in meta and meta[key] == value for key, value in items)
        return allowed

    def _search_encoded(
        self,
        q: M3Output,
        k: int,
        mode: str,
        w: dict[str, float],
        fusion: str,
        rerank: str | None,
        depth: int,
        filter: Mapping[str, Any] | None,
    ) -> list[list[SearchHit]]:
        allowed = self._allowed(filter)
        n_allowed = int(allowed.sum())
        if n_allowed == 0:
            return [[] for _ in range(len(q))]
        depth = min(depth if (mode == "hybrid" or rerank) else k, n_allowed)
        selector = None if n_allowed == len(allowed) else allowed
        dense_top = self._dense.search(q.dense, depth, selector) if mode in ("dense", "hybrid") else None
        sparse_all = self._sparse.scores(q.sparse) if q.sparse is not None else None  # [m, N]
        results = []
        for i in range(len(q)):
            per_mode: dict[str, np.ndarray] = {}
            lists: dict[str, np.ndarray] = {}
            if dense_top is not None:
                rows = dense_top[1][i]
                lists["dense"] = rows[rows >= 0]
            if mode in ("sparse", "hybrid"):
                assert sparse_all is not None
                s = np.where(allowed, sparse_all[i], -np.inf)
                top = scoring.top_k(s, depth)
                lists["sparse"] = top[s[top] > 0]
            rows = lists[mode] if mode != "hybrid" else np.unique(np.concatenate(list(lists.values())))
            if q.dense is not None:
                per_mode["dense"] = self._dense.vectors(rows).astype(np.float64) @ q.dense[i].astype(np.float64)
            if sparse_all is not None:
                per_mode["sparse"] = sparse_all[i, rows]
            if mode != "hybrid":
                fused = per_mode[mode]
            elif fusion == "weighted":
                fused = scoring.weighted_fusion({m: per_mode[m] for m in ("dense", "sparse")}, w)
            else:
                ranks = {m: self._ranks(rows, listed) for m, listed in lists.items()}
                fused = scoring.rrf_fusion(ranks, w, _RRF_K)
            first = scoring.top_k(fused, k if rerank is None else depth)
            rows, fused = rows[first], fused[first]
            per_mode = {m: s[first] for m, s in per_mode.items()}
            if rerank is not None:
                per_mode["colbert"] = self._colbert_scores(q.colbert_vecs[i], rows)  # type: ignore[index]
                fused = per_mode["colbert"] if rerank == "colbert" else scoring.weighted_fusion(per_mode, w)
                best = scoring.top_k(fused, k)
                rows, fused = rows[best], fused[best]
                per_mode = {m: s[best] for m, s in per_mode.items()}
            results.append(self._hits(rows, fused, per_mode))
        return results

    @staticmethod
    def _ranks(rows: np.ndarray, listed: np.ndarray) -> np.ndarray:
        """1-based rank of each of ``rows`` in ``listed`` (0 = absent)."""
        rank_of = {int(r): i + 1 for i, r in enumerate(listed.tolist())}
        return np.array([rank_of.get(int(r), 0) for r in rows.tolist()], dtype=np.int64)

    def _colbert_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if self._colbert is not None:
            vectors, offsets = self._colbert.gather(rows)
        else:
            out = self.encoder.encode_corpus([self._texts[r] for r in rows.tolist()], max_length=self.max_length, return_dense=False, return_colbert_vecs=True)
            vectors, offsets = out.colbert, out.colbert_offsets  # type: ignore[assignment]
        return scoring.colbert_scores_flat(query, vectors, offsets)

    def _hits(self, rows: np.ndarray, final: np.ndarray, per_mode: dict[str, np.ndarray]) -> list[SearchHit]:
        return [
            SearchHit(
                id=self._ids[r],  # type: ignore[arg-type]
                text=self._texts[r],
                metadata=dict(self._metadatas[r]),
                score=float(final[j]),
                scores={m: float(s[j]) for m, s in per_mode.items()},
            )
            for j, r in enumerate(rows.tolist())
        ]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save atomically to directory ``path`` (see :mod:`m3rag.index.persistence`); a failure
        at any point leaves the previously saved index intact and loadable."""
        with self._lock:
            self._compact()
            sparse = self._sparse.matrix
            writers = {
                "dense.faiss": self._dense.write,
                "sparse.indptr.npy": persistence.save_array(sparse.indptr.astype(np.int64)),
                "sparse.indices.npy": persistence.save_array(sparse.indices.astype(np.int32)),
                "sparse.data.npy": persistence.save_array(sparse.data),
                "docs.json": persistence.save_json({"ids": self._ids, "texts": self._texts, "metadatas": self._metadatas}),
            }
            if self._colbert is not None:
                vectors, offsets = self._colbert.arrays
                writers["colbert.vectors.npy"] = persistence.save_array(vectors)
                writers["colbert.offsets.npy"] = persistence.save_array(offsets)
            manifest = {
                "model": self.encoder.identity,
                "count": len(self._ids),
                "settings": {
                    "store_colbert": self.store_colbert,
                    "colbert_dtype": None if self._colbert is None else self._colbert.dtype.name,
                    "dense_index": self._dense.kind,
                    "ef_search": self._dense.ef_search,
                    "max_length": self.max_length,
                },
            }
            persistence.write_snapshot(path, writers, manifest)

    @classmethod
    def load(cls, path: str | os.PathLike[str], encoder: M3Encoder | str | os.PathLike[str] | None = None, *, mmap: bool = True) -> M3Index:
        """Load an index saved by :meth:`save`; ``encoder`` must be the model it was built with
        (:class:`ModelMismatchError` otherwise). Every file is checksummed before it is read;
        ColBERT vectors are memory-mapped when ``mmap``."""
        enc = encoder if isinstance(encoder, M3Encoder) else M3Encoder.shared(encoder)
        snap = persistence.read_snapshot(path, enc.identity)
        manifest, settings = snap["manifest"], snap["manifest"].get("settings", {})
        try:
            index = cls(
                enc,
                store_colbert=bool(settings["store_colbert"]),
                colbert_dtype=settings["colbert_dtype"] or "float16",
                dense_index=settings["dense_index"],
                ef_search=int(settings["ef_search"]),
                max_length=settings["max_length"],
            )
        except (KeyError, TypeError, InputValueError) as exc:
            raise IndexFormatError(f"{snap['dir'] / 'manifest.json'} has invalid settings: {exc}", snap["dir"] / "manifest.json") from exc
        n = manifest.get("count")
        docs = persistence.load_json(snap, "docs.json")
        try:
            ids, texts, metas = docs["ids"], docs["texts"], docs["metadatas"]
            assert len(ids) == len(texts) == len(metas) == n and len(set(ids)) == n
            assert all(isinstance(i, str) for i in ids) and all(isinstance(t, str) for t in texts) and all(isinstance(m, dict) for m in metas)
        except (KeyError, TypeError, AssertionError):
            raise IndexFormatError(f"{snap['dir'] / 'docs.json'} does not hold {n} documents", snap["dir"] / "docs.json") from None
        try:
            dense = DenseStore.read(snap["dir"] / "dense.faiss", index._dense.kind, enc.dim, index._dense.ef_search)
        except Exception as exc:
            raise IndexFormatError(f"{snap['dir'] / 'dense.faiss'} is unreadable: {exc}", snap["dir"] / "dense.faiss") from exc
        indptr = persistence.load_array(snap, "sparse.indptr.npy")
        indices = persistence.load_array(snap, "sparse.indices.npy")
        data = persistence.load_array(snap, "sparse.data.npy")
        try:
            sparse = sp.csr_array((data, indices, indptr), shape=(n, enc.vocab_size))
            sparse.check_format(full_check=True)
        except (ValueError, TypeError) as exc:
            raise IndexFormatError(f"sparse arrays in {snap['dir']} are inconsistent: {exc}", snap["dir"] / "sparse.indptr.npy") from exc
        if len(dense) != n:
            raise IndexFormatError(f"{snap['dir'] / 'dense.faiss'} holds {len(dense)} vectors, expected {n}", snap["dir"] / "dense.faiss")
        index._dense, index._sparse = dense, SparseStore(enc.vocab_size, sparse)
        if index._colbert is not None:
            vectors = persistence.load_array(snap, "colbert.vectors.npy", mmap=mmap)
            offsets = persistence.load_array(snap, "colbert.offsets.npy")
            if (
                offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0)
                or vectors.ndim != 2 or vectors.shape != (int(offsets[-1]), enc.colbert_dim) or vectors.dtype != index._colbert.dtype
            ):
                raise IndexFormatError(f"ColBERT arrays in {snap['dir']} are inconsistent", snap["dir"] / "colbert.offsets.npy")
            index._colbert = ColbertStore(index._colbert.dim, index._colbert.dtype, vectors, offsets.astype(np.int64))
        index._ids, index._texts, index._metadatas = list(ids), list(texts), list(metas)
        index._alive = np.ones(n, dtype=bool)
        index._row_of = {doc_id: r for r, doc_id in enumerate(ids)}
        return index
