"""m3rag's exception hierarchy: every error says what was wrong and where.

All errors derive from :class:`M3RagError`; each also derives from the builtin exception a
Python user would expect (``TypeError``, ``ValueError``, ``FileNotFoundError``, ``KeyError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "DenseOnlyError",
    "DuplicateIdError",
    "IndexFormatError",
    "IndexLockedError",
    "InputTypeError",
    "InputValueError",
    "M3RagError",
    "ModelKindError",
    "ModelMismatchError",
    "PartialWriteError",
    "RemoteError",
    "ServiceUnavailableError",
    "StoreError",
    "UnknownIdError",
    "UnknownTaskError",
]


class M3RagError(Exception):
    """Base class of every error m3rag raises on purpose."""


class InputTypeError(M3RagError, TypeError):
    """An argument has the wrong type (e.g. a non-``str`` text, named by its index)."""


class InputValueError(M3RagError, ValueError):
    """An argument has the right type but an unusable value (e.g. ``max_length=1``)."""


class CheckpointError(M3RagError, ValueError):
    """A checkpoint file is missing, unreadable or has the wrong shape; ``path`` names it."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A local-looking model path does not exist (it is never sent to the hub)."""


class ModelKindError(CheckpointError):
    """A checkpoint of another model kind: a cross-encoder (reranker) given to an embedder, an
    embedder given to a reranker, or an architecture the class does not run."""


class DenseOnlyError(M3RagError, RuntimeError):
    """Sparse or ColBERT output was asked of an encoder loaded with ``dense_only=True``."""


class DuplicateIdError(InputValueError):
    """Ids repeat within a call or against the index (and upsert was not asked for)."""


class UnknownIdError(M3RagError, KeyError):
    """Ids that are not in the index."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownTaskError(InputValueError, KeyError):
    """A task name the model has no instructions for (LLM-Embedder's tasks); also a ``KeyError``,
    what FlagEmbedding raised."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IndexFormatError(M3RagError, ValueError):
    """A saved index is missing a file, or a file is truncated, corrupt or of another format;
    ``path`` names it. Nothing is loaded from such an index."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class ModelMismatchError(M3RagError, ValueError):
    """An index was built with another model than the encoder it is loaded with."""


class IndexLockedError(M3RagError, TimeoutError):
    """Another writer held the index directory's lock for longer than the timeout; ``path`` names it."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


class StoreError(M3RagError, RuntimeError):
    """A vector store (Qdrant, Milvus) refused or failed an operation; the message names the store."""


class PartialWriteError(StoreError):
    """An ``add`` failed part-way: ``written_ids`` reached the store, the rest did not. Re-running
    the same ``add`` with ``upsert=True`` completes it without duplicates."""

    def __init__(self, message: str, written_ids: list[str]) -> None:
        super().__init__(message)
        self.written_ids = written_ids


class ServiceUnavailableError(M3RagError, ConnectionError):
    """A server (a vector store, ``m3rag serve``) could not be reached or stopped answering;
    ``address`` names it."""

    def __init__(self, message: str, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class RemoteError(M3RagError, RuntimeError):
    """``m3rag serve`` answered with an error; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
