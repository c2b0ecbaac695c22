"""Model kinds on one infrastructure: checkpoint loading, batching, device and dtype policy,
coalescing and the shared registry (``base``), and the model kinds on top of it: the M3 encoder,
the dense BGE encoder, LLM-Embedder and the cross-encoder reranker."""

from m3rag.encoder.base import TransformerModel, TruncationWarning
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
