"""Every component on the remote encoder, by instance and by ``model_name="http://..."``: the
local encoder's results; and the index's model identity check across local and remote."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from m3rag import M3Encoder, M3Index, ModelMismatchError, arerank, rerank
from m3rag.serve.client import RemoteM3Encoder
from m3rag.testing import build_checkpoint
from tests.helpers import DOCS, FRAMEWORK_DOCS, IDS, METAS, QUERIES

from .conftest import Server
from .helpers import assert_same_weights

pytestmark = pytest.mark.service

ATOL = 1e-6


def _hits(hits: list) -> list[tuple[str, float]]:  # type: ignore[type-arg]
    return [(h.id, h.score) for h in hits]


def _same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_m3index_on_the_remote_encoder_equals_local(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    remote_index, local_index = M3Index(remote, colbert_dtype="float32"), M3Index(encoder, colbert_dtype="float32")
    for idx in (remote_index, local_index):
        idx.add(DOCS, ids=IDS, metadatas=METAS)
    for query in QUERIES:
        for kw in (
            {"mode": "dense"},
            {"mode": "sparse"},
            {"mode": "hybrid", "rerank": "colbert"},
            {"mode": "hybrid", "rerank": "hybrid", "filter": {"lang": "en"}},
        ):
            _same_ranking(_hits(remote_index.search(query, 5, **kw)), _hits(local_index.search(query, 5, **kw)))  # type: ignore[arg-type]
    got = asyncio.run(remote_index.asearch(QUERIES[0], 5, rerank="colbert"))
    _same_ranking(_hits(got), _hits(local_index.search(QUERIES[0], 5, rerank="colbert")))


def test_an_index_built_locally_accepts_the_remote_encoder_and_refuses_other_weights(
    remote: RemoteM3Encoder, encoder: M3Encoder, tmp_path: Path
) -> None:
    local_index = M3Index(encoder)
    local_index.add(DOCS[:30], ids=IDS[:30])
    local_index.save(tmp_path / "same")
    loaded = M3Index.load(tmp_path / "same", remote)
    assert loaded.encoder is remote
    _same_ranking(_hits(loaded.search(QUERIES[0], 5, rerank="colbert")), _hits(local_index.search(QUERIES[0], 5, rerank="colbert")))

    other = M3Encoder(build_checkpoint(tmp_path / "other-m3", preset="tiny", seed=1), device="cpu")
    assert other.fingerprint != remote.fingerprint and other.dim == remote.dim
    other_index = M3Index(other)
    other_index.add(DOCS[:5])
    other_index.save(tmp_path / "other")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        M3Index.load(tmp_path / "other", remote)


def test_an_index_saved_through_the_server_reloads_through_it(server: Server, api_key_env: str, tmp_path: Path) -> None:
    index = M3Index(server.url)
    index.add(DOCS[:10], ids=IDS[:10])
    index.save(tmp_path / "idx")
    reloaded = M3Index.load(tmp_path / "idx")  # the manifest names the server: no weights needed here
    assert isinstance(reloaded.encoder, RemoteM3Encoder) and reloaded.encoder.url == server.url
    assert reloaded.search(DOCS[3], 1)[0].id == IDS[3]


def test_rerank_on_the_remote_encoder_equals_local(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    for mode in ("colbert", "hybrid"):
        want = rerank(encoder, QUERIES[2], FRAMEWORK_DOCS, mode=mode, top_n=4)  # type: ignore[arg-type]
        got = rerank(remote, QUERIES[2], FRAMEWORK_DOCS, mode=mode, top_n=4)  # type: ignore[arg-type]
        _same_ranking([(str(r.index), r.score) for r in got], [(str(r.index), r.score) for r in want])
        got_async = asyncio.run(arerank(remote, QUERIES[2], FRAMEWORK_DOCS, mode=mode, top_n=4))  # type: ignore[arg-type]
        _same_ranking([(str(r.index), r.score) for r in got_async], [(str(r.index), r.score) for r in want])


@pytest.mark.parametrize("by", ["instance", "url"])
def test_langchain_classes(by: str, remote: RemoteM3Encoder, encoder: M3Encoder, api_key_env: str) -> None:
    from langchain_core.documents import Document

    from m3rag.langchain import M3Embeddings, M3Reranker, M3Retriever, M3SparseEmbeddings

    where = {"encoder": remote} if by == "instance" else {"model_name": api_key_env}
    dense, dense_local = M3Embeddings(**where), M3Embeddings(encoder=encoder)  # type: ignore[arg-type]
    assert isinstance(dense.m3, RemoteM3Encoder)
    np.testing.assert_allclose(dense.embed_documents(FRAMEWORK_DOCS), dense_local.embed_documents(FRAMEWORK_DOCS), atol=ATOL)
    np.testing.assert_allclose(dense.embed_query(QUERIES[2]), dense_local.embed_query(QUERIES[2]), atol=ATOL)
    np.testing.assert_allclose(asyncio.run(dense.aembed_query(QUERIES[2])), dense_local.embed_query(QUERIES[2]), atol=ATOL)

    sparse, sparse_local = M3SparseEmbeddings(**where), M3SparseEmbeddings(encoder=encoder)  # type: ignore[arg-type]
    for got, want in zip(sparse.embed_documents_dict(FRAMEWORK_DOCS), sparse_local.embed_documents_dict(FRAMEWORK_DOCS)):
        assert_same_weights(got, want)
    assert sparse.embed_query(QUERIES[2]).indices == sparse_local.embed_query(QUERIES[2]).indices

    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(FRAMEWORK_DOCS)]
    for mode in ("colbert", "hybrid"):
        got_docs = M3Reranker(**where, top_n=3, mode=mode).compress_documents(docs, QUERIES[2])  # type: ignore[arg-type]
        want_docs = M3Reranker(encoder=encoder, top_n=3, mode=mode).compress_documents(docs, QUERIES[2])  # type: ignore[arg-type]
        _same_ranking([(str(d.metadata["i"]), d.metadata["relevance_score"]) for d in got_docs],
                      [(str(d.metadata["i"]), d.metadata["relevance_score"]) for d in want_docs])  # fmt: skip

    retriever = M3Retriever.from_texts(FRAMEWORK_DOCS, ids=[str(i) for i in range(len(FRAMEWORK_DOCS))], k=3, rerank="colbert", **where)  # type: ignore[arg-type]
    local = M3Retriever.from_texts(FRAMEWORK_DOCS, ids=[str(i) for i in range(len(FRAMEWORK_DOCS))], k=3, rerank="colbert", encoder=encoder)
    assert isinstance(retriever.index.encoder, RemoteM3Encoder)
    for query in (QUERIES[2], "sparse vectors", "检索"):
        got = [(d.id, d.metadata["relevance_score"]) for d in retriever.invoke(query)]
        _same_ranking(got, [(d.id, d.metadata["relevance_score"]) for d in local.invoke(query)])  # type: ignore[misc]
    got_async = asyncio.run(retriever.ainvoke(QUERIES[2]))
    assert [d.id for d in got_async] == [d.id for d in local.invoke(QUERIES[2])]


@pytest.mark.parametrize("by", ["instance", "url"])
def test_llama_index_classes(by: str, remote: RemoteM3Encoder, encoder: M3Encoder, api_key_env: str) -> None:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from m3rag.llama_index import M3Embedding, M3Reranker, M3Retriever, M3SparseEmbedding

    where = {"encoder": remote} if by == "instance" else {"model_name": api_key_env}
    dense, dense_local = M3Embedding(**where), M3Embedding(encoder=encoder)  # type: ignore[arg-type]
    assert isinstance(dense.encoder, RemoteM3Encoder) and dense.model_name == remote.url
    np.testing.assert_allclose(
        dense.get_text_embedding_batch(FRAMEWORK_DOCS), dense_local.get_text_embedding_batch(FRAMEWORK_DOCS), atol=ATOL
    )
    np.testing.assert_allclose(dense.get_query_embedding(QUERIES[2]), dense_local.get_query_embedding(QUERIES[2]), atol=ATOL)
    np.testing.assert_allclose(asyncio.run(dense.aget_query_embedding(QUERIES[2])), dense_local.get_query_embedding(QUERIES[2]), atol=ATOL)

    sparse, sparse_local = M3SparseEmbedding(**where), M3SparseEmbedding(encoder=encoder)  # type: ignore[arg-type]
    assert_same_weights(sparse.get_query_embedding(QUERIES[2]), sparse_local.get_query_embedding(QUERIES[2]))
    for got, want in zip(sparse.get_text_embedding_batch(FRAMEWORK_DOCS), sparse_local.get_text_embedding_batch(FRAMEWORK_DOCS)):
        assert_same_weights(got, want)
    assert sparse.sparse_query_fn([QUERIES[2]])[0] == sparse_local.sparse_query_fn([QUERIES[2]])[0]

    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(FRAMEWORK_DOCS)]
    bundle = QueryBundle(QUERIES[2])
    got_nodes = M3Reranker(**where, top_n=3, mode="hybrid").postprocess_nodes(nodes, bundle)  # type: ignore[arg-type]
    want_nodes = M3Reranker(encoder=encoder, top_n=3, mode="hybrid").postprocess_nodes(nodes, bundle)
    _same_ranking([(n.node.node_id, n.score) for n in got_nodes], [(n.node.node_id, n.score) for n in want_nodes])  # type: ignore[misc]

    text_nodes = [TextNode(text=t, id_=str(i)) for i, t in enumerate(FRAMEWORK_DOCS)]
    retriever = M3Retriever.from_documents(text_nodes, similarity_top_k=3, rerank="hybrid", **where)  # type: ignore[arg-type]
    local = M3Retriever.from_documents(text_nodes, similarity_top_k=3, rerank="hybrid", encoder=encoder)
    for query in (QUERIES[2], "sparse vectors", "检索"):
        got = [(n.node.node_id, n.score) for n in retriever.retrieve(query)]
        _same_ranking(got, [(n.node.node_id, n.score) for n in local.retrieve(query)])  # type: ignore[misc]
    got_async = asyncio.run(retriever.aretrieve(QUERIES[2]))
    assert [n.node.node_id for n in got_async] == [n.node.node_id for n in local.retrieve(QUERIES[2])]
