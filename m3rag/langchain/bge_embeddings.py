"""Dense BGE embeddings (bge-*-en/zh v1 and v1.5) for LangChain: a drop-in for ``HuggingFaceBgeEmbeddings``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from langchain_core.embeddings import Embeddings

from m3rag.encoder.instructions import family_query_instruction
from m3rag.langchain._encoder_field import BGEEncoderFields

if TYPE_CHECKING:
    from m3rag.encoder.dense import BGEEncoder
from m3rag.langchain.embeddings import _row, _rows
from m3rag.validation import check_str, check_texts

__all__ = ["BGEEmbeddings"]


class BGEEmbeddings(BGEEncoderFields, Embeddings):
    """Dense BGE embeddings on m3rag's shared :class:`~m3rag.BGEEncoder` (CLS, L2-normalised).

    Takes ``HuggingFaceBgeEmbeddings``' arguments: ``model_name``, ``query_instruction``,
    ``embed_instruction``, ``model_kwargs`` (``device``, ``dtype`` / ``torch_dtype``),
    ``encode_kwargs`` (``batch_size``, ``normalize_embeddings``, ``show_progress_bar``),
    ``cache_folder`` and ``show_progress``; other keys raise :class:`~m3rag.InputTypeError`.

    Differences, on purpose: ``query_instruction`` defaults to the model card's instruction of the
    model's family (bge-*-en[-v1.5]: ``"Represent this sentence for searching relevant passages: "``,
    bge-*-zh[-v1.5]: ``"为这个句子生成表示以用于检索相关文章："``, none for other models such as
    bge-m3), where LangChain's default says "question" instead of "sentence" and is used for every
    model; pass ``query_instruction=""`` for none. Newlines are kept (they tokenize as spaces). The
    default model is ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``. Vectors equal
    FlagEmbedding's ``FlagModel`` with the same instruction.

    Example:
        .. code-block:: python

            from m3rag.langchain import BGEEmbeddings

            embeddings = BGEEmbeddings(model_name="BAAI/bge-base-en-v1.5", model_kwargs={"device": "cpu"})
            query_vector = embeddings.embed_query("What does BGE stand for?")
    """

    query_instruction: str | None = None
    """Prepended to queries; ``None``: the model family's instruction (``""`` after loading if it has none)."""
    embed_instruction: str = ""
    """Prepended to documents (BGE models use none)."""
    normalize_embeddings: bool = True
    batch_size: int = 32
    """Maximum texts per forward pass (batches are also bounded by the encoder's token budget)."""
    max_length: int = 512
    """Token limit for documents; longer ones are truncated (with a TruncationWarning)."""
    query_max_length: int = 512
    show_progress: bool = False
    cache_folder: str | None = None
    """Hugging Face cache directory for hub downloads."""

    ENCODE_KWARGS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"batch_size": "batch_size", "normalize_embeddings": "normalize_embeddings", "show_progress_bar": "show_progress"}
    )

    def _shared(self, name: str) -> BGEEncoder:
        from m3rag.encoder.dense import BGEEncoder

        return BGEEncoder.shared(name, device=self.device, dtype=self.dtype, cache_dir=self.cache_folder)

    def _loaded(self) -> None:
        if self.query_instruction is None:
            self.query_instruction = family_query_instruction(self.model_name) or ""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (``embed_instruction`` + text): one ``list[float]`` per text."""
        texts, _ = check_texts(texts)
        return _rows(
            self.instance.encode(texts, self.batch_size, self.max_length, show_progress_bar=self.show_progress or None, **self._doc())
        )

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (``query_instruction`` + text)."""
        check_str(text, "text")
        return _row(self.instance.encode(text, 1, self.query_max_length, **self._query()))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        texts, _ = check_texts(texts)
        return _rows(await self.instance.aencode(texts, self.batch_size, self.max_length, **self._doc()))

    async def aembed_query(self, text: str) -> list[float]:
        check_str(text, "text")
        return _row(await self.instance.aencode(text, 1, self.query_max_length, **self._query()))

    def _query(self) -> dict[str, Any]:
        return dict(instruction=self.query_instruction or None, normalize_embeddings=self.normalize_embeddings)

    def _doc(self) -> dict[str, Any]:
        return dict(instruction=self.embed_instruction or None, normalize_embeddings=self.normalize_embeddings)
