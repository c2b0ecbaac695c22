"""LlamaIndex's BGE classes: BGEEmbedding, the BGEReranker node postprocessor (with LlamaIndex's
rerank events), and M3Retriever's cross-encoder stage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from pydantic import Field

from m3rag import BGEEncoder, InputTypeError, InputValueError
from m3rag import BGEReranker as CrossEncoder
from m3rag.encoder import BGE_EN_QUERY_INSTRUCTION
from m3rag.llama_index import BGEEmbedding, BGEReranker, M3Embedding, M3Retriever
from m3rag.reranking import crossencoder_rank
from tests.helpers import FRAMEWORK_DOCS as DOCS

DOCUMENTS = [Document(text=t, metadata={"i": i}, id_=f"d{i}") for i, t in enumerate(DOCS)]


class _Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=t, id_=f"n{i}", metadata={"i": i}), score=1.0 - i / 10) for i, t in enumerate(DOCS)]


# ------------------------------------------------------------------------------------- embeddings
def test_embedding_equals_the_encoder_with_instructions(bert_checkpoint: Path, tmp_path: Path) -> None:
    named = tmp_path / "bge-small-en-v1.5"
    named.symlink_to(bert_checkpoint, target_is_directory=True)
    emb = BGEEmbedding(str(named))
    assert emb.query_instruction == BGE_EN_QUERY_INSTRUCTION and emb.class_name() == "BGEEmbedding"
    enc = emb.encoder
    np.testing.assert_allclose(emb.get_query_embedding(DOCS[0]), enc.encode(BGE_EN_QUERY_INSTRUCTION + DOCS[0]), atol=1e-6)
    np.testing.assert_allclose(emb.get_text_embedding_batch(DOCS), enc.encode(DOCS), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_query_embedding(DOCS[0])), emb.get_query_embedding(DOCS[0]), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_text_embedding_batch(DOCS)), enc.encode(DOCS), atol=1e-6)
    custom = BGEEmbedding(str(bert_checkpoint), query_instruction="Q: ", text_instruction="T: ", normalize=False)
    np.testing.assert_allclose(custom.get_query_embedding("x"), enc.encode("Q: x", normalize_embeddings=False), atol=1e-6)
    np.testing.assert_allclose(custom.get_text_embedding("x"), enc.encode("T: x", normalize_embeddings=False), atol=1e-6)
    assert BGEEmbedding(str(bert_checkpoint)).query_instruction == ""  # no family in the name: none
    given = BGEEncoder(bert_checkpoint, device="cpu")
    assert BGEEmbedding(encoder=given).encoder is given and BGEEmbedding(encoder=given).model_name == given.name
    with pytest.raises(InputTypeError, match="encoder must be a BGEEncoder"):
        BGEEmbedding(encoder="not an encoder")


def test_embedding_in_a_vector_store_index(bert_checkpoint: Path) -> None:
    previous = Settings._embed_model
    try:
        Settings.embed_model = BGEEmbedding(str(bert_checkpoint), query_instruction="")
        index = VectorStoreIndex.from_documents(DOCUMENTS)
        assert index.as_retriever(similarity_top_k=1).retrieve(DOCS[4])[0].node.get_content() == DOCS[4]
    finally:
        Settings._embed_model = previous


# --------------------------------------------------------------------------------------- reranker
def test_reranker_scores_like_flagembedding_reranker_and_emits_events(reranker_checkpoint: Path) -> None:
    debug = LlamaDebugHandler()
    reranker = BGEReranker(model=str(reranker_checkpoint), callback_manager=CallbackManager([debug]))  # FlagEmbeddingReranker's names
    assert reranker.top_n == 2 and reranker.model_name == str(reranker_checkpoint)
    recorder = _Recorder()
    get_dispatcher().add_event_handler(recorder)
    query = "How does ColBERT score a query?"
    try:
        got = reranker.postprocess_nodes(_nodes(), query_str=query)
    finally:
        get_dispatcher().event_handlers.remove(recorder)
    logits = reranker.encoder.compute_score([(query, n.node.get_content(metadata_mode=MetadataMode.EMBED)) for n in _nodes()])
    expected = sorted(range(len(DOCS)), key=lambda i: -logits[i])[:2]
    assert [n.node.metadata["i"] for n in got] == expected
    assert [n.score for n in got] == pytest.approx([logits[i] for i in expected])  # raw logits, as FlagEmbeddingReranker
    kinds = [type(e) for e in recorder.events]
    assert ReRankStartEvent in kinds and ReRankEndEvent in kinds
    assert [e.model_name for e in recorder.events if isinstance(e, ReRankStartEvent)] == [str(reranker_checkpoint)]
    assert len(debug.get_event_pairs(CBEventType.RERANKING)) == 1
    again = asyncio.run(reranker.apostprocess_nodes(_nodes(), query_bundle=QueryBundle(query)))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in got]
    keep = BGEReranker(str(reranker_checkpoint), top_n=None, normalize=True, keep_retrieval_score=True).postprocess_nodes(
        _nodes(), query_str=query
    )
    assert len(keep) == len(DOCS) and all(0 < n.score < 1 for n in keep)  # type: ignore[operator]
    assert {n.node.metadata["retrieval_score"] for n in keep} == {n.score for n in _nodes()}


def test_reranker_bad_input(reranker_checkpoint: Path, bert_checkpoint: Path) -> None:
    reranker = BGEReranker(str(reranker_checkpoint))
    assert reranker.postprocess_nodes([], query_str="q") == []
    with pytest.raises(InputValueError, match="needs a query"):
        reranker.postprocess_nodes(_nodes())
    with pytest.raises(InputTypeError, match=r"nodes\[0\]"):
        reranker.postprocess_nodes(["x"], query_str="q")  # type: ignore[list-item]
    with pytest.raises(InputValueError):
        BGEReranker(str(reranker_checkpoint), top_n=0)
    with pytest.raises(InputValueError, match="name two models"):
        BGEReranker("a", model="b")
    with pytest.raises(ValueError, match="not a cross-encoder"):
        BGEReranker(str(bert_checkpoint))
    assert str(BGEReranker(str(reranker_checkpoint), use_fp16=True).encoder.dtype) == "torch.float32"  # FlagEmbedding: fp16 on GPUs only


def test_query_engine_retrieve_with_m3_then_rerank(model_name: str, reranker_checkpoint: Path) -> None:
    index = VectorStoreIndex.from_documents(DOCUMENTS, embed_model=M3Embedding(model_name))
    reranker = BGEReranker(str(reranker_checkpoint), top_n=3)
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=6, node_postprocessors=[reranker]).query("dense and sparse vectors")
    assert len(response.source_nodes) == 3
    scores = [n.score for n in response.source_nodes]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]


# ------------------------------------------------------------------------------ two-stage pipeline
def test_retriever_with_a_cross_encoder_stage(model_name: str, reranker_checkpoint: Path) -> None:
    postprocessor = BGEReranker(str(reranker_checkpoint), normalize=True)
    query = "dense and sparse vectors"
    for reranker in (postprocessor, str(reranker_checkpoint), CrossEncoder.shared(reranker_checkpoint)):
        retriever = M3Retriever.from_documents(DOCUMENTS, model_name=model_name, similarity_top_k=3, candidates=6, reranker=reranker)
        got = retriever.retrieve(query)
        first = retriever.index.search(query, 6, candidates=6)
        ranked = crossencoder_rank(retriever.reranker, query, [h.text for h in first], top_n=3)  # type: ignore[arg-type]
        assert [n.node.node_id for n in got] == [first[r.index].id for r in ranked]
        assert [n.score for n in got] == pytest.approx([r.score for r in ranked])
        assert all(n.node.metadata["m3_scores"]["reranker"] == n.score for n in got)
        assert [n.node.node_id for n in asyncio.run(retriever.aretrieve(query))] == [n.node.node_id for n in got]
    assert all(0 < n.score < 1 for n in M3Retriever(retriever.index, reranker=postprocessor).retrieve(query))  # type: ignore[operator]
    with pytest.raises(InputTypeError, match="reranker"):
        M3Retriever(retriever.index, reranker=3)  # type: ignore[arg-type]


def test_load_without_a_model_uses_the_manifests(model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    M3Retriever.from_documents(DOCUMENTS, model_name=model_name).save(tmp_path / "idx")
    monkeypatch.setenv("M3RAG_MODEL", str(tmp_path / "no-such-model"))
    loaded = M3Retriever.load(tmp_path / "idx", similarity_top_k=1)
    assert loaded.index.encoder.name == model_name and loaded.retrieve(DOCS[3])[0].node.node_id == "d3"
    assert loaded.retrieve("   ") == []  # the index's rule
