"""The constructor every m3rag LlamaIndex component shares: a model name or an instance of its kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from m3rag.encoder.protocol import M3EncoderLike
from m3rag.encoder.registry import ModelKind, default_model
from m3rag.encoder.resolve import resolve_encoder
from m3rag.errors import InputTypeError

if TYPE_CHECKING:  # the model classes import torch: loaded when a local model is
    from m3rag.encoder.dense import BGEEncoder
    from m3rag.encoder.reranker import BGEReranker

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

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: Any = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        if encoder is not None:
            kind, what = self._model_type()
            if not isinstance(encoder, kind):
                raise InputTypeError(f"encoder must be {what}, got {type(encoder).__name__}")
        name = str(getattr(encoder, "name", "")) if encoder is not None else (model_name or default_model(self.KIND))
        super().__init__(model_name=name, **kwargs)  # type: ignore[call-arg]  # the pydantic component after this mixin
        self._encoder = encoder if encoder is not None else self._shared(name, device, dtype)

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        """The class an ``encoder`` must be an instance of, and how to name it in an error."""
        raise NotImplementedError

    def _shared(self, name: str, device: str | None, dtype: str | None) -> Any:
        """The shared instance of ``name``."""
        raise NotImplementedError


class SharedEncoder(SharedModel):
    """The M3 encoder (default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``; ``http(s)://`` names are ``m3rag serve``)."""

    KIND: ClassVar[ModelKind] = "m3"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        return M3EncoderLike, "an M3Encoder (or a remote one)"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> M3EncoderLike:
        return resolve_encoder(None, name, device=device, dtype=dtype)

    @property
    def encoder(self) -> M3EncoderLike:
        encoder: M3EncoderLike = self._encoder
        return encoder


class SharedBGEEncoder(SharedModel):
    """A dense BGE encoder (default ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``)."""

    KIND: ClassVar[ModelKind] = "dense"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        from m3rag.encoder.dense import BGEEncoder

        return BGEEncoder, "a BGEEncoder"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> BGEEncoder:
        from m3rag.encoder.dense import BGEEncoder

        return BGEEncoder.shared(name, device=device, dtype=dtype)

    @property
    def encoder(self) -> BGEEncoder:
        encoder: BGEEncoder = self._encoder
        return encoder


class SharedReranker(SharedModel):
    """A cross-encoder (default ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``)."""

    KIND: ClassVar[ModelKind] = "reranker"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        from m3rag.encoder.reranker import BGEReranker

        return BGEReranker, "a BGEReranker"

    def _shared(self, name: str, device: str | None, dtype: str | None) -> BGEReranker:
        from m3rag.encoder.reranker import BGEReranker

        return BGEReranker.shared(name, device=device, dtype=dtype)

    @property
    def encoder(self) -> BGEReranker:
        encoder: BGEReranker = self._encoder
        return encoder
