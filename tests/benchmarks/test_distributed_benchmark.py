"""benchmarks/distributed.py --quick runs end to end and prints its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.service]


def test_quick_run_prints_the_tables(tiny_checkpoint: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "distributed.py"), "--quick", "--checkpoint", str(tiny_checkpoint)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert out.startswith("CPU: ") and "cores" in out.splitlines()[0]
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    setups = [r for r in rows if r.startswith(("| in-process", "| Ray, "))]
    cores = os.cpu_count()
    expected = [f"in-process M3Encoder, {cores} threads", "Ray, 1 CPU worker x", "Ray, 2 CPU workers x"]
    assert all(r.split("|")[1].strip().startswith(e) for r, e in zip(setups, expected, strict=True))
    for row in setups:
        cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[3]) > 0
    assert "Ray's time per block" in out and "driver ingest" in out
    estimates = [r for r in rows if r.startswith(("| measured CPU worker", "| assumed GPU"))]
    assert len(estimates) == 3 and all(len(r.strip("|").split("|")) == 7 for r in estimates)
