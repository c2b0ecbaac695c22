"""QdrantStore: an M3 index in one Qdrant collection, searched server-side in one request.

The collection holds three named vectors per document and a small payload:

- ``dense`` (dot product), ``sparse`` (dot product, no IDF modifier: M3's lexical score),
  ``colbert`` (multivector, ``MAX_SIM``, no HNSW graph since it only rescores candidates;
  float16 by default like the local store, so both score the same stored values);
- payload ``id`` (the user's id; the point id is its uuid5), ``seq`` (insertion order, for ties),
  ``text``, ``meta`` and ``terms`` (the type-exact filter terms of :mod:`m3rag.stores.remote`,
  with a keyword index on a server);
- collection metadata ``m3rag``: the model identity, the index settings and this layout; a
  collection built by another model is refused (:class:`~m3rag.ModelMismatchError`).

Every search, or ``search_batch`` of many queries, is one Query API request: see
:mod:`m3rag.stores.qdrant_query` for the request tree and its exactness.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from m3rag.encoder.output import M3Output
from m3rag.errors import InputTypeError, InputValueError, M3RagError, ModelMismatchError, ServiceUnavailableError, StoreError
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.plan import EncodeColbert, SearchPlan
from m3rag.stores import qdrant_query
from m3rag.stores.base import EncodeDense, Store
from m3rag.stores.remote import (
    RECORD_FORMAT,
    InsertionClock,
    assemble_output,
    check_record,
    document_key,
    filter_terms,
    import_extra,
    sparse_rows,
    write_batches,
)
from m3rag.validation import check_positive_int

__all__ = ["QdrantStore"]

qdrant_client = import_extra("qdrant_client", "qdrant")
models = qdrant_client.models

T = TypeVar("T")
_CHUNK = 1024
"""Ids per retrieve / delete request."""
_QUANTIZATION = ("scalar", "binary")


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the server could not be reached or did not answer in time."""
    from qdrant_client.http.exceptions import ResponseHandlingException

    if isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError):
        return True
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio is a dependency of qdrant-client
        return False
    return isinstance(exc, grpc.RpcError) and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class QdrantStore(Store):
    """Documents in Qdrant collection ``collection``, embedded or on a server.

    Exactly one of ``client`` (a ``QdrantClient``), ``url`` (a server: ``http://host:6333``),
    ``path`` (embedded, persisted in a directory, one process at a time) or ``location``
    (``":memory:"``). ``timeout`` (seconds) bounds every call to a server: an unreachable one is
    a :class:`~m3rag.ServiceUnavailableError` naming its address, at once or after ``timeout``.

    New collections only (an existing one keeps its recorded layout):

    - ``colbert_dtype``: ``"float16"`` (default, like the local store) or ``"float32"``.
    - ``dense_index``: ``"flat"`` (exact search, like the local store's flat index; no graph is
      built) or ``"hnsw"`` (Qdrant's graph, ``hnsw_m`` / ``ef_construction``; searched with
      ``ef_search``: approximate, for large collections).
    - ``shards``, ``replication_factor``: spread and copy the collection over a cluster.
    - ``on_disk``: keep vectors (and the payload) on disk, memory-mapped, instead of in RAM.
    - ``colbert_quantization``: ``"scalar"`` (int8) or ``"binary"`` keeps a compressed copy of the
      ColBERT vectors in RAM for rescoring (the originals may stay ``on_disk``); ColBERT scores
      then become approximate.

    ``batch_size`` documents go in one upsert request.
    """

    kind: ClassVar[str] = "qdrant"

    def __init__(
        self,
        client: Any = None,
        *,
        url: str | None = None,
        path: str | None = None,
        location: str | None = None,
        collection: str,
        api_key: str | None = None,
        timeout: float = 10.0,
        prefer_grpc: bool = False,
        colbert_dtype: Literal["float16", "float32"] = "float16",
        dense_index: Literal["flat", "hnsw"] = "flat",
        hnsw_m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 128,
        shards: int | None = None,
        replication_factor: int | None = None,
        on_disk: bool = False,
        colbert_quantization: Literal["scalar", "binary"] | None = None,
        batch_size: int = 64,
    ) -> None:
        given = [name for name, value in (("client", client), ("url", url), ("path", path), ("location", location)) if value is not None]
        if len(given) != 1:
            raise InputValueError(f"QdrantStore needs exactly one of client, url, path or location; got {given or 'none'}")
        if not isinstance(collection, str) or not collection or "/" in collection:
            raise InputValueError(f"collection must be a non-empty name without '/', got {collection!r}")
        if colbert_dtype not in ("float16", "float32"):
            raise InputValueError(f"colbert_dtype must be 'float16' or 'float32', got {colbert_dtype!r}")
        if dense_index not in ("flat", "hnsw"):
            raise InputValueError(f"dense_index must be 'flat' or 'hnsw', got {dense_index!r}")
        if colbert_quantization not in (None, *_QUANTIZATION):
            raise InputValueError(f"colbert_quantization must be None, 'scalar' or 'binary', got {colbert_quantization!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise InputValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        for name, value in (("hnsw_m", hnsw_m), ("ef_construction", ef_construction), ("ef_search", ef_search), ("batch_size", batch_size)):
            check_positive_int(value, name)
        for optional, number in (("shards", shards), ("replication_factor", replication_factor)):
            check_positive_int(number, optional, optional=True)
        self.collection = collection
        self.address: str = url or path or location or _client_address(client)
        self.batch_size = batch_size
        self.keeps_colbert = True
        self.settings: dict[str, Any] = {}
        self._layout: dict[str, Any] = {"colbert_dtype": colbert_dtype, "dense_index": dense_index}
        self._options: dict[str, Any] = dict(hnsw_m=hnsw_m, ef_construction=ef_construction, on_disk=on_disk)
        self._options.update(quantization=colbert_quantization, shards=shards, replication_factor=replication_factor)
        self._ef_search = ef_search
        self._owns_client = client is None
        self._record: dict[str, Any] | None = None
        self._saved_settings: dict[str, Any] = {}
        self._clock = InsertionClock()
        if client is None:
            client = self._connect(url=url, path=path, location=location, api_key=api_key, timeout=timeout, prefer_grpc=prefer_grpc)
        self.client = client
        self._call("connect", client.collection_exists, collection)  # fails fast on an unreachable server

    def _connect(self, **kwargs: Any) -> Any:
        url = kwargs.pop("url")
        try:
            if url is not None:
                return qdrant_client.QdrantClient(url=url, check_compatibility=False, **kwargs)
            return qdrant_client.QdrantClient(path=kwargs["path"], location=kwargs["location"])
        except M3RagError:
            raise
        except Exception as exc:  # e.g. RuntimeError: the path is open in another process
            raise StoreError(f"cannot open Qdrant at {self.address}: {exc}") from exc

    def describe(self) -> str:
        return f"qdrant ({self.address}, collection {self.collection!r})"

    @property
    def _where(self) -> str:
        return f"Qdrant collection {self.collection!r} at {self.address}"

    def _call(self, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with the engine's errors as m3rag's, naming store and action."""
        try:
            with warnings.catch_warnings():  # embedded mode ignores search params and payload indexes, and says so
                warnings.filterwarnings("ignore", message=r"(?s).*(Local mode|local Qdrant)", category=UserWarning)
                return fn(*args, **kwargs)
        except M3RagError:
            raise
        except Exception as exc:
            if _unavailable(exc):
                message = f"Qdrant at {self.address} is unreachable or did not answer ({action}, collection {self.collection!r}): {exc}"
                raise ServiceUnavailableError(message, self.address) from exc
            raise StoreError(f"{self._where}: {action} failed: {exc}") from exc

    # ------------------------------------------------------------------ model
    def bind(self, identity: Mapping[str, Any], *, encode_dense: EncodeDense | None = None) -> None:
        if not self._call("check the collection", self.client.collection_exists, self.collection):
            self._create(dict(identity))
            return
        info = self._call("read the collection", self.client.get_collection, self.collection)
        record = check_record((info.config.metadata or {}).get("m3rag"), identity, self._where)
        self._check_vectors(info.config.params, identity)
        self._record = {**record, "identity": {**record["identity"], "name": identity.get("name")}}
        self._layout = dict(record.get("layout") or {})
        self.settings = dict(record.get("settings") or {})
        self._saved_settings = dict(self.settings)

    def recorded_model(self) -> str | None:
        if not self._call("check the collection", self.client.collection_exists, self.collection):
            return None
        info = self._call("read the collection", self.client.get_collection, self.collection)
        record = (info.config.metadata or {}).get("m3rag")
        name = record.get("identity", {}).get("name") if isinstance(record, dict) else None
        return name if isinstance(name, str) else None

    def _check_vectors(self, params: Any, identity: Mapping[str, Any]) -> None:
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        for name, key in (("dense", "dim"), ("colbert", "colbert_dim")):
            size = vectors[name].size if name in vectors else None
            if size != identity.get(key):
                raise ModelMismatchError(f"{self._where}: vector {name!r} has {size} dimensions, the encoder's model {identity.get(key)}")
        if "sparse" not in (params.sparse_vectors or {}):
            raise ModelMismatchError(f"{self._where} has no 'sparse' vector")

    def _create(self, identity: dict[str, Any]) -> None:
        o = self._options
        flat = self._layout["dense_index"] == "flat"
        dense_hnsw = models.HnswConfigDiff(m=0) if flat else models.HnswConfigDiff(m=o["hnsw_m"], ef_construct=o["ef_construction"])
        quantization = None
        if o["quantization"] == "scalar":
            quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True))
        elif o["quantization"] == "binary":
            quantization = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
        dtype = models.Datatype.FLOAT16 if self._layout["colbert_dtype"] == "float16" else models.Datatype.FLOAT32
        vectors = {
            "dense": models.VectorParams(
                size=identity["dim"], distance=models.Distance.DOT, hnsw_config=dense_hnsw, on_disk=o["on_disk"] or None
            ),
            "colbert": models.VectorParams(
                size=identity["colbert_dim"],
                distance=models.Distance.DOT,  # not COSINE: the query is pre-scaled by 1/rows (see qdrant_query)
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
                hnsw_config=models.HnswConfigDiff(m=0),
                datatype=dtype,
                on_disk=o["on_disk"] or None,
                quantization_config=quantization,
            ),
        }
        sparse = {"sparse": models.SparseVectorParams(index=models.SparseIndexParams(on_disk=o["on_disk"] or None))}
        self._record = {"format": RECORD_FORMAT, "identity": identity, "settings": dict(self.settings), "layout": dict(self._layout)}
        self._call(
            "create the collection",
            self.client.create_collection,
            self.collection,
            vectors_config=vectors,
            sparse_vectors_config=sparse,
            shard_number=o["shards"],
            replication_factor=o["replication_factor"],
            on_disk_payload=o["on_disk"] or None,
            metadata={"m3rag": self._record},
        )
        self._saved_settings = dict(self.settings)
        kinds = models.PayloadSchemaType
        for field, schema in (("terms", kinds.KEYWORD), ("id", kinds.KEYWORD), ("seq", kinds.INTEGER)):
            self._call(f"index payload {field!r}", self.client.create_payload_index, self.collection, field, field_schema=schema, wait=True)

    def _save_settings(self) -> None:
        """Record the index settings (``max_length``) in the collection when they changed."""
        if self._record is None or self.settings == self._saved_settings:
            return
        self._record = {**self._record, "settings": dict(self.settings)}
        self._call("record the index settings", self.client.update_collection, self.collection, metadata={"m3rag": self._record})
        self._saved_settings = dict(self.settings)

    @property
    def _vocab_size(self) -> int:
        if self._record is None:
            raise InputValueError(f"{self._where} is not bound to a model yet (open it through M3Index)")
        return int(self._record["identity"]["vocab_size"])

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        return int(self._call("count documents", self.client.count, self.collection, exact=True).count)

    def _scroll(self, payload: list[str]) -> list[Any]:
        """Every point with ``payload`` fields (no vectors), in insertion order."""
        points: list[Any] = []
        offset = None
        while True:
            page, offset = self._call(
                "list documents", self.client.scroll, self.collection, limit=_CHUNK, offset=offset, with_payload=payload, with_vectors=False
            )
            points.extend(page)
            if offset is None:
                break
        points.sort(key=lambda p: int(p.payload["seq"]))
        return points

    def ids(self) -> list[str]:
        return [p.payload["id"] for p in self._scroll(["id", "seq"])]

    def _retrieve(self, ids: Sequence[str], payload: list[str] | bool, vectors: list[str] | bool) -> dict[str, Any]:
        """Stored points of ``ids`` by id (absent ids are missing)."""
        found: dict[str, Any] = {}
        for start in range(0, len(ids), _CHUNK):
            keys = [document_key(i) for i in ids[start : start + _CHUNK]]
            points = self._call("read documents", self.client.retrieve, self.collection, keys, with_payload=payload, with_vectors=vectors)
            found.update((p.payload["id"], p) for p in points)
        return found

    def existing(self, ids: Sequence[str]) -> set[str]:
        wanted = set(ids)
        return {i for i in self._retrieve(list(wanted), ["id"], False) if i in wanted}

    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        found = self._retrieve(list(dict.fromkeys(ids)), ["id", "text", "meta"], False)
        return [IndexedDocument(i, found[i].payload["text"], dict(found[i].payload.get("meta") or {})) for i in ids]

    def write(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]], vectors: M3Output) -> None:
        if vectors.dense is None or vectors.sparse is None or vectors.colbert is None or vectors.colbert_offsets is None:
            raise InputValueError("QdrantStore stores dense, sparse and ColBERT vectors: encode with return_sparse and return_colbert_vecs")
        self._save_settings()
        dense, flat, dtype = vectors.dense, vectors.colbert, np.dtype(self._layout.get("colbert_dtype", "float16"))
        sparse = sparse_rows(vectors.sparse)
        offsets = vectors.colbert_offsets.tolist()
        dim = flat.shape[1]
        first_seq = self._clock.take(len(ids))

        def colbert(j: int) -> list[list[float]]:
            rows = np.asarray(flat[offsets[j] : offsets[j + 1]]).astype(dtype).astype(np.float32)
            return rows.tolist() if len(rows) else [[0.0] * dim]  # no rows: one zero row, ColBERT score 0 as in the local store

        def send(start: int, stop: int) -> None:
            batch = models.Batch(
                ids=[document_key(i) for i in ids[start:stop]],
                vectors={
                    "dense": dense[start:stop].tolist(),
                    "sparse": [models.SparseVector(indices=sparse[j][0], values=sparse[j][1]) for j in range(start, stop)],
                    "colbert": [colbert(j) for j in range(start, stop)],
                },
                payloads=[
                    {"id": ids[j], "seq": first_seq + j, "text": texts[j], "meta": metadatas[j], "terms": filter_terms(metadatas[j])}
                    for j in range(start, stop)
                ],
            )
            self._call(f"write documents {ids[start]!r}..{ids[stop - 1]!r}", self.client.upsert, self.collection, points=batch, wait=True)

        write_batches(ids, self.batch_size, send, self._where)

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _CHUNK):
            keys = [document_key(i) for i in ids[start : start + _CHUNK]]
            self._call("delete documents", self.client.delete, self.collection, points_selector=models.PointIdsList(points=keys), wait=True)

    def export(self, batch_size: int = 256) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]], M3Output]]:
        order = [p.payload["id"] for p in self._scroll(["id", "seq"])]
        identity = self._record["identity"] if self._record else {}
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            found = self._retrieve(ids, ["id", "text", "meta"], ["dense", "sparse", "colbert"])
            points = [found[i] for i in ids if i in found]  # deleted meanwhile: skipped
            out = assemble_output(
                [p.vector["dense"] for p in points],
                [(list(p.vector["sparse"].indices), list(p.vector["sparse"].values)) for p in points],
                [p.vector["colbert"] for p in points],
                self._vocab_size,
                int(identity["dim"]),
            )
            metas = [dict(p.payload.get("meta") or {}) for p in points]
            yield [p.payload["id"] for p in points], [p.payload["text"] for p in points], metas, out

    # ------------------------------------------------------------------ search
    def search(self, plan: SearchPlan, queries: M3Output, encode_colbert: EncodeColbert) -> list[list[SearchHit]]:
        """One request for all ``queries`` (``query_points``, or ``query_batch_points`` for
        several); first stage, fusion and rerank run in Qdrant."""
        if len(queries) == 0:
            return []
        qdrant_query.check_weights(plan)
        exact = self._layout.get("dense_index", "flat") == "flat"
        requests = [qdrant_query.request(plan, queries, i, exact=exact, hnsw_ef=self._ef_search) for i in range(len(queries))]
        if len(requests) == 1:
            r = requests[0]
            answer = self._call(
                "search",
                self.client.query_points,
                self.collection,
                prefetch=r.prefetch,
                query=r.query,
                using=r.using,
                query_filter=r.filter,
                search_params=r.params,
                limit=r.limit,
                with_payload=r.with_payload,
                with_vectors=r.with_vector,
            )
            answers = [answer]
        else:
            answers = self._call("search", self.client.query_batch_points, self.collection, requests)
        return [qdrant_query.hits(plan, queries, i, a.points, self._vocab_size) for i, a in enumerate(answers)]

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _client_address(client: Any) -> str:
    """Where a given ``QdrantClient`` points: its REST address, else ``"embedded"``."""
    if not hasattr(client, "query_points"):
        raise InputTypeError(f"client must be a qdrant_client.QdrantClient, got {type(client).__name__}")
    inner = getattr(client, "_client", None)
    return str(getattr(inner, "rest_uri", None) or "embedded")
