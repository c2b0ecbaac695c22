"""benchmarks/stores.py runs (in its --quick setting) and prints its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "stores.py"


@pytest.mark.slow
def test_the_stores_benchmark_prints_its_table() -> None:
    root = str(SCRIPT.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, env=env, timeout=600, check=True)
    out = done.stdout
    assert "CPU: " in out and "flags:" in out
    assert "| 200 documents | local | Qdrant embedded | milvus-lite |" in out
    for row in ("add (docs/s)", "dense (latency)", "hybrid + hybrid rerank (latency)", "memory after add (MiB)"):
        assert f"| {row} |" in out, row
    requests = next(line for line in out.splitlines() if line.startswith("| requests / search, hybrid + hybrid rerank |"))
    assert requests == "| requests / search, hybrid + hybrid rerank | 0 | 1 | 1 + encoder |"
