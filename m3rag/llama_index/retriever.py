"""A LlamaIndex retriever over M3Index: dense, sparse or hybrid, with optional reranking and a
cross-encoder stage. The retriever only translates: every rule is the index's."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters

from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
from m3rag.encoder.resolve import resolve_reranker
from m3rag.errors import InputTypeError, InputValueError
from m3rag.index import M3Index, SearchHit
from m3rag.validation import check_positive_int

__all__ = ["M3Retriever", "hit_to_node"]

_SCORES_KEY = "m3_scores"


def hit_to_node(hit: SearchHit) -> NodeWithScore:
    """A node of a hit; each mode's score in ``metadata["m3_scores"]`` (hidden from LLM and embedding)."""
    node = TextNode(
        id_=hit.id,
        text=hit.text,
        metadata={**hit.metadata, _SCORES_KEY: dict(hit.scores)},
        excluded_llm_metadata_keys=[_SCORES_KEY],
        excluded_embed_metadata_keys=[_SCORES_KEY],
    )
    return NodeWithScore(node=node, score=hit.score)


def _equality_filter(filters: MetadataFilters | dict[str, Any] | None) -> dict[str, Any] | None:
    """LlamaIndex ``MetadataFilters`` (equality, AND) or a plain dict -> ``{field: value}``."""
    if filters is None or isinstance(filters, dict):
        return filters
    if not isinstance(filters, MetadataFilters):
        raise InputTypeError(f"filters must be MetadataFilters or a dict, got {type(filters).__name__}")
    result: dict[str, Any] = {}
    for f in filters.filters:
        if isinstance(f, MetadataFilters) or f.operator != FilterOperator.EQ:
            raise InputValueError("M3Retriever supports equality filters only (FilterOperator.EQ, combined with AND)")
        result[f.key] = f.value
    if len(filters.filters) > 1 and filters.condition not in (None, FilterCondition.AND):
        raise InputValueError("M3Retriever combines filters with AND only")
    return result


class M3Retriever(BaseRetriever):
    """Retrieve nodes from an :class:`~m3rag.M3Index` (the same index class the LangChain retriever uses).

    Example:
        .. code-block:: python

            from llama_index.core.query_engine import RetrieverQueryEngine
            from m3rag.llama_index import M3Retriever

            retriever = M3Retriever.from_documents(documents, model_name="BAAI/bge-m3",
                                                   similarity_top_k=5, mode="hybrid", rerank="colbert")
            engine = RetrieverQueryEngine.from_args(retriever)

    An empty query returns no nodes (the index's rule). ``filters``: ``MetadataFilters`` of equality
    filters, or a dict. ``reranker``: a cross-encoder stage after the first ``candidates`` hits (the
    model card's pipeline): a :class:`m3rag.BGEReranker`, a :class:`~m3rag.llama_index.BGEReranker`
    or a reranker model name; its score becomes the node's score (``m3_scores["reranker"]``).
    """

    def __init__(
        self,
        index: M3Index,
        *,
        similarity_top_k: int = 4,
        mode: Literal["dense", "sparse", "hybrid"] = "hybrid",
        weights: Sequence[float] | dict[str, float] | None = None,
        fusion: Literal["weighted", "rrf"] = "weighted",
        rerank: Literal["colbert", "hybrid"] | None = None,
        candidates: int | None = None,
        filters: MetadataFilters | dict[str, Any] | None = None,
        reranker: RerankerLike | str | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(index, M3Index):
            raise InputTypeError(f"index must be an M3Index, got {type(index).__name__}")
        self.index = index
        self.similarity_top_k = check_positive_int(similarity_top_k, "similarity_top_k")
        self.reranker = resolve_reranker(reranker)
        self.search_kwargs: dict[str, Any] = dict(mode=mode, weights=weights, fusion=fusion, rerank=rerank, candidates=candidates)
        self.filters = _equality_filter(filters)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.index.search(query_bundle.query_str, self.similarity_top_k, **self._search_args())
        return [hit_to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self.index.asearch(query_bundle.query_str, self.similarity_top_k, **self._search_args())
        return [hit_to_node(hit) for hit in hits]

    def _search_args(self) -> dict[str, Any]:
        return dict(filter=self.filters, reranker=self.reranker, **self.search_kwargs)

    def add_nodes(self, nodes: Sequence[BaseNode], *, upsert: bool = False) -> list[str]:
        """Add nodes (or Documents): text from ``get_content()``, id ``node_id``, ``metadata``."""
        texts, ids, metas = _unpack(nodes)
        return self.index.add(texts, ids=ids, metadatas=metas, upsert=upsert)

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[BaseNode],
        *,
        encoder: M3EncoderLike | None = None,
        model_name: str | None = None,
        index_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> M3Retriever:
        """Index LlamaIndex ``Document``s or nodes in a new :class:`~m3rag.M3Index` (:meth:`M3Index.from_texts`,
        on the shared encoder of ``model_name``) and retrieve from it."""
        texts, ids, metadatas = _unpack(documents)
        index = M3Index.from_texts(
            texts, encoder if encoder is not None else model_name, ids=ids, metadatas=metadatas, **(index_kwargs or {})
        )
        return cls(index, **kwargs)

    from_nodes = from_documents

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the index (atomically) to ``path``."""
        self.index.save(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, encoder: M3EncoderLike | None = None, model_name: str | None = None, **kwargs: Any
    ) -> M3Retriever:
        """A retriever over the index saved at ``path`` (:meth:`M3Index.load`): on ``encoder``, or
        the shared encoder of ``model_name``, or without either the model its manifest names."""
        return cls(M3Index.load(path, encoder if encoder is not None else model_name), **kwargs)


def _unpack(nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    given: object = nodes  # callers may pass anything
    if isinstance(given, BaseNode) or not isinstance(given, Sequence):
        raise InputTypeError(f"nodes must be a sequence of nodes or Documents, got {type(given).__name__}")
    for i, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            raise InputTypeError(f"nodes[{i}] is {type(node).__name__}, not a LlamaIndex node or Document")
    return (
        [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes],
        [n.node_id for n in nodes],
        [dict(n.metadata) for n in nodes],
    )
