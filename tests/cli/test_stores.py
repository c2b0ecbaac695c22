"""The command line on Qdrant (embedded) and milvus-lite: the same results as the local index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from m3rag.cli import main

pytestmark = pytest.mark.service


def _search(capsys: pytest.CaptureFixture[str], *target: str, query: str = "la montagne et la neige") -> list[tuple[str, float]]:
    assert main(["search", *target, query, "-k", "4", "--rerank", "colbert", "--json"]) == 0
    return [(h["id"], round(h["score"], 4)) for h in map(json.loads, capsys.readouterr().out.splitlines())]


@pytest.mark.parametrize("engine", ["qdrant", "milvus"])
def test_index_search_and_migrate_on_a_store(engine: str, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"qdrant:{tmp_path / 'qdrant'}" if engine == "qdrant" else f"milvus:{tmp_path / 'milvus.db'}"
    assert main(["index", str(corpus), "--index", str(tmp_path / "local"), "--chunk-tokens", "64", "--overlap", "8"]) == 0
    assert main(["index", str(corpus), "--store", spec, "--chunk-tokens", "64", "--overlap", "8"]) == 0
    out = capsys.readouterr().out
    assert "8 files (re)indexed" in out
    assert main(["index", str(corpus), "--store", spec, "--chunk-tokens", "64", "--overlap", "8"]) == 0
    assert "0 files (re)indexed, 8 unchanged" in capsys.readouterr().out
    local = _search(capsys, str(tmp_path / "local"))
    assert _search(capsys, "--store", spec) == local
    assert main(["migrate", str(tmp_path / "local"), "--store", spec, "--collection", "copied"]) == 0
    assert "documents copied" in capsys.readouterr().out
    assert _search(capsys, "--store", spec, "--collection", "copied") == local
    assert main(["index", str(corpus), "--store", spec, "--no-colbert"]) == 2
    assert "configure a local index" in capsys.readouterr().err
