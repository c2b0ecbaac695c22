"""Encoded batches into an index, without encoding again: on the driver through
:meth:`M3Index.add_encoded`."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import ray

from m3rag import errors
from m3rag.distributed.columns import OUTPUT_COLUMNS, OUTPUTS, to_output
from m3rag.encoder.output import M3Output
from m3rag.errors import InputTypeError, InputValueError, M3RagError
from m3rag.validation import check_positive_int

if TYPE_CHECKING:
    from m3rag.index import M3Index

__all__ = ["EncodedBatch", "add_to_index", "iter_encoded", "m3rag_cause"]

INGEST_ROWS = 1024
"""Rows per :meth:`M3Index.add_encoded` call by default."""


@dataclass(frozen=True)
class EncodedBatch:
    """Documents with their vectors, ready for :meth:`M3Index.add_encoded` (``ids`` ``None``: the
    data had no id column)."""

    ids: list[str] | None
    texts: list[str]
    metadatas: list[dict[str, Any]]
    vectors: M3Output

    def __len__(self) -> int:
        return len(self.texts)


_REMOTE_ERROR = re.compile(r"^m3rag\.errors\.(\w+): (.+)$", re.M)


def m3rag_cause(exc: BaseException) -> M3RagError | None:
    """The m3rag error an actor raised, behind the Ray error the driver gets (Ray keeps only the
    remote traceback's text: its last ``m3rag.errors.<Name>: <message>`` line), if there is one."""
    found = _REMOTE_ERROR.findall(str(exc))
    if not found:
        return None
    name, message = found[-1]
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, M3RagError)):
        return None
    try:
        return cls(message)
    except TypeError:  # an error class that needs more than a message
        return None


def _tables(data: Any, batch_size: int) -> Iterator[pa.Table]:
    if isinstance(data, ray.data.Dataset):
        try:
            yield from data.iter_batches(batch_format="pyarrow", batch_size=batch_size)
        except ray.exceptions.RayError as exc:
            cause = m3rag_cause(exc)
            if cause is None:
                raise
            raise cause from exc  # the actor's own error type and message first, Ray's report behind it
        return
    if isinstance(data, (pa.Table, pa.RecordBatch)) or not isinstance(data, Iterable):
        raise InputTypeError(f"data must be a ray.data.Dataset or an iterable of pyarrow tables, got {type(data).__name__}")
    for i, table in enumerate(data):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if not isinstance(table, pa.Table):
            raise InputTypeError(f"data[{i}] is {type(table).__name__}, not a pyarrow.Table or RecordBatch")
        yield table


def _last_occurrences(ids: list[str]) -> list[int] | None:
    """Positions keeping the last row of each id, or ``None`` when no id repeats."""
    last = {doc_id: i for i, doc_id in enumerate(ids)}
    return None if len(last) == len(ids) else sorted(last.values())


def iter_encoded(
    data: Any,
    *,
    vocab_size: int,
    fingerprint: str | None = None,
    text_column: str = "text",
    id_column: str | None = "id",
    metadata_columns: Sequence[str] | None = None,
    outputs: Sequence[str] = OUTPUTS,
    batch_size: int = INGEST_ROWS,
    unique_ids: bool = False,
) -> Generator[EncodedBatch, None, None]:
    """Encoded rows (a ``ray.data.Dataset`` from :func:`encode_dataset`, or pyarrow tables, e.g.
    read from its Parquet files) as :class:`EncodedBatch` es of at most ``batch_size`` rows.

    ``metadata_columns``: the columns that make each document's metadata; ``None``: every column
    but the text, the id and the encoding's own. ``unique_ids``: of rows repeating an id within a
    batch only the last is kept (a job written twice to one folder holds each row twice).
    ``fingerprint``: rows of another model raise :class:`~m3rag.ModelMismatchError`.
    """
    check_positive_int(batch_size, "batch_size")
    for table in _tables(data, batch_size):
        if table.num_rows == 0:
            continue
        names = table.column_names
        for name in (text_column, id_column):
            if name is not None and name not in names:
                raise InputValueError(f"column {name!r} is not in the encoded data (columns: {', '.join(names)})")
        if metadata_columns is None:
            meta_names = [c for c in names if c not in (text_column, id_column) and c not in OUTPUT_COLUMNS]
        else:
            meta_names = list(metadata_columns)
            missing = [c for c in meta_names if c not in names]
            if missing:
                raise InputValueError(f"metadata columns {missing} are not in the encoded data (columns: {', '.join(names)})")
        ids = None if id_column is None else [str(v) if v is not None else v for v in table.column(id_column).to_pylist()]
        if ids is not None and unique_ids:
            keep = _last_occurrences(ids)  # type: ignore[arg-type]
            if keep is not None:
                table = table.take(pa.array(np.asarray(keep, dtype=np.int64)))
                ids = [ids[i] for i in keep]
        texts = table.column(text_column).to_pylist()
        values = [table.column(c).to_pylist() for c in meta_names]
        metadatas = [dict(zip(meta_names, row)) for row in zip(*values)] if meta_names else [{} for _ in texts]
        vectors = to_output(table, vocab_size, fingerprint=fingerprint, outputs=outputs)
        yield EncodedBatch(ids, texts, metadatas, vectors)  # type: ignore[arg-type]


def add_to_index(
    index: M3Index,
    data: Any,
    *,
    text_column: str = "text",
    id_column: str | None = "id",
    metadata_columns: Sequence[str] | None = None,
    upsert: bool = True,
    batch_size: int = INGEST_ROWS,
) -> int:
    """Store encoded rows in ``index`` with their vectors (no encoding); returns the rows stored.

    ``data``: the dataset :func:`encode_dataset` returned, the dataset read back from its Parquet
    files (``ray.data.read_parquet(dir)``), or any iterable of pyarrow tables in that layout. The
    rows must come from the index's model (checked by fingerprint: :class:`~m3rag.ModelMismatchError`)
    and hold dense and sparse outputs, and ColBERT ones if the store keeps them. With ``upsert``
    (the default) a row whose id is stored replaces it, so ingesting the same rows again changes
    nothing; ``id_column=None`` gives every row a new id. Runs on the driver: every vector passes
    through this process into the store.
    """
    from m3rag.index import M3Index

    if not isinstance(index, M3Index):
        raise InputTypeError(f"index must be an M3Index, got {type(index).__name__}")
    outputs = OUTPUTS if index.store.keeps_colbert else ("dense", "sparse")
    identity = index.encoder.identity
    stored = 0
    for batch in iter_encoded(
        data, vocab_size=identity["vocab_size"], fingerprint=identity["fingerprint"], text_column=text_column, id_column=id_column,
        metadata_columns=metadata_columns, outputs=outputs, batch_size=batch_size, unique_ids=upsert,
    ):  # fmt: skip
        index.add_encoded(batch.vectors, batch.texts, batch.ids, batch.metadatas, upsert=upsert)
        stored += len(batch)
    return stored
