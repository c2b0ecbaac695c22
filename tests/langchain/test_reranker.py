from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from m3rag import InputTypeError, InputValueError, rerank
from m3rag.langchain import M3Embeddings, M3Reranker, M3Retriever

from .conftest import DOCS


def _docs() -> list[Document]:
    return [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(DOCS)]


@pytest.mark.parametrize("mode", ["colbert", "hybrid"])
def test_order_and_scores_equal_the_core_rerank(model_name: str, mode: str) -> None:
    reranker = M3Reranker(model_name=model_name, mode=mode, top_n=4)  # type: ignore[arg-type]
    query = "dense and sparse vectors"
    docs = _docs()
    got = reranker.compress_documents(docs, query)
    ref = rerank(reranker.encoder, query, DOCS, mode=mode, top_n=4)  # type: ignore[arg-type]
    assert [d.metadata["i"] for d in got] == [r.index for r in ref]
    assert [d.metadata["relevance_score"] for d in got] == pytest.approx([r.score for r in ref])
    assert all("relevance_score" not in d.metadata for d in docs)  # inputs untouched


def test_reranks_any_retriever(model_name: str) -> None:
    store = InMemoryVectorStore.from_texts(DOCS, DeterministicFakeEmbedding(size=16))
    reranker = M3Reranker(model_name=model_name, top_n=None)
    retrieved = store.as_retriever(search_kwargs={"k": 5}).invoke(DOCS[6])
    got = reranker.compress_documents(retrieved, DOCS[6])
    assert len(got) == len(retrieved)
    scores = [d.metadata["relevance_score"] for d in got]
    assert scores == sorted(scores, reverse=True)
    assert asyncio.run(reranker.acompress_documents(retrieved, DOCS[6])) == got


def test_bad_input(model_name: str) -> None:
    reranker = M3Reranker(model_name=model_name)
    assert reranker.compress_documents([], "q") == []
    with pytest.raises(InputTypeError, match=r"documents\[1\]"):
        reranker.compress_documents([Document(page_content="a"), "b"], "q")  # type: ignore[list-item]
    with pytest.raises(InputValueError):
        M3Reranker(model_name=model_name, top_n=0).compress_documents(_docs(), "q")
    with pytest.raises(InputTypeError):
        reranker.compress_documents(_docs(), None)  # type: ignore[arg-type]


def test_lcel_rag_chain_gets_the_reranked_context_in_order(model_name: str) -> None:
    retriever = M3Retriever.from_texts(DOCS, [{"i": i} for i in range(len(DOCS))], model_name=model_name, k=5, mode="hybrid")
    reranker = M3Reranker(model_name=model_name, top_n=3)
    question = "How does ColBERT score a query?"
    expected = reranker.compress_documents(retriever.invoke(question), question)
    seen: list[Any] = []

    def spy(prompt_value: Any) -> Any:
        seen.append(prompt_value.to_string())
        return prompt_value

    prompt = ChatPromptTemplate.from_template("Answer from the context.\n{context}\nQuestion: {question}")
    chain = (
        {
            "context": RunnableLambda(lambda q: reranker.compress_documents(retriever.invoke(q), q))
            | RunnableLambda(lambda docs: "\n".join(f"[{d.metadata['i']}] {d.page_content}" for d in docs)),
            "question": RunnableLambda(lambda q: q),
        }
        | prompt
        | RunnableLambda(spy)
        | FakeListChatModel(responses=["ColBERT takes, for each query token, its best match."])
        | StrOutputParser()
    )
    assert chain.invoke(question) == "ColBERT takes, for each query token, its best match."
    text = seen[0]
    positions = [text.index(f"[{d.metadata['i']}] {d.page_content}") for d in expected]
    assert positions == sorted(positions) and len(expected) == 3
    kept = {d.metadata["i"] for d in expected}
    assert all(f"[{i}] " not in text for i in range(len(DOCS)) if i not in kept)


def test_classes_built_from_one_model_name_share_one_encoder(model_name: str, load_counter: list[str], tmp_path: Path) -> None:
    emb = M3Embeddings(model_name=model_name)
    retriever = M3Retriever.from_texts(DOCS, model_name=model_name)
    reranker = M3Reranker(model_name=model_name)
    assert emb.encoder is retriever.index.encoder is reranker.encoder
    assert len(load_counter) == 1
