"""The pydantic fields every m3rag LangChain class shares to reach a shared model of its kind."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from m3rag.encoder.protocol import M3EncoderLike
from m3rag.encoder.registry import ModelKind, default_model
from m3rag.encoder.resolve import resolve_encoder
from m3rag.errors import InputTypeError, InputValueError

if TYPE_CHECKING:  # the model classes import torch: loaded when a local model is
    from m3rag.encoder.dense import BGEEncoder
    from m3rag.encoder.reranker import BGEReranker

__all__ = ["BGEEncoderFields", "EncoderFields", "ModelFields", "RerankerFields"]

ModelT = TypeVar("ModelT")

_MODEL_KWARGS: Mapping[str, str] = MappingProxyType({"device": "device", "dtype": "dtype", "torch_dtype": "dtype"})


class ModelFields(BaseModel, Generic[ModelT]):
    """``model_name`` (resolved through the model kind's ``.shared()``, so classes naming the same
    model, in LangChain or LlamaIndex, share one set of weights) or an ``encoder`` instance.

    ``model_kwargs`` / ``encode_kwargs`` are taken as langchain-huggingface takes them and mapped to
    fields: ``model_kwargs`` ``device`` and ``dtype`` (or ``torch_dtype``); ``encode_kwargs`` per
    class (:attr:`ENCODE_KWARGS`). Any other key is refused by name (:class:`~m3rag.InputTypeError`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_name: str = ""
    """Hub id or local directory; empty: the kind's default (see :func:`m3rag.default_model`).
    With ``encoder`` given, it becomes that instance's name."""
    encoder: Any = Field(default=None, exclude=True)
    """The instance to use (of the class's model kind); default: the shared one for ``model_name`` /
    ``device`` / ``dtype``."""
    device: str | None = None
    dtype: str | None = None
    model_kwargs: dict[str, Any] | None = Field(default=None, exclude=True)
    """langchain-huggingface's loading options: ``device``, ``dtype`` / ``torch_dtype``."""
    encode_kwargs: dict[str, Any] | None = Field(default=None, exclude=True)
    """langchain-huggingface's encoding options, as far as they have a meaning here (:attr:`ENCODE_KWARGS`)."""

    KIND: ClassVar[ModelKind] = "m3"
    ENCODE_KWARGS: ClassVar[Mapping[str, str]] = MappingProxyType({})
    """``encode_kwargs`` key -> the field it sets ("": accepted when :meth:`_map_value` accepts the value)."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**self._map_kwargs(data))

    @classmethod
    def _map_kwargs(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Fold ``model_kwargs`` and ``encode_kwargs`` into the fields they mean."""
        data = dict(data)
        for option, table in (("model_kwargs", _MODEL_KWARGS), ("encode_kwargs", cls.ENCODE_KWARGS)):
            given = data.get(option)
            if given is None:
                continue
            if not isinstance(given, Mapping):
                raise InputTypeError(f"{option} must be a dict, got {type(given).__name__}")
            for key, value in given.items():
                if key not in table:
                    known = ", ".join(table) or "none"
                    raise InputTypeError(f"{cls.__name__} does not take {option}[{key!r}]; the {option} it maps: {known}")
                value = cls._map_value(option, key, value)
                field = table[key]
                if not field:  # accepted, nothing to set (e.g. normalize_embeddings=True for M3)
                    continue
                if field in data and data[field] != value:
                    raise InputValueError(f"{field} is given twice, as {field}={data[field]!r} and {option}[{key!r}]={value!r}")
                data[field] = value
        return data

    @classmethod
    def _map_value(cls, option: str, key: str, value: Any) -> Any:
        """The field value of one ``model_kwargs`` / ``encode_kwargs`` entry."""
        if key in ("dtype", "torch_dtype") and not isinstance(value, str) and value is not None:
            return str(value).removeprefix("torch.")  # torch.bfloat16 -> "bfloat16"
        return value

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        """The class an ``encoder`` must be an instance of, and how to name it in an error."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _load_model(self) -> Any:
        if self.encoder is not None:
            kind, what = self._model_type()
            if not isinstance(self.encoder, kind):
                raise InputTypeError(f"encoder must be {what}, got {type(self.encoder).__name__}")
        if self.encoder is None:
            self.encoder = self._shared(self.model_name or default_model(self.KIND))
        self.model_name = str(getattr(self.encoder, "name", self.model_name))
        self._loaded()
        return self

    def _loaded(self) -> None:
        """Hook: runs once the model is resolved and ``model_name`` is its name."""

    def _shared(self, name: str) -> ModelT:
        """The shared instance of ``name`` on ``device`` / ``dtype``."""
        raise NotImplementedError

    @property
    def instance(self) -> ModelT:
        """The loaded model (``encoder``)."""
        if self.encoder is None:  # only before validation has run
            raise RuntimeError(f"{type(self).__name__} has no model yet")
        instance: ModelT = self.encoder
        return instance


class EncoderFields(ModelFields[M3EncoderLike]):
    """The M3 encoder, local or remote: ``model_name`` default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``;
    an ``http(s)://`` name is an ``m3rag serve`` address."""

    KIND: ClassVar[ModelKind] = "m3"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        return M3EncoderLike, "an M3Encoder (or a remote one)"

    def _shared(self, name: str) -> M3EncoderLike:
        return resolve_encoder(None, name, device=self.device, dtype=self.dtype)

    @property
    def m3(self) -> M3EncoderLike:
        return self.instance


class BGEEncoderFields(ModelFields["BGEEncoder"]):
    """A dense BGE encoder: ``model_name`` default ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``."""

    KIND: ClassVar[ModelKind] = "dense"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        from m3rag.encoder.dense import BGEEncoder

        return BGEEncoder, "a BGEEncoder"

    def _shared(self, name: str) -> BGEEncoder:
        from m3rag.encoder.dense import BGEEncoder

        return BGEEncoder.shared(name, device=self.device, dtype=self.dtype)


class RerankerFields(ModelFields["BGEReranker"]):
    """A cross-encoder: ``model_name`` default ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``."""

    KIND: ClassVar[ModelKind] = "reranker"

    @classmethod
    def _model_type(cls) -> tuple[type, str]:
        from m3rag.encoder.reranker import BGEReranker

        return BGEReranker, "a BGEReranker"

    def _shared(self, name: str) -> BGEReranker:
        from m3rag.encoder.reranker import BGEReranker

        return BGEReranker.shared(name, device=self.device, dtype=self.dtype)
