"""The pydantic fields every m3rag LangChain class shares to reach the shared encoder."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from m3rag.encoder import DEFAULT_MODEL, M3EncoderLike, resolve_encoder


class EncoderFields(BaseModel):
    """``model_name`` (resolved through :meth:`M3Encoder.shared`, so classes naming the same model
    share one set of weights) or an ``encoder`` instance."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_name: str = Field(default_factory=lambda: os.environ.get("M3RAG_MODEL", DEFAULT_MODEL))
    """Hub id or local directory; default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``. Ignored if ``encoder`` is given."""
    encoder: M3EncoderLike | None = Field(default=None, exclude=True)
    """The encoder to use (local, or remote: ``m3rag serve``); default: the shared one for ``model_name``/``device``/``dtype``."""
    device: str | None = None
    dtype: str | None = None

    @model_validator(mode="after")
    def _load_encoder(self) -> Any:
        self.encoder = resolve_encoder(self.encoder, self.model_name, device=self.device, dtype=self.dtype)
        return self

    @property
    def m3(self) -> M3EncoderLike:
        assert self.encoder is not None
        return self.encoder
