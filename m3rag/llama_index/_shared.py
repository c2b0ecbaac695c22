"""The constructor every m3rag LlamaIndex component shares: a model name or an encoder instance."""

from __future__ import annotations

import os
from typing import Any

from m3rag.encoder import DEFAULT_MODEL, M3EncoderLike, resolve_encoder


class SharedEncoder:
    """Mixin for pydantic LlamaIndex components with a ``model_name`` field and an ``_encoder``
    private attribute: ``Component(model_name=None, *, encoder=None, device=None, dtype=None, **fields)``.

    ``model_name`` (default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``) is resolved through
    :meth:`M3Encoder.shared`, so components naming the same model, in LlamaIndex or LangChain,
    share one set of weights.
    """

    _encoder: M3EncoderLike

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: M3EncoderLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        if encoder is not None:
            name = encoder.name
        else:
            name = model_name or os.environ.get("M3RAG_MODEL", DEFAULT_MODEL)
        super().__init__(model_name=name, **kwargs)  # type: ignore[call-arg]
        self._encoder = resolve_encoder(encoder, name, device=device, dtype=dtype)

    @property
    def encoder(self) -> M3EncoderLike:
        return self._encoder
