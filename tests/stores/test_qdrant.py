"""QdrantStore (embedded) against the local store: same results for every plan, one request per
search, contents, filters, model checks, faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import (
    DuplicateIdError,
    M3Encoder,
    M3Index,
    ModelMismatchError,
    PartialWriteError,
    ServiceUnavailableError,
    StoreError,
    UnknownIdError,
)
from m3rag.stores import QdrantStore
from tests.helpers import DOCS, IDS, METAS, QUERIES
from tests.stores.parity import FILTERS, FLOAT32_TIE, PLANS, compare, counting, faulty

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def qdrant(encoder: M3Encoder) -> M3Index:
    index = M3Index(encoder, store=QdrantStore(location=":memory:", collection="docs"))
    index.add(DOCS, ids=IDS, metadatas=METAS)
    return index


def _pair(encoder: M3Encoder, name: str, **store: Any) -> tuple[M3Index, M3Index]:
    """An empty local index and an empty Qdrant-backed one."""
    return M3Index(encoder), M3Index(encoder, store=QdrantStore(location=":memory:", collection=name, **store))


@pytest.mark.parametrize("flt", FILTERS, ids=["no-filter", "lang-fr-even", "n-7.0"])
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_every_plan_equals_the_local_store(local_fp16: M3Index, qdrant: M3Index, plan: dict[str, Any], flt: dict[str, Any] | None) -> None:
    compare(local_fp16, qdrant, QUERIES, 10, tie=FLOAT32_TIE, filter=flt, **plan)
    compare(local_fp16, qdrant, QUERIES, 4, tie=FLOAT32_TIE, filter=flt, candidates=12, **plan)  # the first stage cuts


def test_weights_and_single_searches_equal_the_local_store(local_fp16: M3Index, qdrant: M3Index) -> None:
    # a ColBERT weight this small makes the store fetch the hits' ColBERT vectors for their per-mode scores
    for weights in ([0.7, 0.5, 0.004], {"sparse": 2.0}, [1.0, 0.0, 1.0]):
        for plan in ({"fusion": "weighted", "rerank": "hybrid"}, {"fusion": "rrf", "rerank": "hybrid"}, {"fusion": "weighted"}):
            compare(local_fp16, qdrant, QUERIES, 6, tie=FLOAT32_TIE, weights=weights, candidates=20, **plan)
    for query in QUERIES:
        single, batch = qdrant.search(query, k=5, rerank="colbert"), qdrant.search_batch([query], k=5, rerank="colbert")[0]
        assert single == batch


def test_k_beyond_the_collection_and_empty_results(local_fp16: M3Index, qdrant: M3Index) -> None:
    everything = local_fp16.search(QUERIES[0], k=500, mode="dense")
    assert [h.id for h in qdrant.search(QUERIES[0], k=500, mode="dense")] == [h.id for h in everything] and len(everything) == len(DOCS)
    assert qdrant.search(QUERIES[0], filter={"lang": "xx"}) == [] and qdrant.search(QUERIES[0], filter={"missing": 1}) == []
    assert qdrant.search("   ") == []


async def test_asearch_equals_search(qdrant: M3Index) -> None:
    assert await qdrant.asearch(QUERIES[1], k=5, rerank="hybrid") == qdrant.search(QUERIES[1], k=5, rerank="hybrid")


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_a_search_is_one_request(qdrant: M3Index, plan: dict[str, Any]) -> None:
    with counting(qdrant.store) as calls:
        qdrant.search(QUERIES[0], k=5, filter={"lang": "fr"}, **plan)
    assert calls == ["query_points"]
    with counting(qdrant.store) as calls:
        qdrant.search_batch(QUERIES, k=5, **plan)
    assert calls == ["query_batch_points"]


def test_an_empty_collection_answers_in_one_request(encoder: M3Encoder) -> None:
    _, index = _pair(encoder, "empty")
    with counting(index.store) as calls:
        assert index.search("anything", rerank="colbert") == [] and index.search_batch(["a", "b"]) == [[], []]
    assert calls == ["query_points", "query_batch_points"]


def test_contents_behave_like_the_local_store(encoder: M3Encoder) -> None:
    local, remote = _pair(encoder, "contents")
    for index in (local, remote):
        index.add(DOCS[:10], ids=IDS[:10], metadatas=METAS[:10])
        index.add([DOCS[50], DOCS[51]], ids=["doc-3", "new"], metadatas=[{"v": 2}, {"v": 3}], upsert=True)
        index.delete(["doc-5", "doc-7"])
        with pytest.raises(DuplicateIdError):
            index.add(["x"], ids=["doc-1"])
        with pytest.raises(UnknownIdError, match="doc-5"):
            index.delete(["doc-0", "doc-5"])  # nothing is removed
    assert len(remote) == len(local) == 9
    assert remote.ids == local.ids  # insertion order: a replaced document moves to the end
    assert remote.get(["doc-3", "new", "doc-0"]) == local.get(["doc-3", "new", "doc-0"])
    assert "doc-5" not in remote and "doc-0" in remote
    with pytest.raises(UnknownIdError, match="doc-7"):
        remote.get(["doc-7"])
    for plan in ({"mode": "dense"}, {"mode": "hybrid", "rerank": "colbert"}, {"mode": "sparse", "rerank": "hybrid"}):
        compare(local, remote, [DOCS[50], DOCS[5], QUERIES[2]], 9, tie=FLOAT32_TIE, **plan)


def test_exact_ties_go_to_insertion_order(encoder: M3Encoder) -> None:
    """Duplicates score exactly alike; Qdrant's hits are re-sorted by insertion among themselves, but the
    RRF ranks Qdrant gives tied documents are its own choice (same scores, the duplicates permuted)."""
    local, remote = M3Index(encoder), M3Index(encoder, store=QdrantStore(location=":memory:", collection="ties"))
    docs = [*DOCS[:40], DOCS[7], DOCS[7], DOCS[7], *DOCS[40:60]]
    ids = [*IDS[:40], "dup-a", "dup-b", "dup-c", *IDS[40:60]]
    for index in (local, remote):
        index.add(docs, ids=ids)
    for plan in PLANS:
        compare(local, remote, [DOCS[7], QUERIES[2]], 10, tie=FLOAT32_TIE, **plan)
        compare(local, remote, [DOCS[7]], 5, tie=FLOAT32_TIE, candidates=8, **plan)
    assert [h.id for h in remote.search(DOCS[7], k=4, mode="dense")] == ["doc-7", "dup-a", "dup-b", "dup-c"]


def test_filters_are_json_typed_like_the_local_store(encoder: M3Encoder) -> None:
    local, remote = _pair(encoder, "filters")
    values = [True, 1, 1.0, "1", [1], None, 2.5, False, 0, {"k": 1}]
    metas = [{"x": v, "dot.key": i % 2 == 0} for i, v in enumerate(values)] + [{}]
    for index in (local, remote):
        index.add(DOCS[: len(metas)], ids=[f"m{i}" for i in range(len(metas))], metadatas=metas)
    filters = [{"x": v} for v in (True, 1, 1.0, "1", 2.5, False, 0.0)] + [{"dot.key": True}, {"x": 1, "dot.key": False}]
    for flt in filters:
        want = [h.id for h in local.search("text", k=20, mode="dense", filter=flt)]
        assert [h.id for h in remote.search("text", k=20, mode="dense", filter=flt)] == want, flt
    assert {h.id for h in remote.search("text", k=20, mode="dense", filter={"x": 1})} == {"m1", "m2"}  # 1 == 1.0, not True


def test_filters_apply_before_top_k(local_fp16: M3Index, qdrant: M3Index) -> None:
    for mode in ("dense", "sparse", "hybrid"):
        hits = qdrant.search(QUERIES[2], k=3, mode=mode, filter={"n": 17}, candidates=5)  # type: ignore[arg-type]
        assert [h.id for h in hits] == [h.id for h in local_fp16.search(QUERIES[2], k=3, mode=mode, filter={"n": 17}, candidates=5)]  # type: ignore[arg-type]
    assert [h.id for h in qdrant.search(QUERIES[2], k=3, mode="dense", filter={"n": 17})] == ["doc-17"]


def test_copy_to_carries_the_vectors_without_encoding(local_fp16: M3Index, encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("copy_to encoded documents")

    monkeypatch.setattr(encoder, "encode_corpus", refuse)
    copied = local_fp16.copy_to(QdrantStore(location=":memory:", collection="copy"), batch_size=50)
    monkeypatch.undo()
    assert copied.ids == local_fp16.ids
    for plan in ({"mode": "hybrid", "rerank": "hybrid"}, {"mode": "sparse"}, {"fusion": "rrf", "rerank": "colbert"}):
        compare(local_fp16, copied, QUERIES, 8, tie=FLOAT32_TIE, **plan)
    # and back: the stored vectors come out as they went in (ColBERT as float16, like the local store keeps it)
    for (ids, texts, metas, out), (ids2, texts2, metas2, out2) in zip(local_fp16.store.export(64), copied.store.export(64)):
        assert (ids, texts, metas) == (ids2, texts2, metas2)
        np.testing.assert_array_equal(out.dense, out2.dense)
        assert (out.sparse != out2.sparse).nnz == 0
        np.testing.assert_array_equal(out.colbert_offsets, out2.colbert_offsets)
        np.testing.assert_array_equal(out.colbert, out2.colbert)


def test_reopened_collection_keeps_documents_and_settings(encoder: M3Encoder, tmp_path: Path) -> None:
    index = M3Index(encoder, store=QdrantStore(path=str(tmp_path / "q"), collection="docs"), max_length=64)
    index.add(DOCS[:30], ids=IDS[:30], metadatas=METAS[:30])
    before = index.search(QUERIES[0], k=5, rerank="hybrid")
    index.close()
    reopened = M3Index(encoder, store=QdrantStore(path=str(tmp_path / "q"), collection="docs"))
    assert reopened.max_length == 64 and len(reopened) == 30 and reopened.ids == IDS[:30]
    assert reopened.search(QUERIES[0], k=5, rerank="hybrid") == before
    reopened.close()


def test_another_model_or_other_dimensions_are_refused(encoder: M3Encoder) -> None:
    store = QdrantStore(location=":memory:", collection="model")
    M3Index(encoder, store=store)
    other = QdrantStore(client=store.client, collection="model")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        other.bind({**encoder.identity, "fingerprint": "0123456789abcdef"})
    with pytest.raises(ModelMismatchError, match="dim"):
        other.bind({**encoder.identity, "dim": 1024})
    other.bind({**encoder.identity, "name": "a moved model directory"})  # the name may differ

    from qdrant_client import models

    record = {"format": 1, "identity": encoder.identity, "settings": {}, "layout": {"colbert_dtype": "float16", "dense_index": "flat"}}
    dense = models.VectorParams(size=8, distance=models.Distance.DOT)
    colbert = models.VectorParams(size=encoder.colbert_dim, distance=models.Distance.DOT)
    store.client.create_collection("narrow", vectors_config={"dense": dense, "colbert": colbert}, metadata={"m3rag": record})
    with pytest.raises(ModelMismatchError, match="'dense' has 8 dimensions"):
        M3Index(encoder, store=QdrantStore(client=store.client, collection="narrow"))
    store.client.create_collection("foreign", vectors_config={})
    with pytest.raises(StoreError, match="not created by m3rag"):
        M3Index(encoder, store=QdrantStore(client=store.client, collection="foreign"))


def test_unreachable_server_is_a_fast_typed_error(refused_address: str, silent_address: str) -> None:
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1") as refused:
        QdrantStore(url=refused_address, collection="docs", timeout=1)
    assert refused.value.address == refused_address and time.monotonic() - start < 3
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as silent:
        QdrantStore(url=silent_address, collection="docs", timeout=1)
    assert silent.value.address == silent_address and time.monotonic() - start < 5


def test_an_add_failing_part_way_says_what_was_written_and_upsert_completes_it(local_fp16: M3Index, encoder: M3Encoder) -> None:
    index = M3Index(encoder, store=QdrantStore(location=":memory:", collection="faults", batch_size=16))
    store: Any = index.store
    real = store.client.upsert
    store.client.upsert = faulty(real, 3, ConnectionError("connection reset by peer"))
    with pytest.raises(PartialWriteError, match="32 of 60") as error:
        index.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60])
    assert error.value.written_ids == IDS[:32] and isinstance(error.value.__cause__, ServiceUnavailableError)
    assert len(index) == 32 and set(index.ids) == set(IDS[:32])
    store.client.upsert = faulty(real, 1, ConnectionError("connection refused"))
    with pytest.raises(ServiceUnavailableError):  # the first batch failed: nothing more was written
        index.add(DOCS[60:70], ids=IDS[60:70])
    store.client.upsert = real
    with pytest.raises(DuplicateIdError):
        index.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60])
    index.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60], upsert=True)
    assert len(index) == 60 and index.ids == IDS[:60]
    local = M3Index(encoder)
    local.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60])
    compare(local, index, QUERIES, 8, tie=FLOAT32_TIE, rerank="hybrid")
