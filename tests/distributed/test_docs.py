"""docs/distributed.md's Python blocks run, in order, on the local Ray (CPU actors, the small
checkpoint standing in for BAAI/bge-m3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)

pytestmark = pytest.mark.service


def test_the_doc_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 2


def test_the_blocks_run(ray_cluster: None, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__doc__"}
    for i, block in enumerate(BLOCKS):
        code = block.replace('"BAAI/bge-m3"', repr(str(tiny_checkpoint))).replace("num_gpus=1", "num_gpus=0")
        exec(compile(code, f"docs/distributed.md block {i}", "exec"), namespace)
