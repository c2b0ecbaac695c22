"""m3rag: one shared BGE-M3 encoder (dense, sparse and ColBERT from one forward pass) for RAG."""

from m3rag.encoder import DEFAULT_MODEL, M3Encoder, M3Item, M3Output, M3TruncationWarning
from m3rag.index import IndexedDocument, M3Index, SearchHit
from m3rag.rerank import Reranked, rerank
from m3rag.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    DenseOnlyError,
    DuplicateIdError,
    IndexFormatError,
    InputTypeError,
    InputValueError,
    M3RagError,
    ModelMismatchError,
    UnknownIdError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "M3Encoder",
    "M3Item",
    "M3Output",
    "M3TruncationWarning",
    "M3Index",
    "SearchHit",
    "IndexedDocument",
    "rerank",
    "Reranked",
    "M3RagError",
    "InputTypeError",
    "InputValueError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "DenseOnlyError",
    "DuplicateIdError",
    "UnknownIdError",
    "IndexFormatError",
    "ModelMismatchError",
]
