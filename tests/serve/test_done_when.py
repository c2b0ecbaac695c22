"""Issue 13's done-when: a LangChain chain and a LlamaIndex query engine in two separate processes
share one ``m3rag serve`` and get the same results as with a local encoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import API_KEY, REPO, Server

pytestmark = pytest.mark.service


def test_langchain_chain_and_llama_index_engine_share_one_server(server: Server, tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "M3RAG_API_KEY": API_KEY, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    script = Path(__file__).with_name("framework_client.py")
    texts_before = server.metric("m3rag_texts_total", endpoint="/v1/encode")
    processes = {
        kind: subprocess.Popen(
            [sys.executable, str(script), kind, server.url, str(tiny_checkpoint), str(tmp_path / f"{kind}.json")],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in ("langchain", "llama_index")
    }
    for kind, process in processes.items():  # both run at once against the one server
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{kind} client failed:\n{err}"
    for kind in processes:
        result = json.loads((tmp_path / f"{kind}.json").read_text())
        remote, local = result["remote"], result["local"]
        assert len(remote) == len(local) == 5
        for got, want in zip(remote, local):
            assert got["answer"] == want["answer"]  # same context passages, in the same order
            assert [h[0] for h in got["hits"]] == [h[0] for h in want["hits"]] and len(got["hits"]) == 3
            np.testing.assert_allclose([h[1] for h in got["hits"]], [h[1] for h in want["hits"]], atol=1e-5)
        assert any("Context" in r["answer"] or "context" in r["answer"] for r in remote)
    assert server.metric("m3rag_texts_total", endpoint="/v1/encode") - texts_before >= 2 * 60  # both indexed their corpus through it
