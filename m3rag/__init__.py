"""m3rag: one shared BGE-M3 encoder (dense, sparse and ColBERT from one forward pass) for RAG."""

from m3rag.encoder import DEFAULT_MODEL, M3Encoder, M3Item, M3Output, M3TruncationWarning
from m3rag.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    DenseOnlyError,
    InputTypeError,
    InputValueError,
    M3RagError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "M3Encoder",
    "M3Item",
    "M3Output",
    "M3TruncationWarning",
    "M3RagError",
    "InputTypeError",
    "InputValueError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "DenseOnlyError",
]
