"""The README's Python blocks run, on the small checkpoint standing in for BAAI/bge-m3."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from m3rag import M3Encoder

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("block", range(len(BLOCKS)))
def test_readme_block_runs(block: int, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    M3Encoder.clear_shared()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    code = BLOCKS[block].replace('"BAAI/bge-m3"', repr(str(tiny_checkpoint)))
    exec(compile(code, f"README.md block {block}", "exec"), {"__name__": "__readme__"})


def test_readme_has_blocks() -> None:
    assert len(BLOCKS) >= 4
