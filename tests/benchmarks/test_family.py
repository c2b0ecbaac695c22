"""benchmarks/family.py runs end to end (--quick: tiny checkpoints) and reports what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "family.py"


@pytest.mark.slow
def test_quick_run_reports_ratios_and_fidelity() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--quick"], check=True, capture_output=True, text=True, timeout=900).stdout
    assert out.startswith("# BGE family benchmark") and "CPU: " in out and "threads" in out
    for section in ("## Dense: BGEEncoder vs FlagModel", "## Reranker: BGEReranker vs FlagReranker"):
        assert section in out
    for run in ("m3rag BGEEncoder fp32", "m3rag BGEEncoder bf16", "m3rag BGEReranker fp32", "m3rag BGEReranker bf16"):
        assert re.search(rf"\| {run} \| [\d,]+ \| \d+\.\d\dx \|", out), run
    # fp32 parity with FlagEmbedding, in the benchmark's own words
    diffs = [float(d) for d in re.findall(r"m3rag fp32 vs Flag\w+ max abs difference ([\d.e+-]+)", out)]
    assert len(diffs) == 3 and max(diffs) < 1e-5  # passages, queries, pairs
    assert "bf16 vs fp32 cosine mean" in out and "Kendall tau" in out
