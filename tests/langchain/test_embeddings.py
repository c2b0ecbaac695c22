from __future__ import annotations

import asyncio
import sys
import types
from abc import ABC, abstractmethod

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from m3rag import InputTypeError, InputValueError, M3Encoder
from m3rag.langchain import M3Embeddings, M3SparseEmbeddings, SparseVector
from tests.helpers import run_with_heartbeat

from .conftest import DOCS


class _Params:
    @pytest.fixture(autouse=True)
    def _model(self, model_name: str) -> None:
        self._model_name = model_name

    @property
    def embeddings_class(self) -> type[M3Embeddings]:
        return M3Embeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": self._model_name}


class TestM3EmbeddingsUnit(_Params, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"M3RAG_MODEL": self._model_name}, {}, {"model_name": self._model_name}


class TestM3EmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass


def test_dense_vectors_equal_the_encoders(model_name: str) -> None:
    emb = M3Embeddings(model_name=model_name)
    enc = emb.encoder
    np.testing.assert_allclose(emb.embed_documents(DOCS), enc.encode(DOCS).dense, atol=1e-6)
    np.testing.assert_allclose(emb.embed_query(DOCS[0]), enc.encode_queries(DOCS[0]).dense_vecs, atol=1e-6)
    assert emb.embed_documents([]) == []
    assert all(type(x) is float for x in emb.embed_query("q"))


def test_async_twins_equal_sync_and_leave_the_loop_free(model_name: str) -> None:
    emb = M3Embeddings(model_name=model_name)
    vectors, ticks = run_with_heartbeat(emb.aembed_documents(DOCS * 20))
    np.testing.assert_allclose(vectors, emb.embed_documents(DOCS * 20), atol=1e-6)
    assert ticks > 3


def test_encoder_instance_is_used_as_given(encoder: M3Encoder) -> None:
    assert M3Embeddings(encoder=encoder).encoder is encoder
    with pytest.raises(InputTypeError, match="must be an M3Encoder"):
        M3Embeddings(encoder="not an encoder")  # type: ignore[arg-type]


def test_bad_input(model_name: str) -> None:
    emb = M3Embeddings(model_name=model_name)
    with pytest.raises(InputTypeError):
        emb.embed_query(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"texts\[1\]"):
        emb.embed_documents(["ok", 3])  # type: ignore[list-item]
    assert len(emb.embed_query("")) == emb.encoder.dim  # an empty query encodes, as in FlagEmbedding


def test_sparse_vectors_equal_lexical_weights(model_name: str) -> None:
    sparse = M3SparseEmbeddings(model_name=model_name)
    weights = sparse.encoder.encode(DOCS, return_dense=False, return_sparse=True).lexical_weights
    vectors = sparse.embed_documents(DOCS)
    for vec, w in zip(vectors, weights):
        assert isinstance(vec, SparseVector) and vec.indices == list(w) and vec.values == list(w.values())
        assert vec.indices == sorted(set(vec.indices))
    query = sparse.embed_query(DOCS[0])
    expected = sparse.encoder.encode_queries(DOCS[0], return_dense=False, return_sparse=True).lexical_weights
    assert dict(zip(query.indices, query.values)) == expected
    assert asyncio.run(sparse.aembed_query(DOCS[0])) == query


def test_qdrant_hybrid_retrieval_end_to_end(model_name: str) -> None:
    from langchain_qdrant import QdrantVectorStore, RetrievalMode

    dense, sparse = M3Embeddings(model_name=model_name), M3SparseEmbeddings(model_name=model_name)
    store = QdrantVectorStore.from_texts(
        DOCS,
        embedding=dense,
        sparse_embedding=sparse,
        retrieval_mode=RetrievalMode.HYBRID,
        location=":memory:",
        collection_name="m3",
        metadatas=[{"i": i} for i in range(len(DOCS))],
    )
    for i, text in enumerate(DOCS):
        assert store.similarity_search(text, k=1)[0].metadata["i"] == i
    # the sparse side alone: Qdrant's dot product equals M3's lexical score
    sparse_only = QdrantVectorStore.from_texts(
        DOCS,
        embedding=dense,
        sparse_embedding=sparse,
        retrieval_mode=RetrievalMode.SPARSE,
        location=":memory:",
        collection_name="m3s",
    )
    hits = sparse_only.similarity_search_with_score(DOCS[1], k=3)
    enc = dense.encoder
    q = enc.encode_queries(DOCS[1], return_dense=False, return_sparse=True).lexical_weights
    for doc, score in hits:
        d = enc.encode(doc.page_content, return_dense=False, return_sparse=True).lexical_weights
        assert score == pytest.approx(enc.compute_lexical_matching_score(q, d), abs=1e-5)


def test_milvus_form_returns_int_keyed_dicts(model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # langchain-milvus's interface, as published: an ABC with embed_query / embed_documents -> dict[int, float]
    class BaseSparseEmbedding(ABC):
        @abstractmethod
        def embed_query(self, query: str) -> dict[int, float]: ...

        @abstractmethod
        def embed_documents(self, texts: list[str]) -> list[dict[int, float]]: ...

    module = types.ModuleType("langchain_milvus.utils.sparse")
    module.BaseSparseEmbedding = BaseSparseEmbedding  # type: ignore[attr-defined]
    for name in ("langchain_milvus", "langchain_milvus.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "langchain_milvus.utils.sparse", module)
    sparse = M3SparseEmbeddings(model_name=model_name)
    milvus = sparse.as_milvus()
    assert isinstance(milvus, BaseSparseEmbedding)
    assert milvus.embed_documents(DOCS[:2]) == sparse.embed_documents_dict(DOCS[:2])
    assert all(isinstance(k, int) for k in milvus.embed_query(DOCS[0]))


def test_langchain_huggingface_kwargs_are_mapped_or_refused_by_name(model_name: str) -> None:
    emb = M3Embeddings(
        model_name=model_name,
        model_kwargs={"device": "cpu", "torch_dtype": "float32"},
        encode_kwargs={"batch_size": 4, "normalize_embeddings": True, "show_progress_bar": False},
    )
    assert (emb.device, emb.dtype, emb.batch_size, emb.show_progress) == ("cpu", "float32", 4, False)
    assert emb.encoder is M3Embeddings(model_name=model_name).encoder  # the same shared encoder
    with pytest.raises(InputTypeError, match=r"M3Embeddings does not take encode_kwargs\['prompt'\]"):
        M3Embeddings(model_name=model_name, encode_kwargs={"prompt": "query: "})
    with pytest.raises(InputTypeError, match=r"model_kwargs\['cache_folder'\].*device, dtype, torch_dtype"):
        M3Embeddings(model_name=model_name, model_kwargs={"cache_folder": "/tmp"})
    with pytest.raises(InputValueError, match="always L2-normalised"):
        M3Embeddings(model_name=model_name, encode_kwargs={"normalize_embeddings": False})
    with pytest.raises(InputTypeError, match="encode_kwargs must be a dict"):
        M3Embeddings(model_name=model_name, encode_kwargs=["batch_size"])  # type: ignore[arg-type]


def test_model_name_is_the_encoders_when_one_is_given(encoder: M3Encoder) -> None:
    for cls in (M3Embeddings, M3SparseEmbeddings):
        assert cls(encoder=encoder, model_name="something else").model_name == encoder.name
