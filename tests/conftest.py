"""Session fixtures: small checkpoints in the exact bge-m3 layout, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from m3rag import M3Encoder
from m3rag.testing import build_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-m3", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_checkpoint: Path) -> M3Encoder:
    return M3Encoder(tiny_checkpoint, device="cpu", dtype="float32")
