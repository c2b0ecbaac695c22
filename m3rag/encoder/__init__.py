"""Model kinds on one infrastructure: checkpoint loading, batching, device and dtype policy,
coalescing and the shared registry (``base``), and the model kinds on top of it: the M3 encoder,
the dense BGE encoder, LLM-Embedder and the cross-encoder reranker.

Names load their modules on first use, so ``m3rag.encoder.output`` or ``.registry`` can be
imported without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from m3rag.encoder.base import TransformerModel
    from m3rag.encoder.dense import BGEEncoder
    from m3rag.encoder.instructions import (
        BGE_EN_QUERY_INSTRUCTION,
        BGE_ZH_QUERY_INSTRUCTION,
        FAMILY,
        LLM_EMBEDDER_INSTRUCTIONS,
        LLM_EMBEDDER_TASKS,
    )
    from m3rag.encoder.llm_embedder import LLMEmbedder
    from m3rag.encoder.m3 import M3Encoder, M3TruncationWarning
    from m3rag.encoder.output import M3Item, M3Output
    from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
    from m3rag.encoder.registry import DEFAULT_MODEL, default_model
    from m3rag.encoder.reranker import BGEReranker
    from m3rag.encoder.resolve import resolve_encoder, resolve_reranker
    from m3rag.encoder.truncation import TruncationWarning

_LAZY = {
    "BGE_EN_QUERY_INSTRUCTION": "m3rag.encoder.instructions",
    "BGE_ZH_QUERY_INSTRUCTION": "m3rag.encoder.instructions",
    "FAMILY": "m3rag.encoder.instructions",
    "LLM_EMBEDDER_INSTRUCTIONS": "m3rag.encoder.instructions",
    "LLM_EMBEDDER_TASKS": "m3rag.encoder.instructions",
    "BGEEncoder": "m3rag.encoder.dense",
    "BGEReranker": "m3rag.encoder.reranker",
    "LLMEmbedder": "m3rag.encoder.llm_embedder",
    "DEFAULT_MODEL": "m3rag.encoder.registry",
    "default_model": "m3rag.encoder.registry",
    "M3Encoder": "m3rag.encoder.m3",
    "M3TruncationWarning": "m3rag.encoder.m3",
    "M3EncoderLike": "m3rag.encoder.protocol",
    "RerankerLike": "m3rag.encoder.protocol",
    "M3Item": "m3rag.encoder.output",
    "M3Output": "m3rag.encoder.output",
    "TransformerModel": "m3rag.encoder.base",
    "TruncationWarning": "m3rag.encoder.truncation",
    "resolve_encoder": "m3rag.encoder.resolve",
    "resolve_reranker": "m3rag.encoder.resolve",
}

__all__ = [
    "BGE_EN_QUERY_INSTRUCTION",
    "BGE_ZH_QUERY_INSTRUCTION",
    "DEFAULT_MODEL",
    "FAMILY",
    "LLM_EMBEDDER_INSTRUCTIONS",
    "LLM_EMBEDDER_TASKS",
    "BGEEncoder",
    "BGEReranker",
    "LLMEmbedder",
    "M3Encoder",
    "M3EncoderLike",
    "M3Item",
    "M3Output",
    "M3TruncationWarning",
    "RerankerLike",
    "TransformerModel",
    "TruncationWarning",
    "default_model",
    "resolve_encoder",
    "resolve_reranker",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'm3rag.encoder' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
