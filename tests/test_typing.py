"""mypy (the project's strict configuration) accepts the package and what the README and the docs show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USAGE = """
from m3rag import BGEEncoder, BGEReranker, LLMEmbedder, M3Index
from m3rag.langchain import BGEEmbeddings, M3Embeddings, M3Retriever
from m3rag.langchain import BGEReranker as LangChainBGEReranker
from m3rag.llama_index import BGEEmbedding, M3Embedding, M3Reranker
from m3rag.llama_index import BGEReranker as LlamaIndexBGEReranker

M3Embedding("BAAI/bge-m3")
M3Reranker("BAAI/bge-m3", top_n=2)
BGEEmbedding("BAAI/bge-small-en-v1.5", query_instruction="")
LlamaIndexBGEReranker("BAAI/bge-reranker-v2-m3", top_n=3)
M3Embeddings(model_name="BAAI/bge-m3", model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})
BGEEmbeddings(model_name="BAAI/bge-base-en-v1.5", model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True})
compressor = LangChainBGEReranker(model_name="BAAI/bge-reranker-v2-m3", top_n=3)
M3Retriever.from_texts(["a"], model_name="BAAI/bge-m3", reranker=compressor)
scores: list[float] = BGEReranker("BAAI/bge-reranker-v2-m3").compute_score([("q", "p")], normalize=True)
vectors = BGEEncoder("BAAI/bge-small-en-v1.5").encode_queries(["q"])
keys = LLMEmbedder().encode_keys(["k"], task="tool")
hits = M3Index.from_texts(["a"]).search("a", reranker=BGEReranker.shared())
"""


@pytest.mark.slow
def test_mypy_accepts_the_package_the_readme_and_the_family_api(tmp_path: Path) -> None:
    from mypy import api

    readme = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    docs = ROOT / "docs" / "family.md"
    if docs.is_file():
        readme += re.findall(r"```python\n(.*?)```", docs.read_text(encoding="utf-8"), flags=re.S)
    files = []
    for i, block in enumerate([*readme, USAGE]):
        path = tmp_path / f"block_{i}.py"
        path.write_text(block, encoding="utf-8")
        files.append(str(path))
    # one run for both (mypy's start-up is most of its time): the package, then the snippets that use it
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(ROOT / "m3rag"), *files])
    assert status == 0, out + err
