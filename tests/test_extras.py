"""A missing framework extra is named, with the pip command that installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("package", "blocked", "extra"),
    [("m3rag.langchain", "langchain_core", "m3rag[langchain]"), ("m3rag.llama_index", "llama_index", "m3rag[llama-index]")],
)
def test_missing_framework_gives_the_install_command(package: str, blocked: str, extra: str) -> None:
    code = (
        f"import sys\nsys.modules[{blocked!r}] = None  # as if not installed\n"
        f"try:\n    import {package}\nexcept ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.startswith("ImportError") and f'pip install "{extra}"' in out, out


def test_a_broken_framework_keeps_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from m3rag._extras import require_extra

    (tmp_path / "m3rag_fake_framework.py").write_text("import m3rag_fake_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="m3rag_fake_dependency"):  # installed, but one of its imports fails
        require_extra("m3rag_fake_framework", "x", "m3rag.x")
    with pytest.raises(ImportError, match=r'm3rag.x needs no_such_package_for_m3rag.*pip install "m3rag\[x\]"'):
        require_extra("no_such_package_for_m3rag.core", "x", "m3rag.x")
