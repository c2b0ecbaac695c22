"""Dense BGE-M3 embeddings for LangChain."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from langchain_core.embeddings import Embeddings

from m3rag.errors import InputValueError
from m3rag.langchain._encoder_field import EncoderFields
from m3rag.validation import check_str, check_texts

__all__ = ["M3Embeddings"]


class M3Embeddings(EncoderFields, Embeddings):
    """BGE-M3 dense embeddings (L2-normalised [CLS] vectors; 1024 floats for bge-m3).

    Example:
        .. code-block:: python

            from m3rag.langchain import M3Embeddings

            embeddings = M3Embeddings(model_name="BAAI/bge-m3")
            vector = embeddings.embed_query("What is BGE M3?")
            vectors = embeddings.embed_documents(["BGE M3 is an embedding model."])

    Ported from langchain-huggingface: ``model_kwargs`` ``device`` and ``dtype`` / ``torch_dtype``,
    ``encode_kwargs`` ``batch_size``, ``show_progress_bar`` and ``normalize_embeddings=True`` (M3's
    vectors are always normalised) are understood; any other key raises :class:`~m3rag.InputTypeError`.

    Async twins use :meth:`M3Encoder.aencode`: the event loop never waits on the model, and with
    ``encoder.enable_coalescing()`` concurrent calls share forward passes.
    """

    batch_size: int = 32
    """Maximum texts per forward pass (batches are also bounded by the encoder's token budget)."""
    max_length: int = 8192
    """Token limit for documents; longer ones are truncated (with an M3TruncationWarning)."""
    query_max_length: int = 512
    """Token limit for queries."""
    show_progress: bool = False

    ENCODE_KWARGS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"batch_size": "batch_size", "show_progress_bar": "show_progress", "normalize_embeddings": ""}
    )

    @classmethod
    def _map_value(cls, option: str, key: str, value: Any) -> Any:
        if key == "normalize_embeddings" and value is not True:
            raise InputValueError(f"encode_kwargs['normalize_embeddings']={value!r}: BGE-M3's dense vectors are always L2-normalised")
        return super()._map_value(option, key, value)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents: one ``list[float]`` per text."""
        texts, _ = check_texts(texts)
        out = self.m3.encode(texts, self.batch_size, self.max_length, show_progress_bar=self.show_progress or None)
        return _rows(out.dense)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        check_str(text, "text")
        return _row(self.m3.encode(text, 1, self.query_max_length).dense_vecs)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        texts, _ = check_texts(texts)
        return _rows((await self.m3.aencode(texts, self.batch_size, self.max_length)).dense)

    async def aembed_query(self, text: str) -> list[float]:
        check_str(text, "text")
        return _row((await self.m3.aencode(text, 1, self.query_max_length)).dense_vecs)


def _rows(vectors: Any) -> list[list[float]]:
    """``float32 [n, d]`` as lists of Python floats."""
    rows: list[list[float]] = vectors.tolist()
    return rows


def _row(vector: Any) -> list[float]:
    """``float32 [d]`` as a list of Python floats."""
    row: list[float] = vector.tolist()
    return row
