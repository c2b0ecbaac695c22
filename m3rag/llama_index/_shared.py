"""The constructor every m3rag LlamaIndex component shares: a model name or an instance of its kind."""

from __future__ import annotations

from typing import Any, ClassVar

from m3rag.encoder import BGEEncoder, BGEReranker, M3Encoder, M3EncoderLike, resolve_encoder
from m3rag.encoder.registry import ModelKind, default_model
from m3rag.errors import InputTypeError

__all__ = ["SharedBGEEncoder", "SharedEncoder", "SharedModel", "SharedReranker"]

class SharedModel:
    """Mixin for pydantic LlamaIndex components with a ``model_name`` field and an ``_encoder``
    private attribute: ``Component(model_name=None, *, encoder=None, device=None, dtype=None, **fields)``.

    ``model_name`` (default: the kind's, see :func:`m3rag.default_model`) is resolved through the
    kind's ``.shared()``, so components naming the same model, in LlamaIndex or LangChain, share
    one set of weights. Given ``encoder``, ``model_name`` becomes its name. Each concrete class
    restates ``__init__`` (type checkers build pydantic models' signatures from their fields). Not
    generic: pydantic wants its models' generic bases after ``BaseModel``, and this mixin comes first;
    each kind's mixin types ``encoder``.
    """

    _encoder: Any
    KIND: ClassVar[ModelKind] = "m3"
    MODEL_TYPE: ClassVar[type]
    MODEL_WHAT: ClassVar[str]

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: Any = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        if encoder is not None and not isinstance(encoder, self.MODEL_TYPE):
            raise InputTypeError(f"encoder must be {self.MODEL_WHAT}, got {type(encoder).__name__}")
        name = str(getattr(encoder, "name", "")) if encoder is not None else (model_name or default_model(self.KIND))
        super().__init__(model_name=name, **kwargs)  # type: ignore[call-arg]  # the pydantic component after this mixin
        self._encoder = encoder if encoder is not None else self._shared(name, device, dtype)

    def _shared(self, name: str, device: str | None, dtype: str | None) -> Any:
        """The shared instance of ``name``."""
        raise NotImplementedError


class SharedEncoder(SharedModel):
    """The M3 encoder (default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``; ``http(s)://`` names are ``m3rag serve``)."""

    KIND: ClassVar[ModelKind] = "m3"
    MODEL_TYPE: ClassVar[type] = M3EncoderLike
    MODEL_WHAT: ClassVar[str] = "an M3Encoder (or a remote one)"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> M3Encoder:
        return resolve_encoder(None, name, device=device, dtype=dtype)  # type: ignore[return-value]  # a remote one quacks alike

    @property
    def encoder(self) -> M3Encoder:
        encoder: M3Encoder = self._encoder
        return encoder


class SharedBGEEncoder(SharedModel):
    """A dense BGE encoder (default ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``)."""

    KIND: ClassVar[ModelKind] = "dense"
    MODEL_TYPE: ClassVar[type] = BGEEncoder
    MODEL_WHAT: ClassVar[str] = "a BGEEncoder"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> BGEEncoder:
        return BGEEncoder.shared(name, device=device, dtype=dtype)

    @property
    def encoder(self) -> BGEEncoder:
        encoder: BGEEncoder = self._encoder
        return encoder


class SharedReranker(SharedModel):
    """A cross-encoder (default ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``)."""

    KIND: ClassVar[ModelKind] = "reranker"
    MODEL_TYPE: ClassVar[type] = BGEReranker
    MODEL_WHAT: ClassVar[str] = "a BGEReranker"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> BGEReranker:
        return BGEReranker.shared(name, device=device, dtype=dtype)

    @property
    def encoder(self) -> BGEReranker:
        encoder: BGEReranker = self._encoder
        return encoder
