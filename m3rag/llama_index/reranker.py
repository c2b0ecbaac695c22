"""LlamaIndex node postprocessors that rerank: by ColBERT or M3's weighted hybrid score
(:class:`M3Reranker`), and the flow with LlamaIndex's rerank events they share with
:class:`~m3rag.llama_index.BGEReranker`."""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr

from m3rag.encoder.protocol import M3EncoderLike
from m3rag.errors import InputTypeError, InputValueError
from m3rag.llama_index._shared import SharedEncoder
from m3rag.reranking import Reranked, arerank, rerank
from m3rag.validation import check_positive_int

__all__ = ["M3Reranker", "RerankFlow"]

dispatcher = get_dispatcher(__name__)


class RerankFlow:
    """What m3rag's LlamaIndex rerankers share: checks, ``ReRankStartEvent`` / ``ReRankEndEvent`` and
    the ``RERANKING`` callback event, new scores on the nodes. A subclass provides :meth:`_rank` /
    :meth:`_arank` (``query, texts -> ranked``) and the fields ``model_name``, ``top_n`` and
    ``keep_retrieval_score``."""

    model_name: str
    top_n: int | None
    keep_retrieval_score: bool
    callback_manager: CallbackManager

    def _rank(self, query: str, texts: list[str]) -> list[Reranked]:
        raise NotImplementedError

    async def _arank(self, query: str, texts: list[str]) -> list[Reranked]:
        raise NotImplementedError

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        query, texts = self._start(nodes, query_bundle)
        with self._event(nodes, query) as event:
            return self._finish(nodes, self._rank(query, texts) if nodes else [], event)

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        query, texts = self._start(nodes, query_bundle)
        with self._event(nodes, query) as event:
            return self._finish(nodes, await self._arank(query, texts) if nodes else [], event)

    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
        """Check the input, emit ReRankStartEvent; returns the query and the nodes' texts."""
        if query_bundle is None or not isinstance(query_bundle.query_str, str):
            raise InputValueError(f"{type(self).__name__} needs a query: pass query_bundle or query_str")
        check_positive_int(self.top_n, "top_n", optional=True)
        for i, node in enumerate(nodes):
            if not isinstance(node, NodeWithScore):
                raise InputTypeError(f"nodes[{i}] is {type(node).__name__}, not NodeWithScore")
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.model_name))
        return query_bundle.query_str, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    def _event(self, nodes: list[NodeWithScore], query: str) -> Any:
        payload: dict[str, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model_name,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }
        return self.callback_manager.event(CBEventType.RERANKING, payload=payload)

    def _finish(self, nodes: list[NodeWithScore], ranked: list[Reranked], event: Any) -> list[NodeWithScore]:
        """The reranked nodes with their new scores; emits the end events."""
        out = []
        for r in ranked:
            node = nodes[r.index]
            if self.keep_retrieval_score:
                node.node.metadata["retrieval_score"] = node.score
            out.append(NodeWithScore(node=node.node, score=r.score))
        event.on_end(payload={EventPayload.NODES: out})
        dispatcher.event(ReRankEndEvent(nodes=out))
        return out


class M3Reranker(SharedEncoder, RerankFlow, BaseNodePostprocessor):
    """Rerank retrieved nodes by BGE-M3 and keep the ``top_n``; the new score is ``NodeWithScore.score``.

    ``mode="colbert"``: the ColBERT score; ``"hybrid"``: ``(w_d*dense + w_s*sparse + w_c*colbert) /
    (w_d + w_s + w_c)`` (default weights 1, 0.3, 1). Emits LlamaIndex's rerank events like its own
    rerankers. The retrieval score is kept in ``node.metadata["retrieval_score"]`` when
    ``keep_retrieval_score``.

    Example:
        .. code-block:: python

            from m3rag.llama_index import M3Reranker

            engine = index.as_query_engine(similarity_top_k=10, node_postprocessors=[M3Reranker(top_n=3)])
    """

    model_name: str = Field(description="Hub id or local directory of the model.")
    top_n: int | None = Field(default=3, description="Nodes to keep (None: all, reordered).")
    mode: Literal["colbert", "hybrid"] = "colbert"
    weights: list[float] | dict[str, float] | None = None
    keep_retrieval_score: bool = False
    max_length: int = 8192
    query_max_length: int = 512
    _encoder: M3EncoderLike = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: M3EncoderLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name, encoder=encoder, device=device, dtype=dtype, **kwargs)
        check_positive_int(self.top_n, "top_n", optional=True)

    @classmethod
    def class_name(cls) -> str:
        return "M3Reranker"

    def _rank(self, query: str, texts: list[str]) -> list[Reranked]:
        return rerank(self._encoder, query, texts, **self._options())

    async def _arank(self, query: str, texts: list[str]) -> list[Reranked]:
        return await arerank(self._encoder, query, texts, **self._options())

    def _options(self) -> dict[str, Any]:
        return dict(
            mode=self.mode,
            weights=self.weights,
            top_n=self.top_n,
            max_query_length=self.query_max_length,
            max_passage_length=self.max_length,
        )
