"""A process killed in the middle of saving leaves the previous index loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from m3rag import M3Encoder, M3Index

pytestmark = [pytest.mark.slow]

CHILD = textwrap.dedent(
    """
    import sys
    from m3rag import M3Encoder, M3Index
    from m3rag.testing import SAMPLE_TEXTS
    checkpoint, path = sys.argv[1], sys.argv[2]
    index = M3Index(M3Encoder(checkpoint, device="cpu"), colbert_dtype="float32")
    index.add(list(SAMPLE_TEXTS[:150]), ids=[f"d{i}" for i in range(150)])
    index.save(path)
    print("saved", flush=True)
    i = 0
    while True:  # keep saving bigger versions until killed
        index.add([SAMPLE_TEXTS[i % 200]], ids=[f"extra{i}"])
        index.save(path)
        i += 1
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_kill_during_save_keeps_a_loadable_index(tiny_checkpoint: Path, tmp_path: Path, delay: float) -> None:
    path = tmp_path / "idx"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_checkpoint), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "saved"
        time.sleep(delay)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    index = M3Index.load(path, M3Encoder(tiny_checkpoint, device="cpu"))
    ids = index.ids
    assert ids[:150] == [f"d{i}" for i in range(150)]
    assert ids[150:] == [f"extra{i}" for i in range(len(ids) - 150)]  # a complete earlier or later version
    assert index.search("anything", k=3)
