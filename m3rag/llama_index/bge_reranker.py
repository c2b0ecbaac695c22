"""A cross-encoder (bge-reranker-v2-m3, bge-reranker-base/large) as a LlamaIndex node postprocessor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from pydantic import Field, PrivateAttr

from m3rag.errors import InputValueError
from m3rag.llama_index._shared import SharedReranker
from m3rag.llama_index.reranker import RerankFlow
from m3rag.reranking import Reranked, acrossencoder_rank, crossencoder_rank
from m3rag.validation import check_positive_int

if TYPE_CHECKING:
    from m3rag.encoder.reranker import BGEReranker as CrossEncoder

__all__ = ["BGEReranker"]


class BGEReranker(SharedReranker, RerankFlow, BaseNodePostprocessor):
    """Rerank retrieved nodes by a BGE cross-encoder and keep the ``top_n``, as LlamaIndex's
    ``FlagEmbeddingReranker`` does, on m3rag's shared :class:`m3rag.BGEReranker`.

    ``NodeWithScore.score`` becomes the pair's raw logit, as ``FlagEmbeddingReranker`` gives it
    (``normalize=True``: its sigmoid, in ``[0, 1]``). ``FlagEmbeddingReranker``'s arguments are
    taken too: ``model`` (= ``model_name``, default ``$M3RAG_RERANKER_MODEL`` or
    ``BAAI/bge-reranker-v2-m3``) and ``use_fp16`` (float16 on a GPU). Emits LlamaIndex's rerank
    events; the retrieval score is kept in ``node.metadata["retrieval_score"]`` when
    ``keep_retrieval_score``. It can also be :class:`~m3rag.llama_index.M3Retriever`'s
    ``reranker`` (scoring with these settings).

    Example:
        .. code-block:: python

            from m3rag.llama_index import BGEReranker

            reranker = BGEReranker("BAAI/bge-reranker-v2-m3", top_n=3)
            engine = index.as_query_engine(similarity_top_k=20, node_postprocessors=[reranker])
    """

    model_name: str = Field(description="Hub id or local directory of the cross-encoder.")
    top_n: int | None = Field(default=2, description="Nodes to keep (None: all, reordered).")
    normalize: bool = Field(default=False, description="Scores as the logit's sigmoid (False: the raw logit).")
    max_length: int = Field(default=512, description="Token limit of one (query, node) pair, specials included.")
    batch_size: int | None = Field(default=None, description="Pairs per forward pass (default the reranker's).")
    keep_retrieval_score: bool = False
    _encoder: CrossEncoder = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: CrossEncoder | None = None,
        device: str | None = None,
        dtype: str | None = None,
        model: str | None = None,
        use_fp16: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if model is not None and model_name is not None and model != model_name:
            raise InputValueError(f"model={model!r} and model_name={model_name!r} name two models; pass one")
        if use_fp16 is not None:  # FlagEmbedding's switch: float16 on a GPU, float32 on a CPU
            from m3rag.encoder.base import resolve_precision  # torch: a local model is loaded anyway

            resolved_device, resolved_dtype = resolve_precision(device, dtype, use_fp16)
            device, dtype = str(resolved_device), str(resolved_dtype).removeprefix("torch.")
        super().__init__(model_name or model, encoder=encoder, device=device, dtype=dtype, **kwargs)
        check_positive_int(self.top_n, "top_n", optional=True)

    @classmethod
    def class_name(cls) -> str:
        return "BGEReranker"

    def _rank(self, query: str, texts: list[str]) -> list[Reranked]:
        return crossencoder_rank(self._encoder, query, texts, **self._options())

    async def _arank(self, query: str, texts: list[str]) -> list[Reranked]:
        return await acrossencoder_rank(self._encoder, query, texts, **self._options())

    def _options(self) -> dict[str, Any]:
        return dict(top_n=self.top_n, normalize=self.normalize, max_length=self.max_length, batch_size=self.batch_size)

    # ------------------------------------------------------------------ as the retriever's cross-encoder
    @property
    def name(self) -> str:
        """The model's name (``model_name``)."""
        return self.model_name

    def compute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        """:meth:`m3rag.BGEReranker.compute_score` with this postprocessor's settings as defaults."""
        return self._encoder.compute_score(sentence_pairs, *self._settings(batch_size, max_length, normalize))

    async def acompute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        """:meth:`compute_score` for asyncio."""
        return await self._encoder.acompute_score(sentence_pairs, *self._settings(batch_size, max_length, normalize))

    def _settings(self, batch_size: int | None, max_length: int | None, normalize: bool | None) -> tuple[int | None, int, bool]:
        return (
            self.batch_size if batch_size is None else batch_size,
            self.max_length if max_length is None else max_length,
            self.normalize if normalize is None else normalize,
        )
