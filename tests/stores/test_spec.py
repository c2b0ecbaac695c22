"""open_store: the command line's --store values."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder, M3Index, ServiceUnavailableError
from m3rag.stores import MilvusStore, QdrantStore, open_store


@pytest.mark.parametrize("spec", ["my-index", "./data/idx", "/abs/index", "C:\\indexes\\a", "qdrant_index", "milvus-files/x"])
def test_a_directory_is_the_local_store(spec: str) -> None:
    assert open_store(spec) is None
    assert open_store(Path(spec)) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("qdrant:", "qdrant:PATH"),
        ("milvus:", "milvus:PATH"),
        ("milvus:index.sqlite", "ending in .db"),
        ("redis://localhost:6379", "unknown store"),
        ("qdrant+ftp://host:1", "qdrant\\+http://HOST:PORT"),
        ("qdrant+http://", "qdrant\\+http://HOST:PORT"),
        ("milvus+http:/host", "milvus\\+http://HOST:PORT"),
        ("milvus+localhost:19530", "milvus\\+http://HOST:PORT"),
    ],
)
def test_bad_specs_say_what_was_expected(spec: str, message: str) -> None:
    with pytest.raises(InputValueError, match=message):
        open_store(spec)


def test_bad_argument_types() -> None:
    with pytest.raises(InputTypeError):
        open_store(42)  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="collection"):
        open_store("qdrant::memory:", collection="")


@pytest.mark.service
def test_embedded_specs_open_their_stores(encoder: M3Encoder, tmp_path: Path) -> None:
    memory = open_store("qdrant::memory:")
    assert isinstance(memory, QdrantStore) and memory.collection == "m3rag" and memory.address == ":memory:"
    on_disk = open_store(f"QDRANT:{tmp_path / 'q'}", collection="docs")
    assert isinstance(on_disk, QdrantStore) and on_disk.collection == "docs" and on_disk.address == str(tmp_path / "q")
    lite = open_store(f"milvus:{tmp_path / 'm.db'}", collection="docs")
    assert isinstance(lite, MilvusStore) and lite.address == str(tmp_path / "m.db")
    for store in (memory, on_disk, lite):
        index = M3Index(encoder, store=store)
        index.add(["BGE M3 gives dense, sparse and ColBERT vectors."], ids=["a"])
        assert index.search("sparse vectors", k=1)[0].id == "a"
        index.close()


@pytest.mark.service
@pytest.mark.parametrize("engine", ["qdrant", "milvus"])
def test_server_specs_connect_to_the_named_address(engine: str, refused_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "")
    start = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as error:
        open_store(f"{engine}+{refused_address}", collection="docs")
    assert error.value.address == refused_address and time.monotonic() - start < 15
