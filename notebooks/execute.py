"""Execute the notebooks in place, keeping their outputs: what is committed, so readers see them.

    python notebooks/execute.py [NOTEBOOK.ipynb ...]      (default: every notebook here)

Runs offline on the demo checkpoints (tiny random models in the BAAI layouts, built into the
repository's .m3rag-demo-* directories if missing), so the numbers show the pipeline, not the
models' quality. With access to the hub, run the notebooks yourself without these variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def demo_models() -> dict[str, str]:
    """Environment variables naming the demo checkpoints, relative to this folder (the notebooks' cwd)."""
    from m3rag.testing import build_checkpoint, build_reranker_checkpoint

    model, reranker = ROOT / ".m3rag-demo-model", ROOT / ".m3rag-demo-reranker"
    if not (model / "config.json").exists():
        build_checkpoint(model, exist_ok=True)
    if not (reranker / "config.json").exists():
        build_reranker_checkpoint(reranker, base="xlm-roberta", exist_ok=True)
    return {"M3RAG_MODEL": os.path.relpath(model, HERE), "M3RAG_RERANKER_MODEL": os.path.relpath(reranker, HERE)}


def execute(path: Path, env: dict[str, str]) -> None:
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(env)
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend: figures become outputs
    NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(HERE)}}).execute()
    notebook.metadata.pop("widgets", None)  # progress-bar widget state: noise in a diff
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    nbformat.write(notebook, path)
    print(f"executed {path.name}")


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted(HERE.glob("*.ipynb"))
    env = demo_models()
    for path in paths:
        execute(path, env)


if __name__ == "__main__":
    main(sys.argv[1:])
