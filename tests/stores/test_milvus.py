"""MilvusStore (milvus-lite) against the local store: same results for every plan (ties included),
one request per search, contents, filters, model checks, faults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import (
    DuplicateIdError,
    InputValueError,
    M3Encoder,
    M3Index,
    ModelMismatchError,
    PartialWriteError,
    ServiceUnavailableError,
    StoreError,
    UnknownIdError,
)
from m3rag.stores import MilvusStore
from tests.helpers import DOCS, IDS, METAS, QUERIES
from tests.stores.parity import FILTERS, PLANS, compare, counting, faulty

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "m3rag.db")


@pytest.fixture(scope="module")
def milvus(encoder: M3Encoder, milvus_uri: str) -> M3Index:
    index = M3Index(encoder, store=MilvusStore(milvus_uri, "docs"))
    index.add(DOCS, ids=IDS, metadatas=METAS)
    return index


def _pair(encoder: M3Encoder, uri: str, name: str, **store: Any) -> tuple[M3Index, M3Index]:
    """An empty local index (float32 ColBERT: what re-encoding gives) and an empty Milvus-backed one."""
    return M3Index(encoder, colbert_dtype="float32"), M3Index(encoder, store=MilvusStore(uri, name, **store))


@pytest.mark.parametrize("flt", FILTERS, ids=["no-filter", "lang-fr-even", "n-7.0"])
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_every_plan_equals_the_local_store(index: M3Index, milvus: M3Index, plan: dict[str, Any], flt: dict[str, Any] | None) -> None:
    # ColBERT is recomputed from the text: the reference keeps float32 ColBERT vectors (the `index` fixture)
    compare(index, milvus, QUERIES, 10, filter=flt, **plan)  # tie=0: ids in exactly the local order
    compare(index, milvus, QUERIES, 4, filter=flt, candidates=12, **plan)


def test_weights_and_single_searches_equal_the_local_store(index: M3Index, milvus: M3Index) -> None:
    for weights in ([0.7, 0.5, 0.004], {"sparse": 2.0}, [1.0, 0.0, 1.0]):
        for plan in ({"fusion": "weighted", "rerank": "hybrid"}, {"fusion": "rrf", "rerank": "hybrid"}, {"fusion": "weighted"}):
            compare(index, milvus, QUERIES, 6, weights=weights, candidates=20, **plan)
    for query in QUERIES:
        assert milvus.search(query, k=5, rerank="colbert") == milvus.search_batch([query], k=5, rerank="colbert")[0]


def test_k_beyond_the_collection_and_empty_results(index: M3Index, milvus: M3Index) -> None:
    everything = index.search(QUERIES[0], k=500, mode="dense")
    assert [h.id for h in milvus.search(QUERIES[0], k=500, mode="dense")] == [h.id for h in everything] and len(everything) == len(DOCS)
    assert milvus.search(QUERIES[0], filter={"lang": "xx"}) == [] and milvus.search(QUERIES[0], filter={"missing": 1}) == []
    with pytest.raises(InputValueError, match="at most 16384"):
        milvus.search(QUERIES[0], candidates=9000)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_a_search_is_one_request(milvus: M3Index, plan: dict[str, Any]) -> None:
    expected = ["hybrid_search"] if plan["mode"] == "hybrid" else ["search"]
    with counting(milvus.store) as calls:
        milvus.search(QUERIES[0], k=5, filter={"lang": "fr"}, **plan)
    assert calls == expected
    with counting(milvus.store) as calls:
        milvus.search_batch(QUERIES, k=5, **plan)
    assert calls == expected


def test_contents_behave_like_the_local_store(encoder: M3Encoder, tmp_path: Path) -> None:
    local, remote = _pair(encoder, str(tmp_path / "c.db"), "contents")
    for index in (local, remote):
        index.add(DOCS[:10], ids=IDS[:10], metadatas=METAS[:10])
        index.add([DOCS[50], DOCS[51]], ids=["doc-3", "new"], metadatas=[{"v": 2}, {"v": 3}], upsert=True)
        index.delete(["doc-5", "doc-7"])
        with pytest.raises(DuplicateIdError):
            index.add(["x"], ids=["doc-1"])
        with pytest.raises(UnknownIdError, match="doc-5"):
            index.delete(["doc-0", "doc-5"])
    assert len(remote) == len(local) == 9
    assert remote.ids == local.ids
    assert remote.get(["doc-3", "new", "doc-0"]) == local.get(["doc-3", "new", "doc-0"])
    assert "doc-5" not in remote and "doc-0" in remote
    for plan in ({"mode": "dense"}, {"mode": "hybrid", "rerank": "colbert"}, {"mode": "sparse", "rerank": "hybrid"}):
        compare(local, remote, [DOCS[50], DOCS[5], QUERIES[2]], 9, **plan)
    odd = ['quote " and \\ backslash', "new\nline", "ünïcødé 检索", "x" * 512]
    remote.add(["a", "b", "c", "d"], ids=odd)  # ids are never spliced into a Milvus expression
    assert remote.ids[-4:] == odd and [d.id for d in remote.get(odd)] == odd


def test_exact_ties_go_to_insertion_order(encoder: M3Encoder, tmp_path: Path) -> None:
    """Duplicates score exactly alike: the order among them is the local store's, insertion order."""
    local, remote = _pair(encoder, str(tmp_path / "ties.db"), "ties")
    docs = [*DOCS[:40], DOCS[7], DOCS[7], DOCS[7], *DOCS[40:60]]
    ids = [*IDS[:40], "dup-a", "dup-b", "dup-c", *IDS[40:60]]
    for index in (local, remote):
        index.add(docs, ids=ids)
    for plan in PLANS:
        compare(local, remote, [DOCS[7], QUERIES[2]], 10, **plan)
        compare(local, remote, [DOCS[7]], 5, candidates=8, **plan)
    assert [h.id for h in remote.search(DOCS[7], k=4, mode="dense")] == ["doc-7", "dup-a", "dup-b", "dup-c"]


def test_filters_are_json_typed_like_the_local_store(encoder: M3Encoder, tmp_path: Path) -> None:
    local, remote = _pair(encoder, str(tmp_path / "f.db"), "filters")
    values = [True, 1, 1.0, "1", [1], None, 2.5, False, 0, {"k": 1}]
    metas = [{"x": v, 'we"ird.key': i % 2 == 0} for i, v in enumerate(values)] + [{}]
    for index in (local, remote):
        index.add(DOCS[: len(metas)], ids=[f"m{i}" for i in range(len(metas))], metadatas=metas)
    filters = [{"x": v} for v in (True, 1, 1.0, "1", 2.5, False, 0.0)] + [{'we"ird.key': True}, {"x": 1, 'we"ird.key': False}]
    for flt in filters:
        want = [h.id for h in local.search("text", k=20, mode="dense", filter=flt)]
        assert [h.id for h in remote.search("text", k=20, mode="dense", filter=flt)] == want, flt
    # Milvus's own `meta["x"] == true` would also match 1 and 1.0
    assert {h.id for h in remote.search("text", k=20, mode="dense", filter={"x": True})} == {"m0"}


def test_filters_apply_before_top_k(index: M3Index, milvus: M3Index) -> None:
    for mode in ("dense", "sparse", "hybrid"):
        hits = milvus.search(QUERIES[2], k=3, mode=mode, filter={"n": 17}, candidates=5)  # type: ignore[arg-type]
        assert [h.id for h in hits] == [h.id for h in index.search(QUERIES[2], k=3, mode=mode, filter={"n": 17}, candidates=5)]  # type: ignore[arg-type]
    assert [h.id for h in milvus.search(QUERIES[2], k=3, mode="dense", filter={"n": 17})] == ["doc-17"]


def test_long_texts_are_refused_before_anything_is_written(encoder: M3Encoder, tmp_path: Path) -> None:
    _, remote = _pair(encoder, str(tmp_path / "t.db"), "texts")
    vectors = encoder.encode_corpus(["short", "long"], return_sparse=True)  # the long text itself is not encoded here
    with pytest.raises(InputValueError, match="id 'long' has 70000 UTF-8 bytes"):
        remote.add_encoded(vectors, ["short", "é" * 35_000], ids=["short", "long"])
    assert len(remote) == 0


def test_copy_to_carries_the_vectors_without_encoding(
    index: M3Index, encoder: M3Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("copy_to encoded documents")

    monkeypatch.setattr(encoder, "encode_corpus", refuse)
    copied = index.copy_to(MilvusStore(str(tmp_path / "copy.db"), "copy"), batch_size=50)
    monkeypatch.undo()
    assert copied.ids == index.ids
    for plan in ({"mode": "hybrid", "rerank": "hybrid"}, {"mode": "sparse"}, {"fusion": "rrf"}):
        compare(index, copied, QUERIES, 8, **plan)
    for (ids, texts, metas, out), (ids2, texts2, metas2, out2) in zip(index.store.export(64), copied.store.export(64)):
        assert (ids, texts, metas) == (ids2, texts2, metas2)
        np.testing.assert_array_equal(out.dense, out2.dense)
        assert (out.sparse != out2.sparse).nnz == 0 and out2.colbert is None


def test_reopened_collection_keeps_documents_and_settings(encoder: M3Encoder, tmp_path: Path) -> None:
    uri = str(tmp_path / "reopen.db")
    index = M3Index(encoder, store=MilvusStore(uri, "docs", shards=2, replicas=1), max_length=64)
    index.add(DOCS[:30], ids=IDS[:30], metadatas=METAS[:30])
    before = index.search(QUERIES[0], k=5, rerank="hybrid")
    index.close()
    reopened = M3Index(encoder, store=MilvusStore(uri, "docs", replicas=1))
    assert reopened.max_length == 64 and len(reopened) == 30 and reopened.ids == IDS[:30]
    assert reopened.search(QUERIES[0], k=5, rerank="hybrid") == before
    reopened.close()


def test_another_model_or_other_dimensions_are_refused(encoder: M3Encoder, tmp_path: Path) -> None:
    uri = str(tmp_path / "model.db")
    store = MilvusStore(uri, "model")
    M3Index(encoder, store=store)
    other = MilvusStore(uri, "model")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        other.bind({**encoder.identity, "fingerprint": "0123456789abcdef"})
    other.bind({**encoder.identity, "name": "a moved model directory"})

    import json

    from pymilvus import DataType

    client = store.client
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=36)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=8)
    record = {"format": 1, "identity": encoder.identity, "settings": {}, "layout": {"dense_index": "flat"}}
    client.create_collection("narrow", schema=schema, properties={"m3rag": json.dumps(record)})
    with pytest.raises(ModelMismatchError, match="'dense' has 8 dimensions"):
        M3Index(encoder, store=MilvusStore(uri, "narrow"))
    client.create_collection("foreign", schema=schema)
    with pytest.raises(StoreError, match="not created by m3rag"):
        M3Index(encoder, store=MilvusStore(uri, "foreign"))
    with pytest.raises(InputValueError, match="collection name"):
        MilvusStore(uri, "has-dash")


def test_unreachable_server_is_a_fast_typed_error(refused_address: str, silent_address: str) -> None:
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1") as refused:
        MilvusStore(refused_address, "docs", timeout=1)
    assert refused.value.address == refused_address and time.monotonic() - start < 3
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as silent:
        MilvusStore(silent_address, "docs", timeout=1)
    assert silent.value.address == silent_address and time.monotonic() - start < 5


def test_an_add_failing_part_way_says_what_was_written_and_upsert_completes_it(encoder: M3Encoder, tmp_path: Path) -> None:
    index = M3Index(encoder, store=MilvusStore(str(tmp_path / "faults.db"), "faults", batch_size=16))
    store: Any = index.store
    real = store.client.upsert
    store.client.upsert = faulty(real, 3, ConnectionError("connection reset by peer"))
    with pytest.raises(PartialWriteError, match="32 of 60") as error:
        index.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60])
    assert error.value.written_ids == IDS[:32] and isinstance(error.value.__cause__, ServiceUnavailableError)
    assert len(index) == 32 and set(index.ids) == set(IDS[:32])
    store.client.upsert = real
    index.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60], upsert=True)
    assert len(index) == 60 and index.ids == IDS[:60]
    local = M3Index(encoder, colbert_dtype="float32")
    local.add(DOCS[:60], ids=IDS[:60], metadatas=METAS[:60])
    compare(local, index, QUERIES, 8, rerank="hybrid")
