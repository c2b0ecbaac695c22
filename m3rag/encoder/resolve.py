"""Which model a component uses: the one it was given, or the shared one of a model name."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
from m3rag.errors import InputTypeError

if TYPE_CHECKING:
    from m3rag.encoder.device import DeviceLike, DTypeLike

__all__ = ["resolve_encoder", "resolve_reranker"]


def resolve_encoder(
    encoder: M3EncoderLike | str | os.PathLike[str] | None = None,
    model_name: str | os.PathLike[str] | None = None,
    *,
    device: DeviceLike = None,
    dtype: DTypeLike = None,
) -> M3EncoderLike:
    """``encoder`` if it is one; else the shared encoder of ``encoder`` or ``model_name`` as a
    name (default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``). Every component resolves its encoder
    here, so all components naming the same model use one set of weights. A name starting with
    ``http://`` or ``https://`` is an ``m3rag serve`` address: the shared remote encoder."""
    if encoder is not None and not isinstance(encoder, (str, os.PathLike)):
        if not isinstance(encoder, M3EncoderLike):
            raise InputTypeError(f"encoder must be an M3Encoder (or a remote one), got {type(encoder).__name__}")
        return encoder
    name = encoder if encoder is not None else model_name
    if isinstance(name, str) and name.startswith(("http://", "https://")):
        from m3rag.serve.client import RemoteM3Encoder  # no torch: a client process loads no model

        remote: M3EncoderLike = RemoteM3Encoder.shared(name)
        return remote
    from m3rag.encoder.m3 import M3Encoder  # torch and transformers load only for a local model

    local: M3EncoderLike = M3Encoder.shared(name, device=device, dtype=dtype)
    return local


def resolve_reranker(reranker: object, *, device: DeviceLike = None, dtype: DTypeLike = None) -> RerankerLike | None:
    """A cross-encoder from what a component was given: ``None``; anything scoring pairs as
    :class:`BGEReranker` does (:class:`RerankerLike`: a ``BGEReranker``, or the framework
    rerankers, which score with their own settings); or a model name or path (the shared
    :class:`BGEReranker` of it)."""
    if reranker is None or isinstance(reranker, RerankerLike):
        return reranker
    if isinstance(reranker, (str, os.PathLike)):
        from m3rag.encoder.reranker import BGEReranker

        shared: RerankerLike = BGEReranker.shared(reranker, device=device, dtype=dtype)
        return shared
    raise InputTypeError(f"reranker must be a BGEReranker (or an m3rag framework reranker) or a model name, got {type(reranker).__name__}")
