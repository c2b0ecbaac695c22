"""Session fixtures: small checkpoints in the exact BAAI layouts (bge-m3, bge-*-en-v1.5, the
rerankers), built once per test session."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from m3rag import M3Encoder, M3Index
from m3rag.testing import build_bert_checkpoint, build_checkpoint, build_reranker_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-m3", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def bert_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bge-*-en-v1.5 / llm-embedder layout: a BERT with a WordPiece vocab.txt, CLS pooling."""
    return build_bert_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-bert", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def reranker_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bge-reranker-v2-m3 layout: XLM-R sequence classification with one label."""
    return build_reranker_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-reranker", base="xlm-roberta", seed=0)


@pytest.fixture(scope="session")
def bert_reranker_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT cross-encoder (segment B typed 1) on the WordPiece tokenizer."""
    return build_reranker_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-bert-reranker", base="bert", seed=0)


@pytest.fixture(scope="session")
def flagembedding_1_2_11(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """FlagEmbedding 1.2.11's flag_models.py (the LLMEmbedder reference), downloaded from PyPI into
    pytest's cache directory once."""
    from tests.reference import legacy_flag_models

    cache = getattr(request.config, "cache", None)
    directory = cache.mkdir("flagembedding-1.2.11") if cache is not None else tmp_path_factory.mktemp("flagembedding-1.2.11")
    return legacy_flag_models(Path(directory))


@pytest.fixture(scope="session")
def encoder(tiny_checkpoint: Path) -> M3Encoder:
    return M3Encoder(tiny_checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def index(encoder: M3Encoder) -> M3Index:
    """The index tests' corpus (tests/helpers.py) in a local index, exact ColBERT store."""
    from tests.helpers import DOCS, IDS, METAS

    idx = M3Index(encoder, colbert_dtype="float32")
    idx.add(DOCS, ids=IDS, metadatas=METAS)
    return idx


@pytest.fixture(scope="session")
def model_name(tiny_checkpoint: Path) -> str:
    """The tiny checkpoint as a model name, the way framework users pass one."""
    return str(tiny_checkpoint)


@pytest.fixture
def load_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model load (``from_pretrained``) of the test, by directory."""
    from m3rag.encoder import checkpoint

    loads: list[str] = []
    real = checkpoint.load_model

    def counting(directory: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(directory))
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_model", counting)
    return loads


@pytest.fixture(autouse=True)
def fresh_registry() -> None:
    """Every test starts with no shared encoder, so load-count assertions see their own loads."""
    M3Encoder.clear_shared()


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions a dependency break would come from, at the top of every run's log."""
    from tests.reference import versions  # conftest is not imported as part of the tests package

    tier = "full" if config.getoption("--full") else f"fast (tests marked {', '.join(FULL_ONLY)} need --full)"
    return [f"m3rag test dependencies: {versions()}", f"m3rag test tier: {tier}"]


FULL_ONLY = ("slow", "notebooks", "service")
"""Markers of the tests that only ``pytest --full`` (CI) runs."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help=f"run every test, also those marked {', '.join(FULL_ONLY)} (what CI runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full") or config.getoption("markexpr"):
        return
    deselected = [item for item in items if any(item.get_closest_marker(m) for m in FULL_ONLY)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in set(deselected)]
