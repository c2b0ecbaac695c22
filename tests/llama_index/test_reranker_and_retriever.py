from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import ExactMatchFilter, FilterOperator, MetadataFilter, MetadataFilters

from m3rag import InputTypeError, InputValueError, rerank
from m3rag.llama_index import M3Embedding, M3Reranker, M3Retriever

from .conftest import DOCS

DOCUMENTS = [Document(text=t, metadata={"i": i, "lang": "en" if i in (0, 1, 5, 6) else "other"}, id_=f"d{i}") for i, t in enumerate(DOCS)]


class _Recorder(BaseEventHandler):
    events: ClassVar[list[object]] = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)


def test_query_engine_with_vector_index_and_m3_reranker(model_name: str) -> None:
    index = VectorStoreIndex.from_documents(DOCUMENTS, embed_model=M3Embedding(model_name))
    reranker = M3Reranker(model_name, top_n=3)
    recorder = _Recorder()
    get_dispatcher().add_event_handler(recorder)
    try:
        question = "How does ColBERT score a query?"
        engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=6, node_postprocessors=[reranker])
        response = engine.query(question)
    finally:
        get_dispatcher().event_handlers.remove(recorder)
    retrieved = index.as_retriever(similarity_top_k=6).retrieve(question)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in retrieved]
    expected = rerank(reranker.encoder, question, texts, top_n=3)
    assert [n.node.node_id for n in response.source_nodes] == [retrieved[r.index].node.node_id for r in expected]
    assert [n.score for n in response.source_nodes] == pytest.approx([r.score for r in expected])
    kinds = [type(e) for e in recorder.events]
    assert ReRankStartEvent in kinds and ReRankEndEvent in kinds


def test_retriever_query_engine_over_m3_retriever(model_name: str) -> None:
    retriever = M3Retriever.from_documents(DOCUMENTS, model_name=model_name, similarity_top_k=3, mode="hybrid", rerank="colbert")
    response = RetrieverQueryEngine.from_args(retriever, llm=MockLLM()).query(DOCS[6])
    hits = retriever.index.search(DOCS[6], 3, mode="hybrid", rerank="colbert")
    assert [n.node.node_id for n in response.source_nodes] == [h.id for h in hits] and hits[0].id == "d6"
    assert [n.score for n in response.source_nodes] == pytest.approx([h.score for h in hits])
    node = response.source_nodes[0].node
    assert node.metadata["m3_scores"]["colbert"] == pytest.approx(hits[0].scores["colbert"])
    assert "m3_scores" not in node.get_content(metadata_mode=MetadataMode.LLM)


def test_retriever_filters_async_and_round_trip(model_name: str, tmp_path: Path) -> None:
    retriever = M3Retriever.from_documents(
        DOCUMENTS,
        model_name=model_name,
        similarity_top_k=10,
        filters=MetadataFilters(filters=[ExactMatchFilter(key="lang", value="en")]),
    )
    assert {n.node.metadata["i"] for n in retriever.retrieve("vectors")} == {0, 1, 5, 6}
    sync = [n.node.node_id for n in retriever.retrieve("sparse vectors")]
    assert [n.node.node_id for n in asyncio.run(retriever.aretrieve("sparse vectors"))] == sync
    retriever.save(tmp_path / "idx")
    loaded = M3Retriever.load(tmp_path / "idx", model_name=model_name, similarity_top_k=10, filters={"lang": "en"})
    assert [n.node.node_id for n in loaded.retrieve("sparse vectors")] == sync
    assert M3Retriever.from_nodes([TextNode(text="a node", id_="n1")], model_name=model_name).retrieve("a node")[0].node.node_id == "n1"


@pytest.mark.service
def test_the_retriever_works_on_a_qdrant_backed_index(model_name: str) -> None:
    from m3rag.stores import QdrantStore

    local = M3Retriever.from_documents(DOCUMENTS, model_name=model_name, similarity_top_k=3, rerank="colbert")
    store = QdrantStore(location=":memory:", collection="llama_index")
    remote = M3Retriever.from_documents(
        DOCUMENTS, model_name=model_name, similarity_top_k=3, rerank="colbert", index_kwargs={"store": store}
    )
    for query in (DOCS[6], "sparse vectors", "检索"):
        want, got = local.retrieve(query), remote.retrieve(query)
        assert [n.node.node_id for n in got] == [n.node.node_id for n in want]
        assert [n.score for n in got] == pytest.approx([n.score for n in want], abs=1e-4)
    filtered = M3Retriever(remote.index, similarity_top_k=10, filters={"lang": "en"})
    assert {n.node.metadata["i"] for n in filtered.retrieve("vectors")} == {0, 1, 5, 6}
    response = RetrieverQueryEngine.from_args(remote, llm=MockLLM()).query(DOCS[6])
    assert response.source_nodes[0].node.node_id == "d6"


def test_bad_input(model_name: str) -> None:
    retriever = M3Retriever.from_documents(DOCUMENTS, model_name=model_name)
    assert retriever.retrieve("") == [] and retriever.retrieve(QueryBundle(query_str="  ")) == []
    with pytest.raises(InputValueError, match="equality"):
        M3Retriever(retriever.index, filters=MetadataFilters(filters=[MetadataFilter(key="i", value=3, operator=FilterOperator.GT)]))
    with pytest.raises(InputValueError):
        M3Retriever(retriever.index, similarity_top_k=0)
    with pytest.raises(InputTypeError, match=r"nodes\[0\]"):
        retriever.add_nodes(["text"])  # type: ignore[list-item]
    reranker = M3Reranker(model_name)
    with pytest.raises(InputValueError, match="needs a query"):
        reranker.postprocess_nodes([NodeWithScore(node=TextNode(text="a"))])
    assert reranker.postprocess_nodes([], query_str="q") == []
    with pytest.raises(InputValueError):
        M3Reranker(model_name, top_n=0)
    empty = NodeWithScore(node=TextNode(text=""), score=0.1)
    assert len(reranker.postprocess_nodes([empty], query_str="q")) == 1  # an empty node is scored, not a crash


def test_langchain_and_llama_index_share_one_encoder(model_name: str, load_counter: list[str]) -> None:
    from m3rag.langchain import M3Embeddings
    from m3rag.langchain import M3Reranker as LCReranker

    objects = [
        M3Embeddings(model_name=model_name),
        LCReranker(model_name=model_name),
        M3Embedding(model_name),
        M3Reranker(model_name),
        M3Retriever.from_documents(DOCUMENTS, model_name=model_name).index,
    ]
    assert len({id(o.encoder) for o in objects}) == 1 and len(load_counter) == 1
