"""LangChain's BGE classes: BGEEmbeddings (a drop-in for HuggingFaceBgeEmbeddings) and the
BGEReranker document compressor, also as M3Retriever's cross-encoder stage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from m3rag import BGEEncoder, InputTypeError, InputValueError
from m3rag import BGEReranker as CrossEncoder
from m3rag.encoder import BGE_EN_QUERY_INSTRUCTION
from m3rag.encoder.reranker import sigmoid
from m3rag.langchain import BGEEmbeddings, BGEReranker, M3Retriever
from m3rag.reranking import crossencoder_rank
from tests.helpers import FRAMEWORK_DOCS as DOCS
from tests.reference import reference


@pytest.fixture(scope="module")
def bge_en(bert_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BERT checkpoint under a bge-*-en-v1.5 name, so the family instruction applies."""
    link = tmp_path_factory.mktemp("named") / "bge-small-en-v1.5"
    link.symlink_to(bert_checkpoint, target_is_directory=True)
    return link


class _Params:
    @pytest.fixture(autouse=True)
    def _model(self, bert_checkpoint: Path) -> None:
        self._model_name = str(bert_checkpoint)

    @property
    def embeddings_class(self) -> type[BGEEmbeddings]:
        return BGEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": self._model_name}


class TestBGEEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        return {"M3RAG_DENSE_MODEL": self._model_name}, {}, {"model_name": self._model_name}


class TestBGEEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass


# ------------------------------------------------------------------------------------- embeddings
@pytest.mark.parity
def test_equals_flagmodel_with_the_family_instruction(bge_en: Path) -> None:
    emb = BGEEmbeddings(model_name=str(bge_en))
    assert emb.query_instruction == BGE_EN_QUERY_INSTRUCTION and emb.embed_instruction == ""
    flag = reference("FlagEmbedding", "FlagModel")(
        str(bge_en), use_fp16=False, devices="cpu", query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION
    )
    np.testing.assert_allclose(emb.embed_documents(DOCS), flag.encode_corpus(DOCS), atol=1e-5)
    np.testing.assert_allclose([emb.embed_query(q) for q in DOCS[:3]], flag.encode_queries(DOCS[:3]), atol=1e-5)


def test_huggingface_bge_embeddings_arguments(bert_checkpoint: Path) -> None:
    emb = BGEEmbeddings(
        model_name=str(bert_checkpoint),
        query_instruction="Q: ",
        embed_instruction="D: ",
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": False, "batch_size": 4, "show_progress_bar": False},
    )
    assert (emb.device, emb.normalize_embeddings, emb.batch_size, emb.show_progress) == ("cpu", False, 4, False)
    enc = emb.instance
    np.testing.assert_allclose(emb.embed_query("x"), enc.encode("Q: x", normalize_embeddings=False), atol=1e-6)
    np.testing.assert_allclose(
        emb.embed_documents(DOCS[:2]), enc.encode(["D: " + d for d in DOCS[:2]], normalize_embeddings=False), atol=1e-6
    )
    assert BGEEmbeddings(model_name=str(bert_checkpoint)).query_instruction == ""  # no family in the name: none
    plain = BGEEmbeddings(model_name=str(bert_checkpoint), query_instruction="")
    np.testing.assert_allclose(plain.embed_query(DOCS[0]), plain.embed_documents([DOCS[0]])[0], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aembed_documents(DOCS)), emb.embed_documents(DOCS), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aembed_query("x")), emb.embed_query("x"), atol=1e-6)


def test_keys_without_a_meaning_are_refused_by_name(bert_checkpoint: Path) -> None:
    with pytest.raises(InputTypeError, match=r"encode_kwargs\['precision'\]"):
        BGEEmbeddings(model_name=str(bert_checkpoint), encode_kwargs={"precision": "int8"})
    with pytest.raises(InputTypeError, match=r"model_kwargs\['trust_remote_code'\]"):
        BGEEmbeddings(model_name=str(bert_checkpoint), model_kwargs={"trust_remote_code": True})
    with pytest.raises(InputValueError, match="batch_size is given twice"):
        BGEEmbeddings(model_name=str(bert_checkpoint), batch_size=8, encode_kwargs={"batch_size": 16})


def test_given_an_encoder_model_name_is_its_name(bert_checkpoint: Path) -> None:
    enc = BGEEncoder(bert_checkpoint, device="cpu")
    emb = BGEEmbeddings(encoder=enc, model_name="ignored")
    assert emb.instance is enc and emb.model_name == enc.name == str(bert_checkpoint)
    assert BGEEmbeddings(model_name=str(bert_checkpoint)).instance is BGEEncoder.shared(bert_checkpoint)


# -------------------------------------------------------------------------------------- reranker
def _docs() -> list[Document]:
    return [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(DOCS)]


def test_reranker_orders_like_the_cross_encoder(reranker_checkpoint: Path) -> None:
    reranker = BGEReranker(model_name=str(reranker_checkpoint), top_n=4)
    query = "How does ColBERT score a query?"
    got = reranker.compress_documents(_docs(), query)
    logits = reranker.instance.compute_score([(query, d) for d in DOCS])
    expected = sorted(range(len(DOCS)), key=lambda i: -logits[i])[:4]
    assert [d.metadata["i"] for d in got] == expected
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx(sigmoid(np.array(logits)[expected]).tolist())  # sigmoid by default
    raw = BGEReranker(model_name=str(reranker_checkpoint), top_n=None, normalize=False).compress_documents(_docs(), query)
    assert [d.metadata["relevance_score"] for d in raw] == pytest.approx(sorted(logits, reverse=True))
    assert asyncio.run(reranker.acompress_documents(_docs(), query)) == got
    assert reranker.compress_documents([], query) == []


def test_reranker_bad_input(reranker_checkpoint: Path, bert_checkpoint: Path) -> None:
    reranker = BGEReranker(model_name=str(reranker_checkpoint))
    with pytest.raises(InputTypeError, match=r"documents\[1\]"):
        reranker.compress_documents([Document(page_content="a"), "b"], "q")  # type: ignore[list-item]
    with pytest.raises(InputValueError):
        BGEReranker(model_name=str(reranker_checkpoint), top_n=0).compress_documents(_docs(), "q")
    with pytest.raises(InputTypeError):
        reranker.compress_documents(_docs(), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a cross-encoder"):  # an embedder's checkpoint: ModelKindError
        BGEReranker(model_name=str(bert_checkpoint))


# ------------------------------------------------------------------------------ two-stage pipeline
def test_retriever_with_a_cross_encoder_stage(model_name: str, reranker_checkpoint: Path) -> None:
    metas = [{"i": i} for i in range(len(DOCS))]
    compressor = BGEReranker(model_name=str(reranker_checkpoint), top_n=3)
    for reranker in (compressor, str(reranker_checkpoint), CrossEncoder.shared(reranker_checkpoint)):
        retriever = M3Retriever.from_texts(DOCS, metas, model_name=model_name, k=3, candidates=6, mode="hybrid", reranker=reranker)
        query = "dense and sparse vectors"
        docs = retriever.invoke(query)
        first = retriever.index.search(query, 6, candidates=6)
        ranked = crossencoder_rank(
            retriever.reranker,
            query,
            [h.text for h in first],
            top_n=3,  # type: ignore[arg-type]
        )
        assert [d.metadata["i"] for d in docs] == [first[r.index].metadata["i"] for r in ranked]
        assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([r.score for r in ranked])
        assert all(d.metadata["m3_scores"]["reranker"] == d.metadata["relevance_score"] for d in docs)
    # the compressor scores with its own settings (sigmoid): the same numbers as compressing the first stage
    retriever = M3Retriever.from_texts(DOCS, metas, model_name=model_name, k=3, candidates=6, reranker=compressor)
    first_docs = M3Retriever(index=retriever.index, k=6, candidates=6).invoke("dense and sparse vectors")
    expected = compressor.compress_documents(first_docs, "dense and sparse vectors")
    got = retriever.invoke("dense and sparse vectors")
    assert [d.id for d in got] == [d.id for d in expected]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([d.metadata["relevance_score"] for d in expected])
    assert retriever.invoke("dense", reranker=None)[0].metadata["m3_scores"].get("reranker") is None  # off per call
    with pytest.raises(InputTypeError, match="reranker"):
        retriever.invoke("dense", reranker=3)
