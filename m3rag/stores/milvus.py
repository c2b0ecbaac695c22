"""MilvusStore: an M3 index in one Milvus collection (a Milvus server, or a milvus-lite file).

The collection's fields: ``pk`` (the uuid5 of the user's id, primary key), ``id``, ``seq``
(insertion order, for ties), ``dense`` (FLOAT_VECTOR, inner product), ``sparse``
(SPARSE_FLOAT_VECTOR, inner product), ``text``, ``meta`` (JSON) and ``terms`` (JSON list of the
type-exact filter terms of :mod:`m3rag.stores.remote`); the collection property ``m3rag`` holds
the model identity, the index settings and this layout (another model is refused:
:class:`~m3rag.ModelMismatchError`). Reads are strongly consistent (a search sees every write).

Search: Milvus's own fusion is not M3's (``WeightedRanker`` squashes scores by arctan or counts a
missing list as 0; ``RRFRanker`` has no weights), so Milvus only gathers candidates. One request
for all queries of a search (``search``, or ``hybrid_search`` returning the whole union of both
top-``candidates`` lists) brings each candidate's dense and sparse vectors, and
:func:`m3rag.index.plan.execute` scores, fuses and reranks them exactly, as the local store does
(ties in insertion order). The cost is the transfer: ``2 * candidates`` dense vectors per query.

ColBERT: no ColBERT vectors are stored (``keeps_colbert = False``). Milvus holds a document's
ColBERT rows only in a struct-array multivector field (Milvus >= 2.6 servers), which milvus-lite
refuses; a per-document blob outgrows a VARCHAR (64 KiB: about 24 tokens at BGE-M3's 1024
dimensions) and one row per token costs a second request moving ``candidates x tokens x 1024``
floats. So ``rerank="colbert"`` / ``"hybrid"`` re-encodes the ``candidates`` texts with the
index's encoder (ColBERT head): exact, nothing stored (BGE-M3's ColBERT vectors would take
~512 KiB per 256-token document), one encoder pass over ``candidates`` passages per query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from m3rag.encoder.output import M3Output
from m3rag.errors import InputValueError, M3RagError, ModelMismatchError, ServiceUnavailableError, StoreError
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.index import MAX_ID_LENGTH
from m3rag.index.plan import EncodeColbert, SearchPlan, execute
from m3rag.stores.base import EncodeDense, Store
from m3rag.stores.remote import (
    RECORD_FORMAT,
    InsertionClock,
    assemble_output,
    check_record,
    dense_scores,
    document_key,
    filter_terms,
    import_extra,
    query_terms,
    sparse_matrix,
    sparse_rows,
    sparse_scores,
    write_batches,
)
from m3rag.validation import check_positive_int

__all__ = ["MAX_TEXT_BYTES", "MilvusStore"]

pymilvus = import_extra("pymilvus", "milvus")

T = TypeVar("T")
MAX_TEXT_BYTES = 65_535
"""Longest text a Milvus VARCHAR holds, in UTF-8 bytes (a longer one is refused before writing)."""
MAX_TOP_K = 16_384
"""Milvus's largest ``limit`` per search."""
_CHUNK = 1024
"""Ids per get / delete request."""
_UNREACHABLE = ("Fail connecting", "DEADLINE_EXCEEDED")
"""What pymilvus says when it gives up on a server it cannot reach."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) means the server could not be reached or timed out."""
    import grpc

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionError | TimeoutError | pymilvus.exceptions.MilvusUnavailableException):
            return True
        if isinstance(seen, grpc.RpcError) and seen.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return True
        if isinstance(seen, pymilvus.MilvusException) and (seen.code == 2 or any(s in str(seen) for s in _UNREACHABLE)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class MilvusStore(Store):
    """Documents in Milvus collection ``collection`` at ``uri``: a milvus-lite file
    (``"index.db"``) or a server (``"http://host:19530"``, with ``token="user:password"`` or an
    API key). ``timeout`` (seconds) bounds every call: an unreachable server is a
    :class:`~m3rag.ServiceUnavailableError` naming its address.

    New collections only: ``dense_index="flat"`` (exact, like the local store's flat index) or
    ``"hnsw"`` (approximate, ``hnsw_m`` / ``ef_construction``, searched with ``ef_search``);
    ``shards``: how many shards a server splits the collection into. ``replicas``: in-memory
    replicas a server loads (for throughput and availability). milvus-lite ignores both.
    ``batch_size`` documents go in one upsert request. ColBERT vectors are not stored; reranking
    re-encodes the candidates (see the module docstring for why and what it costs).
    """

    kind: ClassVar[str] = "milvus"

    def __init__(
        self,
        uri: str,
        collection: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        dense_index: Literal["flat", "hnsw"] = "flat",
        hnsw_m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 128,
        shards: int | None = None,
        replicas: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(uri, str) or not uri:
            raise InputValueError(f"uri must be a milvus-lite file (*.db) or a server address (http://host:19530), got {uri!r}")
        if not isinstance(collection, str) or not _NAME.fullmatch(collection):
            raise InputValueError(f"a Milvus collection name is a letter or _ then letters, digits or _ (at most 255), got {collection!r}")
        if dense_index not in ("flat", "hnsw"):
            raise InputValueError(f"dense_index must be 'flat' or 'hnsw', got {dense_index!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise InputValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        for name, value in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction), ("ef_search", ef_search), ("batch_size", batch_size)):
            check_positive_int(value, name)
        for optional, number in (("shards", shards), ("replicas", replicas)):
            check_positive_int(number, optional, optional=True)
        self.address, self.collection, self.batch_size = uri, collection, batch_size
        self._shards, self._replicas = shards, replicas
        self.keeps_colbert = False
        self.settings: dict[str, Any] = {}
        self._layout: dict[str, Any] = {"dense_index": dense_index, "hnsw_m": hnsw_m, "ef_construction": ef_construction}
        self._ef_search = ef_search
        self._record: dict[str, Any] | None = None
        self._saved_settings: dict[str, Any] = {}
        self._clock = InsertionClock()
        self.client = self._call("connect", pymilvus.MilvusClient, uri=uri, token=token or "", timeout=timeout)

    def describe(self) -> str:
        return f"milvus ({self.address}, collection {self.collection!r}, ColBERT recomputed)"

    @property
    def _where(self) -> str:
        return f"Milvus collection {self.collection!r} at {self.address}"

    def _call(self, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with the engine's errors as m3rag's, naming store and action."""
        try:
            return fn(*args, **kwargs)
        except M3RagError:
            raise
        except Exception as exc:
            if _unavailable(exc):
                message = f"Milvus at {self.address} is unreachable or did not answer ({action}, collection {self.collection!r}): {exc}"
                raise ServiceUnavailableError(message, self.address) from exc
            raise StoreError(f"{self._where}: {action} failed: {exc}") from exc

    # ------------------------------------------------------------------ model
    def recorded_model(self) -> str | None:
        if not self._call("check the collection", self.client.has_collection, self.collection):
            return None
        info = self._call("read the collection", self.client.describe_collection, self.collection)
        try:
            record = json.loads((info.get("properties") or {}).get("m3rag") or "null")
        except ValueError:
            return None
        name = record.get("identity", {}).get("name") if isinstance(record, dict) else None
        return name if isinstance(name, str) else None

    def bind(self, identity: Mapping[str, Any], *, encode_dense: EncodeDense | None = None) -> None:
        if not self._call("check the collection", self.client.has_collection, self.collection):
            self._create(dict(identity))
            return
        info = self._call("read the collection", self.client.describe_collection, self.collection)
        text = (info.get("properties") or {}).get("m3rag")
        try:
            raw = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            raw = None
        record = check_record(raw, identity, self._where)
        fields = {f["name"]: f for f in info.get("fields", [])}
        dim = (fields.get("dense") or {}).get("params", {}).get("dim")
        if dim is None or int(dim) != identity.get("dim"):
            raise ModelMismatchError(f"{self._where}: field 'dense' has {dim} dimensions; the encoder's model has {identity.get('dim')}")
        if "sparse" not in fields:
            raise ModelMismatchError(f"{self._where} has no 'sparse' field")
        self._record = {**record, "identity": {**record["identity"], "name": identity.get("name")}}
        self._layout = dict(record.get("layout") or {})
        self.settings = dict(record.get("settings") or {})
        self._saved_settings = dict(self.settings)
        state = self._call("check the load state", self.client.get_load_state, self.collection)
        if self._replicas is not None or "Loaded" not in str(state.get("state") if isinstance(state, dict) else state):
            self._load()

    def _load(self) -> None:
        """Load the collection for search (with ``replicas`` in-memory replicas when given)."""
        if self._replicas is None:
            self._call("load the collection", self.client.load_collection, self.collection)
            return
        self._call("release the collection", self.client.release_collection, self.collection)
        self._call("load the collection", self.client.load_collection, self.collection, replica_number=self._replicas)

    def _create(self, identity: dict[str, Any]) -> None:
        types = pymilvus.DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", types.VARCHAR, is_primary=True, max_length=36)
        schema.add_field("id", types.VARCHAR, max_length=4 * MAX_ID_LENGTH)
        schema.add_field("seq", types.INT64)
        schema.add_field("dense", types.FLOAT_VECTOR, dim=int(identity["dim"]))
        schema.add_field("sparse", types.SPARSE_FLOAT_VECTOR)
        schema.add_field("text", types.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("meta", types.JSON)
        schema.add_field("terms", types.JSON)
        index = self.client.prepare_index_params()
        if self._layout["dense_index"] == "flat":
            index.add_index("dense", index_type="FLAT", metric_type="IP")
        else:
            params = {"M": self._layout["hnsw_m"], "efConstruction": self._layout["ef_construction"]}
            index.add_index("dense", index_type="HNSW", metric_type="IP", params=params)
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        self._record = {"format": RECORD_FORMAT, "identity": identity, "settings": dict(self.settings), "layout": dict(self._layout)}
        self._call(
            "create the collection",
            self.client.create_collection,
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level="Strong",
            properties={"m3rag": json.dumps(self._record)},
            **({"num_shards": self._shards} if self._shards else {}),
        )
        self._saved_settings = dict(self.settings)
        if self._replicas is not None:
            self._load()

    def _save_settings(self) -> None:
        """Record the index settings (``max_length``) in the collection when they changed."""
        if self._record is None or self.settings == self._saved_settings:
            return
        self._record = {**self._record, "settings": dict(self.settings)}
        properties = {"m3rag": json.dumps(self._record)}
        self._call("record the index settings", self.client.alter_collection_properties, self.collection, properties=properties)
        self._saved_settings = dict(self.settings)

    @property
    def _identity(self) -> dict[str, Any]:
        if self._record is None:
            raise InputValueError(f"{self._where} is not bound to a model yet (open it through M3Index)")
        return dict(self._record["identity"])

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        rows = self._call("count documents", self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _all(self) -> list[dict[str, Any]]:
        """``{id, seq}`` of every document, in insertion order."""
        found: list[dict[str, Any]] = []
        iterator = self._call("list documents", self.client.query_iterator, self.collection, batch_size=_CHUNK, output_fields=["id", "seq"])
        try:
            while page := self._call("list documents", iterator.next):
                found.extend(page)
        finally:
            iterator.close()
        return sorted(found, key=lambda r: int(r["seq"]))

    def ids(self) -> list[str]:
        return [r["id"] for r in self._all()]

    def _get(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        """Stored rows of ``ids`` by id (absent ids are missing)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), _CHUNK):
            keys = [document_key(i) for i in ids[start : start + _CHUNK]]
            rows = self._call("read documents", self.client.get, self.collection, ids=keys, output_fields=["id", *fields])
            found.update((r["id"], dict(r)) for r in rows)
        return found

    def existing(self, ids: Sequence[str]) -> set[str]:
        wanted = set(ids)
        return {i for i in self._get(list(wanted), []) if i in wanted}

    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        found = self._get(list(dict.fromkeys(ids)), ["text", "meta"])
        return [IndexedDocument(i, found[i]["text"], dict(found[i].get("meta") or {})) for i in ids]

    def write(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]], vectors: M3Output) -> None:
        if vectors.dense is None or vectors.sparse is None:
            raise InputValueError("MilvusStore stores dense and sparse vectors: encode with return_sparse=True")
        for doc_id, text in zip(ids, texts):
            size = len(text.encode("utf-8"))
            if size > MAX_TEXT_BYTES:
                raise InputValueError(
                    f"{self._where}: the text of id {doc_id!r} has {size} UTF-8 bytes; the text field holds {MAX_TEXT_BYTES} (chunk it)"
                )
        self._save_settings()
        vocab_size = int(self._identity["vocab_size"])
        sparse = sparse_rows(vectors.sparse)
        first_seq = self._clock.take(len(ids))

        def row(j: int) -> dict[str, Any]:
            # Milvus refuses an empty sparse vector: a document without lexical weights holds one
            # token outside the vocabulary, which no query has (its lexical score stays 0)
            weights = dict(zip(*sparse[j])) or {vocab_size: 1.0}
            return {
                "pk": document_key(ids[j]),
                "id": ids[j],
                "seq": first_seq + j,
                "dense": vectors.dense[j].tolist(),  # type: ignore[index]
                "sparse": weights,
                "text": texts[j],
                "meta": metadatas[j],
                "terms": filter_terms(metadatas[j]),
            }

        def send(start: int, stop: int) -> None:
            rows = [row(j) for j in range(start, stop)]
            self._call(f"write documents {ids[start]!r}..{ids[stop - 1]!r}", self.client.upsert, self.collection, rows)

        write_batches(ids, self.batch_size, send, self._where)

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _CHUNK):
            keys = [document_key(i) for i in ids[start : start + _CHUNK]]
            self._call("delete documents", self.client.delete, self.collection, ids=keys)

    def export(self, batch_size: int = 256) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]], M3Output]]:
        order = [r["id"] for r in self._all()]
        identity = self._identity
        vocab_size, dim = int(identity["vocab_size"]), int(identity["dim"])
        for start in range(0, len(order), batch_size):
            found = self._get(order[start : start + batch_size], ["text", "meta", "dense", "sparse"])
            rows = [found[i] for i in order[start : start + batch_size] if i in found]  # deleted meanwhile: skipped
            sparse = [_lexical(r["sparse"], vocab_size) for r in rows]
            out = assemble_output([r["dense"] for r in rows], sparse, None, vocab_size, dim)
            yield [r["id"] for r in rows], [r["text"] for r in rows], [dict(r.get("meta") or {}) for r in rows], out

    # ------------------------------------------------------------------ search
    def search(self, plan: SearchPlan, queries: M3Output, encode_colbert: EncodeColbert) -> list[list[SearchHit]]:
        """One request for all ``queries`` gathers the candidates with their vectors; fusion and
        rerank run here, exactly (:func:`~m3rag.index.plan.execute`)."""
        if len(queries) == 0:
            return []
        limit = 2 * plan.depth if plan.mode == "hybrid" else plan.depth
        if limit > MAX_TOP_K:
            raise InputValueError(f"{self._where}: a search gathers at most {MAX_TOP_K} candidates; candidates={plan.depth} asks {limit}")
        terms = query_terms(plan.filter)
        expr = " and ".join(f'json_contains(terms, "{t}")' for t in terms)
        fields = ["id", "seq", "text", "meta"] + [m for m in ("dense", "sparse") if getattr(plan, f"uses_{m}")]
        dense = [v.tolist() for v in queries.dense] if queries.dense is not None else None
        sparse = [dict(zip(i, w)) for i, w in sparse_rows(queries.sparse)] if queries.sparse is not None else None
        hnsw = self._layout.get("dense_index") == "hnsw"
        param = {"metric_type": "IP", "params": {"ef": max(self._ef_search, plan.depth)} if hnsw else {}}
        if plan.mode == "hybrid":
            requests = [
                pymilvus.AnnSearchRequest(data=dense, anns_field="dense", param=param, limit=plan.depth, expr=expr),
                pymilvus.AnnSearchRequest(data=sparse, anns_field="sparse", param={"metric_type": "IP"}, limit=plan.depth, expr=expr),
            ]
            # the ranker only orders the union; limit covers all of it, and the fusion happens here
            ranker = pymilvus.RRFRanker()
            answers = self._call("search", self.client.hybrid_search, self.collection, requests, ranker, limit=limit, output_fields=fields)
        else:
            data, params = (dense, param) if plan.mode == "dense" else (sparse, {"metric_type": "IP"})
            options = dict(anns_field=plan.mode, limit=limit, filter=expr, output_fields=fields, search_params=params)
            answers = self._call("search", self.client.search, self.collection, data=data, **options)
        source = _Candidates(plan, queries, [[dict(h["entity"]) for h in hits] for hits in answers], int(self._identity["vocab_size"]))
        return execute(plan, queries, source, encode_colbert)

    def close(self) -> None:
        self.client.close()


def _lexical(weights: Mapping[Any, float], vocab_size: int) -> tuple[list[int], list[float]]:
    """A stored sparse vector as ``(token ids, weights)``, without the empty-vector placeholder."""
    pairs = sorted((int(t), float(w)) for t, w in weights.items() if int(t) < vocab_size)
    return [t for t, _ in pairs], [w for _, w in pairs]


def _ranked(scores: Mapping[int, float]) -> list[int]:
    """Keys by score, best first; ties in insertion order (lower ``seq`` first)."""
    return sorted(scores, key=lambda k: (-scores[k], k))


class _Candidates:
    """The candidates Milvus returned for each query, as an exact plan source: keys are ``seq``
    (insertion order, so ties break as in the local store); each candidate's dense and sparse
    scores are computed here from its returned vectors, and each mode's ranked list rebuilt."""

    def __init__(self, plan: SearchPlan, q: M3Output, answers: list[list[dict[str, Any]]], vocab_size: int) -> None:
        self.plan = plan
        self.rows: dict[int, dict[str, Any]] = {}
        self.scores: list[dict[str, dict[int, float]]] = []
        self.lists: list[dict[str, np.ndarray]] = []
        for i, entities in enumerate(answers):
            keys = np.array([int(e["seq"]) for e in entities], dtype=np.int64)
            self.rows.update(zip(keys.tolist(), entities))
            scores: dict[str, dict[int, float]] = {}
            if plan.uses_dense:
                values = dense_scores(q.dense[i], np.array([e["dense"] for e in entities], dtype=np.float32))  # type: ignore[index]
                scores["dense"] = dict(zip(keys.tolist(), values.tolist()))
            if plan.uses_sparse:
                matrix = sparse_matrix([_lexical(e["sparse"], vocab_size) for e in entities], vocab_size)
                scores["sparse"] = dict(zip(keys.tolist(), sparse_scores(q.sparse[[i]], matrix).tolist()))  # type: ignore[index]
            self.scores.append(scores)
            lists: dict[str, np.ndarray] = {}
            for mode in ("dense", "sparse") if plan.mode == "hybrid" else (plan.mode,):
                ranked = _ranked(scores[mode])
                if mode == "sparse":
                    ranked = [k for k in ranked if scores["sparse"][k] > 0]
                lists[mode] = np.array(ranked[: plan.depth], dtype=np.int64)
            self.lists.append(lists)

    def first_stage(self, i: int) -> dict[str, np.ndarray]:
        return self.lists[i]

    def dense_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        return np.array([self.scores[i]["dense"][k] for k in keys.tolist()], dtype=np.float64)

    def sparse_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        return np.array([self.scores[i]["sparse"][k] for k in keys.tolist()], dtype=np.float64)

    def colbert_scores(self, i: int, keys: np.ndarray) -> np.ndarray | None:
        return None

    def texts(self, keys: np.ndarray) -> list[str]:
        return [self.rows[k]["text"] for k in keys.tolist()]

    def hits(self, keys: np.ndarray, final: np.ndarray, per_mode: Mapping[str, np.ndarray]) -> list[SearchHit]:
        return [
            SearchHit(
                id=self.rows[k]["id"],
                text=self.rows[k]["text"],
                metadata=dict(self.rows[k].get("meta") or {}),
                score=float(final[j]),
                scores={m: float(s[j]) for m, s in per_mode.items()},
            )
            for j, k in enumerate(keys.tolist())
        ]
