"""The README's (and docs/*.md's) Python blocks run, on small checkpoints standing in for the BAAI models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from m3rag import M3Encoder

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ELSEWHERE = {"serve.md": "tests/serve/test_docs.py", "distributed.md": "tests/distributed/test_docs.py"}
"""Docs whose blocks need a running service (a server, a Ray cluster): the named test runs them against one."""
SOURCES = [README, *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in ELSEWHERE)]
BLOCKS = [
    (path.name, i, code)
    for path in SOURCES
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S))
]
STAND_INS = {  # hub id -> the session fixture holding a checkpoint of its layout
    "BAAI/bge-m3": "tiny_checkpoint",
    "BAAI/bge-reranker-v2-m3": "reranker_checkpoint",
    "BAAI/bge-small-en-v1.5": "bert_checkpoint",
    "BAAI/bge-base-en-v1.5": "bert_checkpoint",
    "BAAI/llm-embedder": "bert_checkpoint",
}
ENVIRONMENT = {
    "M3RAG_MODEL": "tiny_checkpoint",
    "M3RAG_RERANKER_MODEL": "reranker_checkpoint",
    "M3RAG_DENSE_MODEL": "bert_checkpoint",
    "M3RAG_LLM_EMBEDDER_MODEL": "bert_checkpoint",
}


@pytest.mark.parametrize(("source", "index", "code"), BLOCKS, ids=[f"{s}-{i}" for s, i, _ in BLOCKS])
def test_readme_block_runs(
    source: str, index: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    M3Encoder.clear_shared()
    monkeypatch.chdir(tmp_path)
    for variable, fixture in ENVIRONMENT.items():
        monkeypatch.setenv(variable, str(request.getfixturevalue(fixture)))
    for hub_id, fixture in STAND_INS.items():
        code = code.replace(f'"{hub_id}"', repr(str(request.getfixturevalue(fixture))))
    exec(compile(code, f"{source} block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_has_blocks() -> None:
    assert sum(1 for source, _, _ in BLOCKS if source == "README.md") >= 4
