"""Every notebook is committed executed (readers on GitHub see its outputs) and still runs top to
bottom (on the small checkpoints via M3RAG_MODEL and M3RAG_RERANKER_MODEL). Refresh them with
``python notebooks/execute.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.notebooks]

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_encoder.ipynb",
        "02_langchain_rag.ipynb",
        "03_llamaindex_rag.ipynb",
        "04_bge_family.ipynb",
        "05_stores.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed_and_still_runs(
    path: Path, tiny_checkpoint: Path, reranker_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("outputs") or c.get("execution_count") for c in code), "commit notebooks executed (python notebooks/execute.py)"
    for cell in code:
        cell.outputs = []
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("M3RAG_RERANKER_MODEL", str(reranker_checkpoint))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
