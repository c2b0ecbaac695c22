"""The encoder and retrieval benchmarks run end to end on a small setting and print their tables
(the figures themselves are the benchmarks' business, not the tests')."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("CPU: ") and " cores, " in run.stdout.splitlines()[0]
    return run.stdout


def test_encode(tiny_checkpoint: Path) -> None:
    out = _run("encode.py", "--checkpoint", str(tiny_checkpoint), "--texts", "8", "--max-tokens", "64", "--repeats", "1",
               "--flag-batch-sizes", "8", "--latency-calls", "3", "--no-memory")  # fmt: skip
    ratios = re.findall(r"^\| m3rag fp32 \| [\d,]+ \| (\d+\.\d\d)x \|", out, flags=re.M)
    assert len(ratios) == 1 and float(ratios[0]) > 0
    diffs = re.search(r"max abs difference: dense ([\d.e+-]+), sparse ([\d.e+-]+), colbert ([\d.e+-]+)", out)
    assert diffs and max(float(d) for d in diffs.groups()) < 1e-5  # parity with FlagEmbedding, in the benchmark's words


def test_encode_profile(tiny_checkpoint: Path) -> None:
    out = _run("encode_profile.py", "--checkpoint", str(tiny_checkpoint), "--texts", "8", "--max-tokens", "64",
               "--repeats", "1", "--batch-tokens", "256")  # fmt: skip
    shares = re.findall(r"^\| (tokenize|transformer: linear GEMMs[^|]*|head: colbert_vectors) \| [\d,.]+ \| \d+% \|$", out, flags=re.M)
    assert len(shares) == 3, out
    assert re.search(r"FlagEmbedding fp32 \(batch 8\): [\d,]+ tok/s -> m3rag \d+\.\d\dx, ceiling \d+\.\d\dx", out), out


def test_fidelity(tiny_checkpoint: Path) -> None:
    out = _run("fidelity.py", "--checkpoint", str(tiny_checkpoint))
    assert re.search(r"^\| dense_cosine_mean \| 0\.9\d+ \|", out, flags=re.M), out


def test_concurrency(tiny_checkpoint: Path) -> None:
    out = _run("concurrency.py", "--checkpoint", str(tiny_checkpoint), "--requests", "16", "--repeats", "1")
    rows = re.findall(r"^\| (1|8|32) \| [\d,.]+ \| [\d,.]+ \| \d+\.\d\dx \|$", out, flags=re.M)
    assert rows == ["1", "8", "32"] and "lone caller p50 latency" in out


def test_retrieval() -> None:
    out = _run("retrieval.py", "--quick", "--no-emulation", "--llama-python", "")
    for section in ("### 1. Sparse search", "### 2. ColBERT rerank", "### 3. Dense search", "### 6. `M3Index.search`", "### 7. Threads"):
        assert section in out, section
    assert "Summary: speed-ups measured in the same run" in out
