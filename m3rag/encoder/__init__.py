"""The shared M3 encoder: checkpoint loading, batching, forward pass and the three heads."""

from m3rag.encoder.encoder import DEFAULT_MODEL, M3Encoder, M3TruncationWarning, resolve_encoder
from m3rag.encoder.output import M3Item, M3Output

__all__ = ["DEFAULT_MODEL", "M3Encoder", "M3Item", "M3Output", "M3TruncationWarning", "resolve_encoder"]
