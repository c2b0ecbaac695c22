"""benchmarks/footprint.py runs (in its --quick setting) and prints its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "footprint.py"


@pytest.mark.slow
def test_the_footprint_benchmark_prints_its_tables() -> None:
    root = str(SCRIPT.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, env=env, timeout=600, check=True).stdout
    assert out.startswith("CPU: ")
    for setting in ("ColBERT float16 (default)", "ColBERT float32", "no ColBERT (--no-colbert)", "no ColBERT, HNSW dense"):
        assert f"| {setting} |" in out, setting
    assert "| file | passages | peak RSS |" in out and out.count(" MB |") >= 8
