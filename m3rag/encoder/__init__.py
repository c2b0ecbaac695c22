"""Model kinds on one infrastructure: checkpoint loading, batching, device and dtype policy,
coalescing and the shared registry (``base``), and the M3 encoder on top of it."""

from m3rag.encoder.base import TransformerModel, TruncationWarning
from m3rag.encoder.m3 import M3Encoder, M3TruncationWarning
from m3rag.encoder.output import M3Item, M3Output
from m3rag.encoder.protocol import M3EncoderLike
from m3rag.encoder.registry import DEFAULT_MODEL, default_model
from m3rag.encoder.resolve import resolve_encoder

__all__ = [
    "DEFAULT_MODEL",
    "M3Encoder",
    "M3EncoderLike",
    "M3Item",
    "M3Output",
    "M3TruncationWarning",
    "TransformerModel",
    "TruncationWarning",
    "default_model",
    "resolve_encoder",
]
