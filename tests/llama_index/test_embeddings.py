from __future__ import annotations

import asyncio

import numpy as np
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base_sparse import sparse_similarity

from m3rag import InputTypeError, scoring
from m3rag.llama_index import M3Embedding, M3SparseEmbedding

from .conftest import DOCS


def test_dense_embeddings_equal_the_encoders(model_name: str) -> None:
    emb = M3Embedding(model_name)
    enc = emb.encoder
    np.testing.assert_allclose(emb.get_text_embedding_batch(DOCS), enc.encode(DOCS).dense, atol=1e-6)
    np.testing.assert_allclose(emb.get_query_embedding(DOCS[0]), enc.encode_queries(DOCS[0]).dense_vecs, atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_query_embedding(DOCS[0])), emb.get_query_embedding(DOCS[0]), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(emb.aget_text_embedding_batch(DOCS)), enc.encode(DOCS).dense, atol=1e-6)
    assert emb.class_name() == "M3Embedding" and emb.model_name == model_name


def test_embed_batch_size_is_honoured(model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    emb = M3Embedding(model_name, embed_batch_size=3)
    sizes: list[int] = []
    real = emb.encoder.encode
    monkeypatch.setattr(emb.encoder, "encode", lambda texts, *a, **k: sizes.append(len(texts)) or real(texts, *a, **k))
    emb.get_text_embedding_batch(DOCS)
    assert sizes == [3, 3, 1]


def test_works_as_settings_embed_model_in_vector_store_index(model_name: str) -> None:
    previous = Settings._embed_model
    try:
        Settings.embed_model = M3Embedding(model_name)
        index = VectorStoreIndex.from_documents([Document(text=t) for t in DOCS])
        nodes = index.as_retriever(similarity_top_k=1).retrieve(DOCS[4])
        assert nodes[0].node.get_content() == DOCS[4]
    finally:
        Settings._embed_model = previous


def test_sparse_embedding_is_int_keyed_lexical_weights_with_dot_product(model_name: str) -> None:
    sparse = M3SparseEmbedding(model_name)
    ref = sparse.encoder.encode(DOCS, return_dense=False, return_sparse=True).lexical_weights
    got = sparse.get_text_embedding_batch(DOCS)
    assert got == ref and all(isinstance(k, int) for w in got for k in w)
    q = sparse.get_query_embedding(DOCS[1])
    assert q == sparse.encoder.encode_queries(DOCS[1], return_dense=False, return_sparse=True).lexical_weights
    assert asyncio.run(sparse.aget_query_embedding(DOCS[1])) == q
    for d in got:
        assert sparse.similarity(q, d) == pytest.approx(scoring.lexical_matching_score(q, d))
    assert sparse.similarity(q, got[1]) != pytest.approx(sparse_similarity(q, got[1]))  # not LlamaIndex's cosine


def test_sparse_fns_have_qdrants_shape(model_name: str) -> None:
    sparse = M3SparseEmbedding(model_name)
    indices, values = sparse.sparse_doc_fn(DOCS[:3])
    assert len(indices) == len(values) == 3
    for ids, vals, ref in zip(indices, values, sparse.get_text_embedding_batch(DOCS[:3])):
        assert dict(zip(ids, vals)) == ref
    q_ids, q_vals = sparse.sparse_query_fn([DOCS[0]])
    assert dict(zip(q_ids[0], q_vals[0])) == sparse.get_query_embedding(DOCS[0])


def test_qdrant_hybrid_end_to_end(model_name: str) -> None:
    from llama_index.core import StorageContext
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    sparse = M3SparseEmbedding(model_name)
    store = QdrantVectorStore(
        "m3",
        client=QdrantClient(":memory:"),
        enable_hybrid=True,
        sparse_doc_fn=sparse.sparse_doc_fn,
        sparse_query_fn=sparse.sparse_query_fn,
    )
    index = VectorStoreIndex.from_documents(
        # "i" stays out of the embedded text, so every document is embedded as its own text
        [Document(text=t, metadata={"i": i}, excluded_embed_metadata_keys=["i"]) for i, t in enumerate(DOCS)],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=M3Embedding(model_name),
    )
    for i, text in enumerate(DOCS):
        nodes = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=1, sparse_top_k=3).retrieve(text)
        assert nodes[0].node.metadata["i"] == i
    sparse_nodes = index.as_retriever(vector_store_query_mode="sparse", similarity_top_k=3, sparse_top_k=3).retrieve(DOCS[1])
    q = sparse.get_query_embedding(DOCS[1])
    for node in sparse_nodes:
        d = sparse.get_text_embedding(node.node.get_content())
        assert node.score == pytest.approx(sparse.similarity(q, d), abs=1e-5)  # Qdrant's sparse score is M3's dot product


def test_bad_input(model_name: str) -> None:
    emb = M3Embedding(model_name)
    with pytest.raises(InputTypeError):
        emb.get_query_embedding(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"texts\[1\]"):
        emb.get_text_embedding_batch(["a", 2])  # type: ignore[list-item]
