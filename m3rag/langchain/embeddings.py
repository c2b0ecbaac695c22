"""Dense embeddings for LangChain."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor

from m3rag.langchain._encoder_field import EncoderFields
from m3rag.validation import check_positive_int, check_str, check_texts

__all__ = ["M3Embeddings"]


class M3Embeddings(EncoderFields, Embeddings):
    """BGE-M3 dense embeddings (L2-normalised [CLS] vectors; 1024 floats for bge-m3).

    Example:
        .. code-block:: python

            from m3rag.langchain import M3Embeddings

            embeddings = M3Embeddings(model_name="BAAI/bge-m3")
            vector = embeddings.embed_query("What is BGE M3?")
            vectors = embeddings.embed_documents(["BGE M3 is an embedding model."])

    Async twins run the encoder in a worker thread, so the event loop keeps running.
    """

    batch_size: int = 32
    """Maximum texts per forward pass (batches are also bounded by the encoder's token budget)."""
    max_length: int = 8192
    """Token limit for documents; longer ones are truncated (with an M3TruncationWarning)."""
    query_max_length: int = 512
    """Token limit for queries."""
    show_progress: bool = False

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents: one ``list[float]`` per text."""
        texts, _ = check_texts(texts)
        check_positive_int(self.batch_size, "batch_size")
        out = self.m3.encode(texts, self.batch_size, self.max_length, show_progress_bar=self.show_progress or None)
        return out.dense.tolist()  # type: ignore[union-attr]

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        check_str(text, "text")
        return self.m3.encode(text, 1, self.query_max_length).dense_vecs.tolist()  # type: ignore[union-attr]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await run_in_executor(None, self.embed_query, text)
