from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from m3rag import InputTypeError, InputValueError, M3Encoder, M3Index
from m3rag.langchain import M3Retriever

from .conftest import DOCS

METAS = [{"i": i, "lang": "en" if i in (0, 1, 5, 6) else "other"} for i in range(len(DOCS))]


@pytest.fixture
def retriever(model_name: str) -> M3Retriever:
    return M3Retriever.from_texts(DOCS, METAS, [f"d{i}" for i in range(len(DOCS))], model_name=model_name, k=3)


class TestM3RetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _model(self, model_name: str) -> None:
        self._model_name = model_name

    @property
    def retriever_constructor(self) -> type[M3Retriever]:
        return M3Retriever

    @property
    def retriever_constructor_params(self) -> dict:
        index = M3Index(M3Encoder.shared(self._model_name))
        index.add(DOCS)
        return {"index": index}

    @property
    def retriever_query_example(self) -> str:
        return "hybrid search with sparse vectors"


def test_documents_are_the_index_hits_with_scores(retriever: M3Retriever) -> None:
    for kwargs in ({}, {"mode": "dense"}, {"mode": "sparse"}, {"rerank": "colbert"}, {"rerank": "hybrid", "fusion": "rrf"}):
        docs = retriever.invoke(DOCS[5], **kwargs)
        args = {"k": 3, "mode": "hybrid", **kwargs}
        hits = retriever.index.search(DOCS[5], **args)
        assert [d.id for d in docs] == [h.id for h in hits]
        for doc, hit in zip(docs, hits):
            assert doc.page_content == hit.text and doc.metadata["i"] == hit.metadata["i"]
            assert doc.metadata["relevance_score"] == pytest.approx(hit.score)
            assert doc.metadata["m3_scores"] == pytest.approx(hit.scores)
    assert retriever.invoke(DOCS[5])[0].id == "d5"


def test_k_and_filter_per_call_and_in_constructor(retriever: M3Retriever) -> None:
    assert len(retriever.invoke("vectors", k=1)) == 1
    docs = retriever.invoke("vectors", k=10, filter={"lang": "en"})
    assert {d.metadata["i"] for d in docs} == {0, 1, 5, 6}
    narrowed = M3Retriever(index=retriever.index, k=2, filter={"lang": "other"})
    assert all(d.metadata["lang"] == "other" for d in narrowed.invoke("vectors"))


def test_async_matches_sync(retriever: M3Retriever) -> None:
    sync = retriever.invoke(DOCS[2], rerank="colbert")
    got = asyncio.run(retriever.ainvoke(DOCS[2], rerank="colbert"))
    assert [d.id for d in got] == [d.id for d in sync]


def test_from_documents_keeps_ids_and_metadata_and_round_trips(model_name: str, tmp_path: Path) -> None:
    docs = [Document(page_content=t, metadata={"i": i}, id=f"x{i}") for i, t in enumerate(DOCS)]
    retriever = M3Retriever.from_documents(docs, model_name=model_name, k=2, mode="dense")
    assert retriever.index.ids == [f"x{i}" for i in range(len(DOCS))]
    retriever.save(tmp_path / "idx")
    loaded = M3Retriever.load(tmp_path / "idx", model_name=model_name, k=2, mode="dense")
    assert loaded.index.encoder is retriever.index.encoder
    assert [d.id for d in loaded.invoke(DOCS[3])] == [d.id for d in retriever.invoke(DOCS[3])]
    assert loaded.invoke(DOCS[3])[0].metadata["i"] == 3
    loaded.add_documents([Document(page_content="brand new text", id="new")])
    assert loaded.invoke("brand new text", k=1)[0].id == "new"


def test_bad_input(retriever: M3Retriever, model_name: str) -> None:
    assert retriever.invoke("") == [] and retriever.invoke("   ") == []
    with pytest.raises(InputValueError):
        retriever.invoke("q", k=0)
    with pytest.raises(InputTypeError, match="unknown search arguments"):
        retriever.invoke("q", top=3)
    with pytest.raises(InputTypeError):
        retriever.invoke(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="documents"):
        M3Retriever.from_documents(["not a document"], model_name=model_name)  # type: ignore[list-item]
    empty = M3Retriever(index=M3Index(M3Encoder.shared(model_name)))
    assert empty.invoke("anything") == []


@pytest.mark.service
async def test_the_retriever_works_on_a_qdrant_backed_index(model_name: str) -> None:
    from m3rag.stores import QdrantStore

    ids = [f"d{i}" for i in range(len(DOCS))]
    local = M3Retriever.from_texts(DOCS, METAS, ids, model_name=model_name, k=3)
    store = QdrantStore(location=":memory:", collection="langchain")
    remote = M3Retriever.from_texts(DOCS, METAS, ids, model_name=model_name, k=3, index_kwargs={"store": store})
    for kwargs in ({}, {"mode": "sparse"}, {"rerank": "colbert", "filter": {"lang": "en"}}, {"rerank": "hybrid", "fusion": "rrf"}):
        want, got = local.invoke(DOCS[5], **kwargs), remote.invoke(DOCS[5], **kwargs)
        assert [d.id for d in got] == [d.id for d in want] and [d.page_content for d in got] == [d.page_content for d in want]
        assert [d.metadata["relevance_score"] for d in got] == pytest.approx([d.metadata["relevance_score"] for d in want], abs=1e-4)
    assert [d.id for d in await remote.ainvoke("sparse vectors")] == [d.id for d in local.invoke("sparse vectors")]
    for retriever in (local, remote):
        assert retriever.add_documents([Document(page_content="Qdrant keeps the ColBERT multivector.", id="q")]) == ["q"]
    assert [d.id for d in remote.invoke("ColBERT multivector", k=8)] == [d.id for d in local.invoke("ColBERT multivector", k=8)]


def test_the_retriever_only_translates(retriever: M3Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank queries, argument checks and search are the index's: the retriever passes every query on."""
    seen: list[str] = []
    real = retriever.index.search

    def spy(query: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return real(query, *args, **kwargs)

    monkeypatch.setattr(retriever.index, "search", spy)
    assert retriever.invoke("   ") == [] and seen == ["   "]


def test_load_without_a_model_uses_the_manifests(model_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    M3Retriever.from_texts(DOCS, model_name=model_name, k=1).save(tmp_path / "idx")
    monkeypatch.setenv("M3RAG_MODEL", str(tmp_path / "no-such-model"))  # not what the index was built with
    loaded = M3Retriever.load(tmp_path / "idx", k=1)
    assert loaded.index.encoder.name == model_name
    assert loaded.invoke(DOCS[2])[0].page_content == DOCS[2]
