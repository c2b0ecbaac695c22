"""Dense BGE embeddings (bge-*-en/zh v1 and v1.5) for LlamaIndex."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import Field, PrivateAttr

from m3rag.encoder.instructions import family_query_instruction
from m3rag.llama_index._shared import SharedBGEEncoder
from m3rag.llama_index.embeddings import _row, _rows
from m3rag.validation import check_str, check_texts

if TYPE_CHECKING:
    from m3rag.encoder.dense import BGEEncoder

__all__ = ["BGEEmbedding"]


class BGEEmbedding(SharedBGEEncoder, BaseEmbedding):
    """Dense BGE embeddings on m3rag's shared :class:`~m3rag.BGEEncoder` (CLS, L2-normalised), with
    LlamaIndex's ``HuggingFaceEmbedding`` fields: ``query_instruction``, ``text_instruction``,
    ``normalize``, ``max_length``, ``embed_batch_size``.

    ``query_instruction`` defaults to the model card's for the model's family (bge-*-en[-v1.5]:
    ``"Represent this sentence for searching relevant passages: "``, bge-*-zh[-v1.5]:
    ``"为这个句子生成表示以用于检索相关文章："``, none otherwise); ``""`` means none. The default
    model is ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``. Vectors equal FlagEmbedding's
    ``FlagModel`` with the same instructions; async methods leave the event loop free.

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from m3rag.llama_index import BGEEmbedding

            Settings.embed_model = BGEEmbedding("BAAI/bge-base-en-v1.5")
    """

    query_instruction: str | None = Field(default=None, description="Prepended to queries; None: the model family's.")
    text_instruction: str | None = Field(default=None, description="Prepended to texts (BGE models use none).")
    normalize: bool = Field(default=True, description="L2-normalise the vectors.")
    max_length: int = Field(default=512, description="Token limit for texts and queries (longer ones are truncated).")
    embed_batch_size: int = Field(default=32, gt=0, description="Texts per forward pass.")
    _encoder: BGEEncoder = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: BGEEncoder | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name, encoder=encoder, device=device, dtype=dtype, **kwargs)
        if self.query_instruction is None:
            self.query_instruction = family_query_instruction(self.model_name) or ""

    @classmethod
    def class_name(cls) -> str:
        return "BGEEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        check_str(query, "query")
        return _row(self._encoder.encode(query, 1, self.max_length, **self._options(self.query_instruction)))

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([check_str(text, "text")])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        texts, _ = check_texts(texts)
        return _rows(self._encoder.encode(texts, self.embed_batch_size, self.max_length, **self._options(self.text_instruction)))

    async def _aget_query_embedding(self, query: str) -> Embedding:
        check_str(query, "query")
        return _row(await self._encoder.aencode(query, 1, self.max_length, **self._options(self.query_instruction)))

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([check_str(text, "text")]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        texts, _ = check_texts(texts)
        return _rows(await self._encoder.aencode(texts, self.embed_batch_size, self.max_length, **self._options(self.text_instruction)))

    def _options(self, instruction: str | None) -> dict[str, Any]:
        return dict(instruction=instruction or None, normalize_embeddings=self.normalize)
