"""What the remote stores share: filter terms with JSON's equality, keys, insertion order,
partial writes, lazy imports of the extras."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from m3rag import PartialWriteError, ServiceUnavailableError
from m3rag.index.filters import matches
from m3rag.stores.remote import InsertionClock, document_key, filter_term, filter_terms, query_terms, write_batches

VALUES = [True, False, 1, 1.0, 0, -0.0, 0.0, "1", "true", 2.5, 10**20, 1e20, 2**53 + 1, float(2**53), "", 'é "q" \\']


@pytest.mark.parametrize("a", VALUES)
@pytest.mark.parametrize("b", VALUES)
def test_equal_terms_exactly_when_filters_match(a: object, b: object) -> None:
    assert (filter_term("k", a) == filter_term("k", b)) == matches({"k": a}, {"k": b})  # type: ignore[arg-type, dict-item]


def test_terms_of_metadata_and_filters() -> None:
    meta = {"lang": "fr", "n": 3, "tags": ["a"], "nested": {"k": 1}, "none": None, 'we"ird.key=': True}
    terms = filter_terms(meta)
    assert len(terms) == 3 and all(len(t) == 32 and set(t) <= set("0123456789abcdef") for t in terms)
    assert set(query_terms({"lang": "fr", "n": 3.0})) <= set(terms) and query_terms({'we"ird.key=': True})[0] in terms
    assert filter_term("a=1", "b") != filter_term("a", "1=b") and query_terms(None) == []


def test_document_keys_are_stable_uuids() -> None:
    key = document_key("doc-1")
    assert key == str(uuid.UUID(key)) and key == document_key("doc-1") != document_key("doc-2")
    assert key == "ddb8bb76-3ad6-5e98-a7d0-494a53943947"  # pinned: another key would orphan every stored document


def test_insertion_numbers_increase() -> None:
    clock = InsertionClock()
    first = clock.take(5)
    second = clock.take(1)
    assert second >= first + 5 and clock.take(3) > second


def test_write_batches_reports_the_written_ids() -> None:
    sent: list[tuple[int, int]] = []

    def send(start: int, stop: int) -> None:
        if start == 4:
            raise ServiceUnavailableError("gone", "http://x")
        sent.append((start, stop))

    with pytest.raises(PartialWriteError, match="4 of 7") as error:
        write_batches(list("abcdefg"), 2, send, "store")
    assert error.value.written_ids == list("abcd") and sent == [(0, 2), (2, 4)]
    with pytest.raises(ServiceUnavailableError):  # the first batch failed: the store's own error
        write_batches(list("ab"), 2, lambda a, b: send(4, 6), "store")


@pytest.mark.slow
def test_importing_the_stores_imports_no_engine_client() -> None:
    code = (
        "import sys, m3rag.stores, m3rag.stores.remote, m3rag.stores.spec\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('qdrant_client', 'pymilvus')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.parametrize(("module", "name", "extra"), [("qdrant_client", "QdrantStore", "qdrant"), ("pymilvus", "MilvusStore", "milvus")])
def test_a_missing_extra_names_its_install_command(module: str, name: str, extra: str) -> None:
    code = (
        f"import sys\nsys.modules[{module!r}] = None\n"
        "try:\n"
        f"    from m3rag.stores import {name}\n"
        "except ImportError as exc:\n"
        f"    assert 'pip install \"m3rag[{extra}]\"' in str(exc), str(exc)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
