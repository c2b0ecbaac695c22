"""Files to encoded passages on Ray: what ``m3rag index PATH --ray`` runs.

The driver reads each file (it hashes them to see what changed) and hands the texts to Ray's
object store in pieces of about one actor call's worth of passages. An encoder actor cuts a piece
into passages with its encoder's tokenizer (:func:`m3rag.chunking.source_passages`: the same ids
and metadata as without Ray) and encodes them like :func:`encode_dataset`. The passages come back
in the order the files were added.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import ray

from m3rag.distributed.encode import EncodeOptions, M3EncodeActor, encode_stage, plan_encoding
from m3rag.distributed.ingest import INGEST_ROWS, EncodedBatch, iter_encoded
from m3rag.errors import InputValueError
from m3rag.validation import check_positive_int

__all__ = ["PASSAGE_COLUMNS", "FileEncodeActor", "FileEncoder", "cluster_actors", "ray_session"]

PASSAGE_COLUMNS = ("source", "file_hash", "chunk", "chunks", "start", "end")
"""The metadata of a file's passage (see :func:`m3rag.chunking.source_passages`)."""
_FILES = pa.schema([("key", pa.string()), ("file_hash", pa.string()), ("text", pa.large_string())])
_PASSAGES = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("source", pa.string()), ("file_hash", pa.string()),
     ("chunk", pa.int64()), ("chunks", pa.int64()), ("start", pa.int64()), ("end", pa.int64())]
)  # fmt: skip
CHARS_PER_TOKEN = 4
"""Rough characters per token, to size the pieces of text handed to Ray."""


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use this process's Ray connection if it has one; else connect to ``address`` (``"auto"``:
    the cluster running on this machine, ``ray://host:10001``: a remote one) or, with ``None``,
    to ``$RAY_ADDRESS`` or a new local Ray, and disconnect (stopping a local Ray) on exit."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def cluster_actors(workers: int | None = None, device: str | None = None) -> dict[str, Any]:
    """``num_gpus``, ``num_cpus`` and ``concurrency`` for encoder actors on the connected cluster:
    one GPU each when it has GPUs (``workers`` actors, default: as many as the GPUs allow, growing
    with the backlog), else CPU actors (default one per node) sharing the cores of a node. ``device``
    ``"cpu"`` keeps the actors off the GPUs; a numbered device is refused (Ray assigns the GPUs)."""
    if device not in (None, "auto", "cpu", "cuda"):
        raise InputValueError(f"device {device!r}: on Ray give cpu or cuda (each actor gets its own GPU from Ray)")
    check_positive_int(workers, "workers", optional=True)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if device == "cuda" and gpus == 0:
        raise InputValueError("device cuda: the Ray cluster has no GPU")
    if gpus > 0 and device != "cpu":
        return {"num_gpus": 1, "num_cpus": None, "concurrency": workers}
    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    count = workers or max(1, len(nodes))
    cores = max(1, min(max(nodes, default=1), sum(nodes) // count))
    return {"num_gpus": 0, "num_cpus": cores, "concurrency": count}


class FileEncodeActor(M3EncodeActor):
    """:class:`M3EncodeActor` taking files (``key``, ``file_hash``, ``text``): each block of files
    is cut into passages with the encoder's own tokenizer, in file and chunk order, then encoded."""

    def __init__(self, options: EncodeOptions, chunk_tokens: int, overlap: int) -> None:
        super().__init__(options)
        self.chunk_tokens, self.overlap = chunk_tokens, overlap

    def __call__(self, table: pa.Table) -> pa.Table:
        from m3rag.chunking import source_passages

        rows: list[dict[str, Any]] = []
        columns = (table.column(c).to_pylist() for c in ("key", "file_hash", "text"))
        for key, file_hash, text in zip(*columns):
            for p in source_passages(key, file_hash, text, self.encoder.tokenizer, max_tokens=self.chunk_tokens, overlap=self.overlap):
                rows.append({"id": p.id, "text": p.text, **p.metadata})
        return super().__call__(pa.Table.from_pylist(rows, schema=_PASSAGES))


class FileEncoder:
    """Files handed over one by one with :meth:`add`, cut into passages and encoded on Ray.

    ``model``, ``chunk_tokens`` and ``overlap`` are those of ``m3rag index``; ``encode`` takes
    :func:`encode_dataset`'s other arguments (``num_gpus``, ``concurrency``, ``dtype``,
    ``batch_tokens``, ``max_length``, ``outputs``, ``block_rows``, ``colbert_dtype``, ...), checked
    here. Texts go to Ray's object store in pieces of about ``block_rows`` passages, so the driver
    holds one piece at a time and every actor gets work; a file is never split (its passages
    overlap), so one file's passages are encoded by one actor.
    """

    def __init__(self, *, model: str | os.PathLike[str] | None = None, chunk_tokens: int = 256, overlap: int = 32, **encode: Any) -> None:
        check_positive_int(chunk_tokens, "chunk_tokens")
        check_positive_int(overlap, "overlap", minimum=0)
        if overlap >= chunk_tokens:
            raise InputValueError(f"overlap ({overlap}) must be smaller than chunk_tokens ({chunk_tokens})")
        self.plan = plan_encoding(model=model, **encode)
        self.chunk_tokens, self.overlap = chunk_tokens, overlap
        self.piece_chars = self.plan.block_rows * chunk_tokens * CHARS_PER_TOKEN
        self.files = 0
        self._refs: list[Any] = []
        self._piece: list[tuple[str, str, str]] = []
        self._chars = 0

    def add(self, key: str, file_hash: str, text: str) -> None:
        """Queue one file (its key, content hash and text) for encoding."""
        self._piece.append((key, file_hash, text))
        self._chars += len(text)
        self.files += 1
        if self._chars >= self.piece_chars:
            self._put()

    def _put(self) -> None:
        if self._piece:
            keys, hashes, texts = zip(*self._piece)
            self._refs.append(ray.put(pa.table([list(keys), list(hashes), list(texts)], schema=_FILES)))
            self._piece, self._chars = [], 0

    def dataset(self) -> Any:
        """The passages of every file added, encoded: a ``ray.data.Dataset`` (columns ``id``, ``text``,
        :data:`PASSAGE_COLUMNS` and the encoding's), in the order the files were added."""
        self._put()
        if not self._refs:
            raise InputValueError("no files were added")
        files = ray.data.from_arrow_refs(self._refs)
        encoded = encode_stage(
            files, self.plan, FileEncodeActor, {"chunk_tokens": self.chunk_tokens, "overlap": self.overlap}, whole_blocks=True
        )
        encoded.context.execution_options.preserve_order = True
        return encoded

    def batches(
        self, *, vocab_size: int, fingerprint: str | None = None, batch_size: int = INGEST_ROWS
    ) -> Generator[EncodedBatch, None, None]:
        """Run the job: the encoded passages as :class:`EncodedBatch` es (ids ``key#i``, metadata
        :data:`PASSAGE_COLUMNS`) for :meth:`M3Index.add_encoded`, files in order. Closing the
        iterator early (an interruption) stops the job."""
        return iter_encoded(
            self.dataset(),
            vocab_size=vocab_size,
            fingerprint=fingerprint,
            metadata_columns=PASSAGE_COLUMNS,
            outputs=self.plan.options.outputs,
            batch_size=batch_size,
        )
