"""M3Index: dense, sparse and hybrid retrieval with ColBERT reranking, on any store."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from m3rag.encoder.output import M3Output
from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
from m3rag.encoder.resolve import resolve_encoder
from m3rag.errors import DuplicateIdError, InputTypeError, InputValueError, UnknownIdError
from m3rag.index.cross_encoder import acrossencoder_rerank, check_reranker, crossencoder_rerank, first_stage
from m3rag.index.filters import check_metadata
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.plan import SearchPlan
from m3rag.scoring import Weights
from m3rag.validation import check_positive_int, check_texts

if TYPE_CHECKING:
    from m3rag.stores.base import Store

__all__ = ["MAX_ID_LENGTH", "M3Index"]

MAX_ID_LENGTH = 512
"""Longest document id, in characters (every store must be able to key by it)."""


def _check_ids(ids: Sequence[str] | None, n: int) -> list[str]:
    if ids is None:
        return [uuid.uuid4().hex for _ in range(n)]
    items, single = check_texts(ids, "ids")
    if single:
        raise InputTypeError("ids must be a sequence of str, not one str")
    if len(items) != n:
        raise InputValueError(f"{len(items)} ids for {n} texts")
    for i, doc_id in enumerate(items):
        if not doc_id or len(doc_id) > MAX_ID_LENGTH:
            raise InputValueError(f"ids[{i}] must have 1 to {MAX_ID_LENGTH} characters, got {len(doc_id)}")
        try:
            doc_id.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputValueError(f"ids[{i}] is not valid Unicode ({exc.reason} at position {exc.start}): {doc_id!r}") from None
    return items


def _check_texts_unicode(texts: list[str]) -> None:
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputValueError(f"texts[{i}] is not valid Unicode ({exc.reason} at position {exc.start})") from None


class M3Index:
    """Documents searchable by dense, sparse or hybrid retrieval, with optional ColBERT reranking.

    ``M3Index(encoder=None, *, store=None, max_length=None)``. ``encoder`` is an
    :class:`~m3rag.M3Encoder` (or a remote one) or a model name (the shared encoder; default
    ``$M3RAG_MODEL`` or ``BAAI/bge-m3``). ``store`` is where documents live: by default a
    :class:`~m3rag.stores.LocalStore` in this process, configured by ``store_colbert``,
    ``colbert_dtype``, ``dense_index``, ``hnsw_m``, ``ef_construction`` and ``ef_search``;
    or a :class:`~m3rag.stores.QdrantStore` / :class:`~m3rag.stores.MilvusStore`. Searches mean
    the same on every store. ``max_length`` caps passages' tokens when they are encoded.

    Ids are strings. Adding an existing id is a :class:`DuplicateIdError` unless ``upsert=True``,
    which replaces the document (text, metadata and vectors). Reads and writes from several threads
    are serialised by one lock; encoding runs outside it.
    """

    def __init__(
        self,
        encoder: M3EncoderLike | str | os.PathLike[str] | None = None,
        *,
        store: Store | None = None,
        max_length: int | None = None,
        store_colbert: bool | None = None,
        colbert_dtype: Literal["float16", "float32", "bfloat16", "int8"] | None = None,
        dense_index: Literal["flat", "hnsw"] | None = None,
        hnsw_m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
    ) -> None:
        from m3rag.stores.base import Store
        from m3rag.stores.local.store import LocalStore

        local: dict[str, Any] = dict(
            store_colbert=store_colbert,
            colbert_dtype=colbert_dtype,
            dense_index=dense_index,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
        )
        given = {k: v for k, v in local.items() if v is not None}
        if store is None:
            store = LocalStore(**given)
        elif given:
            raise InputValueError(f"{', '.join(sorted(given))} configure the default local store; with store=, set them on the store")
        elif not isinstance(store, Store):
            raise InputTypeError(f"store must be an m3rag store (LocalStore, QdrantStore, MilvusStore), got {type(store).__name__}")
        self.encoder: M3EncoderLike = resolve_encoder(encoder)
        if self.encoder.dense_only:
            raise InputValueError("M3Index needs the sparse and ColBERT heads; the encoder was loaded dense_only")
        self.store: Store = store
        explicit = check_positive_int(max_length, "max_length", minimum=2, optional=True)
        self.max_length: int | None = explicit if explicit is not None else store.settings.get("max_length")
        store.bind(self.encoder.identity, encode_dense=self._encode_dense)  # may read the store's settings
        if explicit is None:
            self.max_length = store.settings.get("max_length")
        store.settings["max_length"] = self.max_length
        self._lock = threading.RLock()

    def _encode_dense(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode_corpus(texts, max_length=self.max_length).dense  # type: ignore[no-any-return]

    def _encode_colbert(self, texts: list[str]) -> M3Output:
        return self.encoder.encode_corpus(texts, max_length=self.max_length, return_dense=False, return_colbert_vecs=True)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return len(self.store)

    def __repr__(self) -> str:
        return f"M3Index({len(self)} documents, store={self.store.describe()}, model={self.encoder.name!r})"

    @property
    def ids(self) -> list[str]:
        """Ids of the stored documents (the local store: in insertion order)."""
        with self._lock:
            return self.store.ids()

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and bool(self.store.existing([doc_id]))

    @property
    def store_colbert(self) -> bool:
        return self.store.keeps_colbert

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
    ) -> list[str]:
        """Encode and store ``texts``; returns their ids (new uuid4 hex strings when ``ids`` is None).

        Metadata must be JSON-serialisable (str keys, finite numbers, valid Unicode, at most 32
        levels deep). Repeated ids (in the call or against the index) raise
        :class:`DuplicateIdError` unless ``upsert``: then the last occurrence wins and replaces the
        stored document. On the local store nothing is stored if anything fails.
        """
        texts, ids, metas = self._check_documents(texts, ids, metadatas, upsert)
        if not texts:
            return []
        out = self.encoder.encode_corpus(
            texts, max_length=self.max_length, return_dense=True, return_sparse=True, return_colbert_vecs=self.store.keeps_colbert
        )
        return self._write(texts, ids, metas, out, upsert)

    def add_encoded(
        self,
        vectors: M3Output,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        upsert: bool = False,
    ) -> list[str]:
        """Store documents whose vectors were computed elsewhere (another machine, Ray, a remote
        encoder): ``vectors`` holds dense and sparse outputs of ``texts``, in order, and ColBERT
        ones if the store keeps them; they must come from this index's model."""
        if not isinstance(vectors, M3Output):
            raise InputTypeError(f"vectors must be an M3Output, got {type(vectors).__name__}")
        texts, ids, metas = self._check_documents(texts, ids, metadatas, upsert, vectors=vectors)
        return self._write(texts, ids, metas, vectors, upsert) if texts else []

    def _check_documents(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None,
        metadatas: Sequence[Mapping[str, Any] | None] | None,
        upsert: bool,
        vectors: M3Output | None = None,
    ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        texts, single = check_texts(texts)
        if single:
            raise InputTypeError("texts must be a sequence of str, not one str")
        _check_texts_unicode(texts)
        ids = _check_ids(ids, len(texts))
        metas = self._check_metadatas(metadatas, len(texts), ids)
        if vectors is not None:
            self._check_vectors(vectors, len(texts))
        if upsert:  # the last occurrence of an id within the call wins
            last = {doc_id: i for i, doc_id in enumerate(ids)}
            if len(last) < len(ids):
                keep = sorted(last.values())
                texts, ids, metas = [texts[i] for i in keep], [ids[i] for i in keep], [metas[i] for i in keep]
                if vectors is not None:
                    raise InputValueError("add_encoded with repeated ids: pass each document once")
        else:
            seen: set[str] = set()
            repeated = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
            if repeated:
                raise DuplicateIdError(f"ids repeat within the call: {repeated[:10]}")
            existing = self.store.existing(ids)
            if existing:
                raise DuplicateIdError(f"ids already in the index: {sorted(existing)[:10]} (pass upsert=True to replace them)")
        return texts, ids, metas

    def _check_vectors(self, out: M3Output, n: int) -> None:
        enc = self.encoder
        if len(out) != n:
            raise InputValueError(f"vectors hold {len(out)} documents for {n} texts")
        if out.dense is None or out.dense.shape != (n, enc.dim) or not np.isfinite(out.dense).all():
            raise InputValueError(f"vectors.dense must be finite float [{n}, {enc.dim}] (this index's model)")
        sparse = out.sparse
        if sparse is None or sparse.shape != (n, enc.vocab_size) or not np.isfinite(sparse.data).all() or (sparse.data < 0).any():
            raise InputValueError(f"vectors.sparse must be non-negative lexical weights [{n}, {enc.vocab_size}]")
        if self.store.keeps_colbert:
            if out.colbert is None or out.colbert_offsets is None:
                raise InputValueError("this store keeps ColBERT vectors: vectors.colbert is required")
            offsets = np.asarray(out.colbert_offsets)
            bad_offsets = offsets.shape != (n + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0)
            if bad_offsets or out.colbert.shape != (int(offsets[-1]), enc.colbert_dim):
                raise InputValueError(f"vectors.colbert must be [rows, {enc.colbert_dim}] with offsets [{n + 1}] from 0")
            if not np.isfinite(out.colbert).all():
                raise InputValueError("vectors.colbert holds NaN or infinite values")

    @staticmethod
    def _check_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, n: int, ids: list[str]) -> list[dict[str, Any]]:
        if metadatas is None:
            return [{} for _ in range(n)]
        if isinstance(metadatas, Mapping | str) or not isinstance(metadatas, Sequence):
            raise InputTypeError(f"metadatas must be a sequence of dicts, got {type(metadatas).__name__}")
        if len(metadatas) != n:
            raise InputValueError(f"{len(metadatas)} metadatas for {n} texts")
        return [check_metadata(meta, f"metadatas[{i}] (id {ids[i]!r})") for i, meta in enumerate(metadatas)]

    def _write(self, texts: list[str], ids: list[str], metas: list[dict[str, Any]], out: M3Output, upsert: bool) -> list[str]:
        with self._lock:
            if not upsert:
                existing = self.store.existing(ids)
                if existing:  # another thread added them meanwhile
                    raise DuplicateIdError(f"ids already in the index: {sorted(existing)[:10]}")
            self.store.write(ids, texts, metas, out)
        return list(ids)

    def _known(self, ids: Sequence[str]) -> list[str]:
        items, single = check_texts(ids, "ids")
        if single:
            raise InputTypeError("ids must be a sequence of str, not one str")
        existing = self.store.existing(items) if items else set()  # one store call, not one per id
        unknown = [i for i in items if i not in existing]
        if unknown:
            raise UnknownIdError(f"ids not in the index: {unknown[:10]}")
        return items

    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        """The stored documents of ``ids``, in that order; unknown ids raise :class:`UnknownIdError`."""
        with self._lock:
            return self.store.get(self._known(ids))

    def delete(self, ids: Sequence[str]) -> None:
        """Remove ``ids``; if any is unknown, nothing is removed (:class:`UnknownIdError`)."""
        with self._lock:
            self.store.delete(list(dict.fromkeys(self._known(ids))))

    # ------------------------------------------------------------------ search
    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: Literal["dense", "sparse", "hybrid"] = "hybrid",
        weights: Weights = None,
        fusion: Literal["weighted", "rrf"] = "weighted",
        rerank: Literal["colbert", "hybrid"] | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
        reranker: RerankerLike | None = None,
    ) -> list[SearchHit]:
        """The ``k`` best documents for ``query``, best first; an empty or blank query finds nothing.

        - ``mode``: ``"dense"`` (faiss), ``"sparse"`` (lexical; only documents sharing a token
          with the query) or ``"hybrid"``: the union of each mode's top ``candidates``, every
          candidate scored in both modes and fused.
        - ``fusion="weighted"``: ``(w_d*dense + w_s*sparse) / (w_d + w_s)`` on the raw scores
          (M3's own ensemble; defaults ``w_d=1, w_s=0.3``); ``"rrf"``: ``sum_m w_m / (60 + rank_m)``.
        - ``rerank="colbert"``: the first stage's top ``candidates`` re-scored by ColBERT;
          ``"hybrid"``: by ``(w_d*dense + w_s*sparse + w_c*colbert) / (w_d + w_s + w_c)``.
        - ``weights``: ``[w_dense, w_sparse, w_colbert]`` or a dict (default ``1, 0.3, 1``).
        - ``candidates``: first-stage depth per mode, and how many hits a ``rerank`` or ``reranker``
          stage rescores; default ``max(k, 100)``.
        - ``filter``: ``{field: value}`` (str, int, float or bool; ``True`` does not match ``1``),
          only documents whose metadata equals every pair, applied before the top-k.
        - ``reranker``: a cross-encoder (:class:`~m3rag.BGEReranker`) as a last stage: the top
          ``candidates`` hits of the stages above are rescored by it and the top ``k`` returned,
          its score as ``score`` and in ``scores["reranker"]`` (the model card's pipeline).
        """
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a str, got {type(query).__name__}")
        return self.search_batch(
            [query], k, mode=mode, weights=weights, fusion=fusion, rerank=rerank, candidates=candidates, filter=filter, reranker=reranker
        )[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: Literal["dense", "sparse", "hybrid"] = "hybrid",
        weights: Weights = None,
        fusion: Literal["weighted", "rrf"] = "weighted",
        rerank: Literal["colbert", "hybrid"] | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
        reranker: RerankerLike | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for many queries: one encoder call, one store call and one cross-encoder
        call for all of them."""
        queries, plan, asked = self._plan(queries, k, mode, weights, fusion, rerank, candidates, filter)
        reranker = check_reranker(reranker)
        if not asked:  # an empty store answers [] itself: asking its size first would cost a remote store a request
            return [[] for _ in queries]
        q = self.encoder.encode_queries([queries[i] for i in asked], **plan.heads)
        with self._lock:
            found = self.store.search(first_stage(plan, reranker), q, self._encode_colbert)
        if reranker is not None:
            found = crossencoder_rerank(reranker, [queries[i] for i in asked], found, plan.k)
        return self._place(len(queries), asked, found)

    async def asearch(self, query: str, k: int = 10, **kwargs: Any) -> list[SearchHit]:
        """:meth:`search` for asyncio (the encoder's ``aencode``; the store in a worker thread)."""
        if not isinstance(query, str):
            raise InputTypeError(f"query must be a str, got {type(query).__name__}")
        return (await self.asearch_batch([query], k, **kwargs))[0]

    async def asearch_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        mode: Literal["dense", "sparse", "hybrid"] = "hybrid",
        weights: Weights = None,
        fusion: Literal["weighted", "rrf"] = "weighted",
        rerank: Literal["colbert", "hybrid"] | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
        reranker: RerankerLike | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search_batch` for asyncio."""
        queries, plan, asked = self._plan(queries, k, mode, weights, fusion, rerank, candidates, filter)
        reranker = check_reranker(reranker)
        if not asked:
            return [[] for _ in queries]
        q = await self.encoder.aencode_queries([queries[i] for i in asked], **plan.heads)

        def search() -> list[list[SearchHit]]:
            with self._lock:
                return self.store.search(first_stage(plan, reranker), q, self._encode_colbert)

        found = await asyncio.to_thread(search)
        if reranker is not None:
            found = await acrossencoder_rerank(reranker, [queries[i] for i in asked], found, plan.k)
        return self._place(len(queries), asked, found)

    @staticmethod
    def _plan(
        queries: Sequence[str],
        k: int,
        mode: str,
        weights: Weights,
        fusion: str,
        rerank: str | None,
        candidates: int | None,
        filter: Mapping[str, Any] | None,
    ) -> tuple[list[str], SearchPlan, list[int]]:
        """``(queries, plan, positions of the queries that are not blank)``."""
        items, single = check_texts(queries, "queries")
        if single:
            raise InputTypeError("search_batch takes a sequence of queries; use search() for one")
        plan = SearchPlan.build(k, mode=mode, weights=weights, fusion=fusion, rerank=rerank, candidates=candidates, filter=filter)
        return items, plan, [i for i, q in enumerate(items) if q.strip()]

    @staticmethod
    def _place(n: int, asked: list[int], found: list[list[SearchHit]]) -> list[list[SearchHit]]:
        results: list[list[SearchHit]] = [[] for _ in range(n)]
        for i, hits in zip(asked, found):
            results[i] = hits
        return results

    # ------------------------------------------------------------------ building, moving, saving
    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        encoder: M3EncoderLike | str | os.PathLike[str] | None = None,
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        **kwargs: Any,
    ) -> M3Index:
        """A new index (``kwargs`` go to :class:`M3Index`) holding ``texts``."""
        index = cls(encoder, **kwargs)
        index.add(list(texts), ids=ids, metadatas=metadatas)
        return index

    def copy_to(self, store: Store, *, batch_size: int = 256, upsert: bool = False) -> M3Index:
        """Copy every document with its stored vectors (not re-encoded) into ``store``; returns
        an index over it. ColBERT vectors the source does not keep are computed for a target that
        keeps them."""
        target = M3Index(self.encoder, store=store, max_length=self.max_length)
        with self._lock:
            for ids, texts, metas, out in self.store.export(batch_size):
                if store.keeps_colbert and out.colbert is None:
                    colbert = self._encode_colbert(texts)
                    out = M3Output(out.dense, out.sparse, colbert.colbert, colbert.colbert_offsets, colbert.num_tokens, out.truncated)
                target.add_encoded(out, texts, ids, metas, upsert=upsert)
        return target

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the local store atomically to directory ``path``: a failure at any point leaves the
        previously saved index intact; another process saving to the same directory waits for
        the lock (:class:`~m3rag.IndexLockedError` after 60 s)."""
        from m3rag.stores.local.store import LocalStore

        if not isinstance(self.store, LocalStore):
            raise InputValueError(
                f"save() writes a local index; a {self.store.kind} store persists on its own "
                "(copy it to a local one with index.copy_to(LocalStore()) first)"
            )
        with self._lock:
            self.store.save(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], encoder: M3EncoderLike | str | os.PathLike[str] | None = None, *, mmap: bool = True
    ) -> M3Index:
        """Load an index saved by :meth:`save`. Without ``encoder``, the model named in its
        manifest is loaded (an index directory is trusted input for that choice). The encoder must
        be the model it was built with (:class:`~m3rag.ModelMismatchError`); a moved model
        directory or a newer transformers are the same model. Every file is checked before it is
        used; ColBERT vectors are memory-mapped when ``mmap``."""
        from m3rag.stores.local.snapshot import read_manifest
        from m3rag.stores.local.store import LocalStore

        if encoder is None:
            encoder = read_manifest(path)["model"]["name"]
        store = LocalStore.load(path, mmap=mmap)
        return cls(encoder, store=store)

    def close(self) -> None:
        """Close the store's connections (remote stores); the index is unusable afterwards."""
        self.store.close()
