"""m3rag: one shared BGE-M3 encoder (dense, sparse and ColBERT from one forward pass) for RAG,
and the rest of the BGE family on the same infrastructure (dense BGE, LLM-Embedder, rerankers).

Importing ``m3rag`` is cheap: the public names below load their modules (and torch,
transformers, faiss) on first use, so the command line answers ``--help`` at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from m3rag.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    DenseOnlyError,
    DuplicateIdError,
    IndexFormatError,
    IndexLockedError,
    InputTypeError,
    InputValueError,
    M3RagError,
    ModelKindError,
    ModelMismatchError,
    PartialWriteError,
    RemoteError,
    ServiceUnavailableError,
    StoreError,
    UnknownIdError,
    UnknownTaskError,
)

__version__ = "0.2.0"

_LAZY = {
    "DEFAULT_MODEL": "m3rag.encoder.registry",
    "default_model": "m3rag.encoder.registry",
    "M3Encoder": "m3rag.encoder.m3",
    "BGEEncoder": "m3rag.encoder.dense",
    "LLMEmbedder": "m3rag.encoder.llm_embedder",
    "BGEReranker": "m3rag.encoder.reranker",
    "M3TruncationWarning": "m3rag.encoder.m3",
    "M3Item": "m3rag.encoder.output",
    "M3Output": "m3rag.encoder.output",
    "M3EncoderLike": "m3rag.encoder.protocol",
    "M3Index": "m3rag.index",
    "SearchHit": "m3rag.index",
    "IndexedDocument": "m3rag.index",
    "rerank": "m3rag.reranking",
    "arerank": "m3rag.reranking",
    "Reranked": "m3rag.reranking",
    "set_thread_policy": "m3rag.threads",
}

if TYPE_CHECKING:
    from m3rag.encoder.dense import BGEEncoder
    from m3rag.encoder.llm_embedder import LLMEmbedder
    from m3rag.encoder.m3 import M3Encoder, M3TruncationWarning
    from m3rag.encoder.output import M3Item, M3Output
    from m3rag.encoder.protocol import M3EncoderLike
    from m3rag.encoder.registry import DEFAULT_MODEL, default_model
    from m3rag.encoder.reranker import BGEReranker
    from m3rag.index import IndexedDocument, M3Index, SearchHit
    from m3rag.reranking import Reranked, arerank, rerank
    from m3rag.threads import set_thread_policy


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'm3rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DEFAULT_MODEL",
    "BGEEncoder",
    "BGEReranker",
    "CheckpointError",
    "CheckpointNotFoundError",
    "DenseOnlyError",
    "DuplicateIdError",
    "IndexFormatError",
    "IndexLockedError",
    "IndexedDocument",
    "InputTypeError",
    "InputValueError",
    "LLMEmbedder",
    "M3Encoder",
    "M3EncoderLike",
    "M3Index",
    "M3Item",
    "M3Output",
    "M3RagError",
    "M3TruncationWarning",
    "ModelKindError",
    "ModelMismatchError",
    "PartialWriteError",
    "RemoteError",
    "Reranked",
    "SearchHit",
    "ServiceUnavailableError",
    "StoreError",
    "UnknownIdError",
    "UnknownTaskError",
    "__version__",
    "arerank",
    "default_model",
    "rerank",
    "set_thread_policy",
]
