"""What the remote stores (Qdrant, Milvus) share.

- Document keys: a user's string id maps to a fixed UUID (uuid5), the engines' primary key; the
  id itself is stored beside it and comes back in every hit.
- Filter terms: m3rag filters are equality with JSON's types (``True`` is not ``1``; ``1`` is
  ``1.0``), which neither engine's own match implements. Each scalar metadata pair is stored as
  one canonical term (a hash of ``key=value`` under those rules); a filter is the conjunction
  of its terms, matched as plain keyword equality, so it runs inside the engine, before top-k.
- Insertion order: every write takes increasing ``seq`` numbers (a replaced document moves to
  the end, as in the local store); ties break by ``seq`` like the local store's rows.
- Batched writes that report which ids reached the store (:class:`~m3rag.PartialWriteError`).
- Vectors to and from rows, and the identity record kept in the collection.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

from m3rag.encoder.output import M3Output
from m3rag.errors import PartialWriteError
from m3rag.index.filters import Filter
from m3rag.index.hits import SearchHit
from m3rag.stores.base import check_identity

__all__ = [
    "RECORD_FORMAT",
    "InsertionClock",
    "assemble_output",
    "check_record",
    "dense_scores",
    "document_key",
    "filter_term",
    "filter_terms",
    "import_extra",
    "order_hits",
    "query_terms",
    "sparse_matrix",
    "sparse_rows",
    "sparse_scores",
    "write_batches",
]

KEY_NAMESPACE = uuid.UUID("0b6c6c83-5d1e-4a3c-9a55-3f0d2b8e6a71")
"""Namespace of the uuid5 document keys: changing it would orphan every stored document."""
RECORD_FORMAT = 1
"""Version of the identity record a remote collection holds."""


def import_extra(module: str, extra: str) -> ModuleType:
    """``module``, or an ImportError telling which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f'the {extra} store needs {module.split(".")[0]}: pip install "m3rag[{extra}]" ({exc})') from exc


def document_key(doc_id: str) -> str:
    """The engine's primary key of document ``doc_id``: a UUID, the same on every machine."""
    return str(uuid.uuid5(KEY_NAMESPACE, doc_id))


def _canonical(value: str | int | float | bool) -> str:
    """JSON text of a scalar under m3rag's filter equality: bools apart from numbers, integral
    floats written as integers (``1.0`` as ``1``), other floats by ``repr``."""
    if isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def filter_term(key: str, value: str | int | float | bool) -> str:
    """The term of one ``key == value`` pair: 32 hex digits, so it needs no escaping in any
    engine's filter language (a 128-bit hash: two distinct pairs never share one in practice)."""
    text = f"{json.dumps(key, ensure_ascii=False)}={_canonical(value)}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def filter_terms(metadata: Mapping[str, Any] | None) -> list[str]:
    """The terms of a document's scalar metadata (lists, dicts and nulls equal no filter value)."""
    return sorted(filter_term(k, v) for k, v in (metadata or {}).items() if isinstance(v, str | int | float))


def query_terms(filter: Filter | None) -> list[str]:
    """The terms a document must all hold to match ``filter`` (none: no filter)."""
    return [filter_term(k, v) for k, v in (filter or {}).items()]


class InsertionClock:
    """Increasing ``seq`` numbers: nanoseconds since the epoch, strictly increasing within the
    process, so writes from several processes interleave by wall-clock time."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> int:
        """The first of ``n`` consecutive numbers, all greater than any taken before."""
        with self._lock:
            start = max(self._last + 1, time.time_ns())
            self._last = start + max(n, 1) - 1
            return start


def write_batches(ids: Sequence[str], batch_size: int, send: Callable[[int, int], None], where: str) -> None:
    """Call ``send(start, stop)`` for consecutive batches of ``ids``. A failure after at least one
    batch was stored is a :class:`~m3rag.PartialWriteError` holding the stored ids; a failure of
    the first batch raises ``send``'s own (typed) error. Either way, re-running the same add with
    ``upsert=True`` completes it without duplicates (documents are keyed by id)."""
    written: list[str] = []
    for start in range(0, len(ids), batch_size):
        stop = min(start + batch_size, len(ids))
        try:
            send(start, stop)
        except Exception as exc:
            if not written:
                raise
            raise PartialWriteError(
                f"{where}: {len(written)} of {len(ids)} documents were written before the write failed ({exc}); "
                "re-run the add with upsert=True to complete it",
                list(written),
            ) from exc
        written.extend(ids[start:stop])


def sparse_rows(matrix: sp.csr_array) -> list[tuple[list[int], list[float]]]:
    """Each row's ``(token ids, weights)`` of a CSR matrix."""
    indptr, indices, data = matrix.indptr.tolist(), matrix.indices.tolist(), matrix.data.tolist()
    return [(indices[a:b], data[a:b]) for a, b in itertools.pairwise(indptr)]


def sparse_matrix(rows: Sequence[tuple[Sequence[int], Sequence[float]]], vocab_size: int) -> sp.csr_array:
    """Rows of ``(token ids, weights)`` as a ``float32 [n, vocab_size]`` CSR matrix, sorted indices."""
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(i) for i, _ in rows], out=indptr[1:])
    indices = np.fromiter((t for i, _ in rows for t in i), dtype=np.int64, count=int(indptr[-1]))
    data = np.fromiter((w for _, v in rows for w in v), dtype=np.float32, count=int(indptr[-1]))
    matrix = sp.csr_array((data, indices, indptr), shape=(len(rows), vocab_size))
    matrix.sort_indices()
    return matrix


def assemble_output(
    dense: Sequence[Any], sparse: Sequence[tuple[Sequence[int], Sequence[float]]], colbert: Sequence[Any] | None, vocab_size: int, dim: int
) -> M3Output:
    """Stored rows as an :class:`M3Output` (``num_tokens`` from the ColBERT rows, as the local
    store exports them)."""
    n = len(dense)
    vectors = np.asarray(dense, dtype=np.float32).reshape(n, dim)
    flat = offsets = None
    if colbert is not None:
        parts = [np.asarray(c, dtype=np.float32) for c in colbert]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        flat = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    num_tokens = np.diff(offsets) + 1 if offsets is not None else np.zeros(n, dtype=np.int64)
    return M3Output(vectors, sparse_matrix(sparse, vocab_size), flat, offsets, num_tokens, np.zeros(n, dtype=bool))


def dense_scores(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``float64 [n]`` dense scores, computed as the local store does (float64 products)."""
    return np.asarray(vectors, dtype=np.float64).reshape(-1, len(query)) @ np.asarray(query, dtype=np.float64)


def sparse_scores(query: sp.csr_array, matrix: sp.csr_array) -> np.ndarray:
    """``float64 [n]`` lexical scores of one query row against the rows of ``matrix``."""
    tokens = query.indices
    if len(tokens) == 0 or matrix.shape[0] == 0:
        return np.zeros(matrix.shape[0], dtype=np.float64)
    return np.asarray(matrix[:, tokens] @ query.data.astype(np.float64), dtype=np.float64).reshape(-1)


def order_hits(hits: list[SearchHit], seqs: Sequence[int]) -> list[SearchHit]:
    """Best score first; equal scores in insertion order (as the local store)."""
    order = sorted(range(len(hits)), key=lambda j: (-hits[j].score, seqs[j]))
    return [hits[j] for j in order]


def check_record(record: Any, identity: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The identity record of a collection, checked: built by m3rag, in a known format, by the
    same model as ``identity`` (:class:`~m3rag.ModelMismatchError` otherwise)."""
    from m3rag.errors import StoreError

    if not isinstance(record, dict) or not isinstance(record.get("identity"), dict):
        raise StoreError(f"{where} exists but was not created by m3rag (no m3rag record); use another collection name")
    if record.get("format") != RECORD_FORMAT:
        raise StoreError(f"{where} holds m3rag record format {record.get('format')!r}; this m3rag reads format {RECORD_FORMAT}")
    check_identity(record["identity"], identity, where)
    return record
