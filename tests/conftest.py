"""Session fixtures: small checkpoints in the exact bge-m3 layout, built once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from m3rag import M3Encoder
from m3rag.testing import build_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-m3", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_checkpoint: Path) -> M3Encoder:
    return M3Encoder(tiny_checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def model_name(tiny_checkpoint: Path) -> str:
    """The tiny checkpoint as a model name, the way framework users pass one."""
    return str(tiny_checkpoint)


@pytest.fixture()
def load_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model load (``from_pretrained``) of the test, by directory."""
    from m3rag.encoder import checkpoint

    loads: list[str] = []
    real = checkpoint.load_model

    def counting(directory: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(directory))
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_model", counting)
    return loads


@pytest.fixture(autouse=True)
def fresh_registry() -> None:
    """Every test starts with no shared encoder, so load-count assertions see their own loads."""
    M3Encoder.clear_shared()


def pytest_report_header(config: pytest.Config) -> str:
    """The versions a dependency break would come from, at the top of every run's log."""
    from tests.reference import versions  # conftest is not imported as part of the tests package

    return f"m3rag test dependencies: {versions()}"
