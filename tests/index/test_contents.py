from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from m3rag import DuplicateIdError, InputTypeError, InputValueError, M3Encoder, M3Index, UnknownIdError
from tests.helpers import DOCS


@pytest.fixture
def small(encoder: M3Encoder) -> M3Index:
    idx = M3Index(encoder)
    idx.add(DOCS[:6], ids=[f"d{i}" for i in range(6)], metadatas=[{"i": i} for i in range(6)])
    return idx


def test_add_get_ids_len(small: M3Index) -> None:
    assert len(small) == 6 and small.ids == [f"d{i}" for i in range(6)]
    doc = small.get(["d2", "d0"])
    assert [d.id for d in doc] == ["d2", "d0"] and doc[0].text == DOCS[2] and doc[0].metadata == {"i": 2}
    assert "d1" in small and "zz" not in small


def test_generated_ids_are_unique_strings(encoder: M3Encoder) -> None:
    idx = M3Index(encoder)
    ids = idx.add(DOCS[:3])
    assert len(set(ids)) == 3 and all(isinstance(i, str) for i in ids) and idx.ids == ids


def test_duplicates_are_errors_unless_upsert(small: M3Index) -> None:
    with pytest.raises(DuplicateIdError, match="already in the index"):
        small.add(["x"], ids=["d1"])
    with pytest.raises(DuplicateIdError, match="repeat within the call"):
        small.add(["x", "y"], ids=["n1", "n1"])
    assert len(small) == 6 and "n1" not in small  # nothing was stored


def test_upsert_replaces_text_metadata_and_vectors(small: M3Index) -> None:
    new_text = DOCS[50]
    small.add([new_text, "first", "second"], ids=["d1", "new", "new"], metadatas=[{"v": 2}, {"v": 0}, {"v": 1}], upsert=True)
    assert len(small) == 7
    assert small.get(["d1"])[0].text == new_text and small.get(["d1"])[0].metadata == {"v": 2}
    assert small.get(["new"])[0].text == "second"  # last occurrence wins
    top = small.search(new_text, k=1, mode="dense")[0]
    assert top.id == "d1" and top.score == pytest.approx(1.0, abs=1e-5)
    assert all(h.text != DOCS[1] for h in small.search(DOCS[1], k=10))


def test_delete_removes_from_every_mode(small: M3Index) -> None:
    small.delete(["d3"])
    assert "d3" not in small and len(small) == 5
    for mode in ("dense", "sparse", "hybrid"):
        assert all(h.id != "d3" for h in small.search(DOCS[3], k=10, mode=mode, rerank="colbert"))  # type: ignore[arg-type]
    with pytest.raises(UnknownIdError, match="d3"):
        small.get(["d3"])


def test_delete_unknown_deletes_nothing(small: M3Index) -> None:
    with pytest.raises(UnknownIdError, match="nope"):
        small.delete(["d0", "nope"])
    assert len(small) == 6 and "d0" in small


def test_compaction_after_many_deletes_keeps_results(encoder: M3Encoder) -> None:
    idx = M3Index(encoder, colbert_dtype="float32")
    ref = M3Index(encoder, colbert_dtype="float32")
    ids = [f"d{i}" for i in range(len(DOCS))]
    idx.add(DOCS, ids=ids)
    keep = [i for i in range(len(DOCS)) if i % 4 == 0]
    ref.add([DOCS[i] for i in keep], ids=[ids[i] for i in keep])
    idx.delete([ids[i] for i in range(len(DOCS)) if i % 4])
    idx.store._compact()  # type: ignore[attr-defined]
    assert len(idx.store._alive) == len(keep) == len(idx)  # type: ignore[attr-defined]
    for query in DOCS[:4]:
        a, b = idx.search(query, k=5, rerank="hybrid"), ref.search(query, k=5, rerank="hybrid")
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((["a", 1],), {}, InputTypeError, r"texts\[1\]"),
        ((["a"],), {"ids": "a"}, InputTypeError, "not one str"),
        ((["a"],), {"ids": [1]}, InputTypeError, r"ids\[0\]"),
        ((["a", "b"],), {"ids": ["x"]}, InputValueError, "1 ids for 2"),
        ((["a"],), {"metadatas": [{"f": object()}]}, InputTypeError, "JSON"),
        ((["a"],), {"metadatas": [{1: "x"}]}, InputTypeError, "str keys"),
        ((["a"],), {"metadatas": {"a": 1}}, InputTypeError, "sequence of dicts"),
        ((["a"],), {"metadatas": [{}, {}]}, InputValueError, "2 metadatas"),
    ],
)
def test_bad_add_arguments_store_nothing(small: M3Index, args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        small.add(*args, **kwargs)
    assert len(small) == 6


def test_unknown_and_badly_typed_ids(small: M3Index) -> None:
    with pytest.raises(UnknownIdError):
        small.get(["nope"])
    with pytest.raises(InputTypeError):
        small.get("d1")
    with pytest.raises(InputTypeError):
        small.delete([1])  # type: ignore[list-item]


def test_dense_only_encoder_is_refused(tiny_checkpoint) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputValueError, match="dense_only"):
        M3Index(M3Encoder(tiny_checkpoint, device="cpu", dense_only=True))


def test_ids_and_metadata_that_could_never_be_saved_are_refused_at_add(encoder: M3Encoder, tmp_path: Path) -> None:
    idx = M3Index(encoder)
    with pytest.raises(InputValueError, match="not valid Unicode"):
        idx.add(["ok"], ids=["id\udc80"])
    with pytest.raises(InputValueError, match="not valid Unicode"):
        idx.add(["ok"], metadatas=[{"title": "bad \udc80"}])
    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]  # type: ignore[assignment]
    with pytest.raises(InputValueError, match="nested more than"):
        idx.add(["ok"], metadatas=[deep])
    with pytest.raises(InputValueError, match="1 to 512 characters"):
        idx.add(["ok"], ids=[""])
    assert len(idx) == 0
    idx.add(["ok"], ids=["fine"])
    idx.save(tmp_path / "still-saves")


def test_filters_compare_json_types(encoder: M3Encoder) -> None:
    idx = M3Index(encoder)
    idx.add(
        ["one", "true", "float one", "text one"],
        ids=["int", "bool", "float", "str"],
        metadatas=[{"n": 1}, {"n": True}, {"n": 1.0}, {"n": "1"}],
    )
    assert {h.id for h in idx.search("one", k=4, mode="dense", filter={"n": True})} == {"bool"}
    assert {h.id for h in idx.search("one", k=4, mode="dense", filter={"n": 1})} == {"int", "float"}
    assert {h.id for h in idx.search("one", k=4, mode="dense", filter={"n": "1"})} == {"str"}
    with pytest.raises(InputTypeError, match="filter"):
        idx.search("one", filter={"n": [1]})
