"""docs/serve.md's Python blocks run against a real server (the OpenAI-client snippets, fenced
``py``, need packages that are not test dependencies)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from m3rag import M3Encoder

from .conftest import API_KEY, Server

pytestmark = pytest.mark.service

DOC = Path(__file__).resolve().parents[2] / "docs" / "serve.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_doc_block_runs(block: int, server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    M3Encoder.clear_shared()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("M3RAG_API_KEY", API_KEY)
    code = BLOCKS[block].replace("http://127.0.0.1:8000", server.url).replace('"..."', repr(API_KEY))
    exec(compile(code, f"docs/serve.md block {block}", "exec"), {"__name__": "__doc__"})
