from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_core_imports_without_either_framework() -> None:
    code = (
        "import sys, m3rag, m3rag.index, m3rag.scoring, m3rag.reranking, m3rag.testing\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'llama_index')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("m3rag").joinpath("py.typed").is_file()
