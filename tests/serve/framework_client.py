"""A client process of the done-when test: a LangChain chain or a LlamaIndex query engine, run on
``m3rag serve`` and on a local encoder, results written as JSON.

    python framework_client.py langchain|llama_index URL CHECKPOINT OUT.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from m3rag.testing import SAMPLE_TEXTS

DOCS = list(SAMPLE_TEXTS[:60])
IDS = [f"doc-{i}" for i in range(len(DOCS))]
QUESTIONS = [DOCS[5][:50], "dense and sparse retrieval", DOCS[33].split(" ")[0], "检索 模型", DOCS[51][10:70]]


def langchain_run(model_name: str) -> list[dict[str, Any]]:
    """Retrieve (hybrid), rerank (ColBERT), fill a prompt, "answer" with an LLM stand-in that echoes its prompt."""
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from m3rag.langchain import M3Reranker, M3Retriever

    retriever = M3Retriever.from_texts(DOCS, ids=IDS, model_name=model_name, k=6, mode="hybrid")
    reranker = M3Reranker(model_name=model_name, top_n=3, mode="colbert")
    seen: dict[str, Any] = {}

    def retrieve(question: str) -> str:
        docs = reranker.compress_documents(retriever.invoke(question), question)
        seen[question] = [(d.id, d.metadata["relevance_score"]) for d in docs]
        return "\n".join(d.page_content for d in docs)

    prompt = PromptTemplate.from_template("Answer from the context.\nContext:\n{context}\nQuestion: {question}\nAnswer:")
    llm = RunnableLambda(lambda value: value.to_string())  # an LLM stand-in: its answer is its prompt
    chain = {"context": RunnableLambda(retrieve), "question": RunnablePassthrough()} | prompt | llm
    answers = chain.batch(QUESTIONS)  # in threads, concurrently
    return [{"answer": a, "hits": seen[q]} for a, q in zip(answers, QUESTIONS)]


def llama_index_run(model_name: str) -> list[dict[str, Any]]:
    """A RetrieverQueryEngine: hybrid retrieval, M3 hybrid rerank, MockLLM (echoes its prompt)."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import Document

    from m3rag.llama_index import M3Reranker, M3Retriever

    retriever = M3Retriever.from_documents([Document(text=t, id_=i) for t, i in zip(DOCS, IDS)], model_name=model_name, similarity_top_k=6)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(), node_postprocessors=[M3Reranker(model_name=model_name, top_n=3, mode="hybrid")]
    )
    results = []
    for question in QUESTIONS:
        response = engine.query(question)
        results.append({"answer": str(response), "hits": [(n.node.node_id, n.score) for n in response.source_nodes]})
    return results


def main() -> None:
    kind, url, checkpoint, out = sys.argv[1:5]
    run = langchain_run if kind == "langchain" else llama_index_run
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"remote": run(url), "local": run(checkpoint)}, f)


if __name__ == "__main__":
    main()
