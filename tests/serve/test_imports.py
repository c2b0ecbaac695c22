"""The client never imports the web stack; a missing extra names the install command."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_importing_m3rag_and_the_client_does_not_import_fastapi_or_uvicorn() -> None:
    code = (
        "import sys, m3rag, m3rag.serve, m3rag.serve.client, m3rag.serve.wire\n"
        "from m3rag.encoder import resolve_encoder\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'uvicorn', 'starlette', 'prometheus_client')]\n"
        "assert not bad, bad\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_a_missing_extra_names_the_install_command() -> None:
    blocked = "import sys\nsys.modules['fastapi'] = None\n"
    app = _run(blocked + "import m3rag.serve.app")
    assert app.returncode != 0 and 'pip install "m3rag[serve]"' in app.stderr and "ImportError" in app.stderr
    command = _run(blocked + "from m3rag.serve.__main__ import main\nraise SystemExit(main(['--model', 'x']))")
    assert command.returncode == 2 and 'pip install "m3rag[serve]"' in command.stderr


def test_a_client_process_with_every_component_imports_no_torch() -> None:
    """A worker that reaches the model through `m3rag serve` does not pay torch's memory (~300 MiB)."""
    code = (
        "import sys, m3rag, m3rag.serve.client, m3rag.index, m3rag.reranking, m3rag.stores, m3rag.langchain, m3rag.llama_index\n"
        "from m3rag.stores import LocalStore, QdrantStore\n"
        "bad = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
