"""LLMEmbedder: equal to FlagEmbedding 1.2.11's LLMEmbedder (fp32, live, downloaded from PyPI)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from m3rag import BGEEncoder, InputTypeError, LLMEmbedder, ModelKindError, UnknownTaskError
from m3rag.encoder import LLM_EMBEDDER_INSTRUCTIONS, LLM_EMBEDDER_TASKS
from m3rag.testing import SAMPLE_TEXTS

ATOL = 1e-5
T = list(SAMPLE_TEXTS)
LONG = [" ".join(T[i : i + 40]) for i in range(0, 225, 45)]  # over 256 (query) and 512 (key) tokens
TEXTS = T[::3] + LONG + ["", "x" * 300]


@pytest.fixture(scope="module")
def llm(bert_checkpoint: Path) -> LLMEmbedder:
    return LLMEmbedder(bert_checkpoint, device="cpu")


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::m3rag.encoder.TruncationWarning")
def test_equals_flagembedding_1_2_11(llm: LLMEmbedder, bert_checkpoint: Path, flagembedding_1_2_11: ModuleType) -> None:
    reference = flagembedding_1_2_11.LLMEmbedder(str(bert_checkpoint))  # on a CPU 1.2.11 forces use_fp16=False
    assert {task: dict(v) for task, v in LLM_EMBEDDER_INSTRUCTIONS.items()} == reference.instructions
    for task in LLM_EMBEDDER_TASKS:
        np.testing.assert_allclose(
            llm.encode_queries(TEXTS, task=task), reference.encode_queries(TEXTS, batch_size=32, task=task), atol=ATOL
        )
        np.testing.assert_allclose(llm.encode_keys(TEXTS, task=task), reference.encode_keys(TEXTS, batch_size=32, task=task), atol=ATOL)
    np.testing.assert_allclose(llm.encode_queries(TEXTS), reference.encode_queries(TEXTS, batch_size=32), atol=ATOL)  # task="qa"
    single, expected = llm.encode_queries("hello", task="chat"), reference.encode_queries("hello", task="chat")
    assert single.shape == expected.shape == (llm.dim,)
    np.testing.assert_allclose(single, expected, atol=ATOL)
    np.testing.assert_allclose(
        llm.encode_keys(T[:9], max_length=16, task="icl"), reference.encode_keys(T[:9], max_length=16, task="icl"), atol=ATOL
    )


def test_instructions_and_lengths(llm: LLMEmbedder, bert_checkpoint: Path) -> None:
    assert LLM_EMBEDDER_TASKS == ("qa", "convsearch", "chat", "lrlm", "icl", "tool")
    assert (llm.query_max_length, llm.passage_max_length) == (256, 512)
    plain = BGEEncoder(bert_checkpoint, device="cpu")
    tool = LLM_EMBEDDER_INSTRUCTIONS["tool"]
    np.testing.assert_allclose(llm.encode_queries(T[:5], task="tool"), plain.encode([tool["query"] + t for t in T[:5]]), atol=1e-6)
    np.testing.assert_allclose(llm.encode_keys(T[:5], task="tool"), plain.encode([tool["key"] + t for t in T[:5]]), atol=1e-6)
    np.testing.assert_array_equal(llm.encode_corpus(T[:5], task="tool"), llm.encode_keys(T[:5], task="tool"))
    np.testing.assert_allclose(asyncio.run(llm.aencode_keys(T[:5], task="chat")), llm.encode_keys(T[:5], task="chat"), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(llm.aencode_queries(T[:5], task="lrlm")), llm.encode_queries(T[:5], task="lrlm"), atol=1e-6)


def test_unknown_task_and_conversations_as_lists(llm: LLMEmbedder) -> None:
    with pytest.raises(UnknownTaskError, match=r"'summarize'.*qa, convsearch, chat, lrlm, icl, tool"):
        llm.encode_queries(["q"], task="summarize")
    with pytest.raises(KeyError):  # what FlagEmbedding raised
        llm.encode_keys(["k"], task="QA")
    with pytest.raises(InputTypeError, match=r"queries\[0\] is a list of turns.*conversation"):
        llm.encode_queries([["hi", "hello, how can I help?"]], task="convsearch")  # type: ignore[list-item]


def test_a_reranker_checkpoint_is_refused(reranker_checkpoint: Path) -> None:
    with pytest.raises(ModelKindError):
        LLMEmbedder(reranker_checkpoint, device="cpu")


def test_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M3RAG_LLM_EMBEDDER_MODEL", raising=False)
    assert LLMEmbedder.default_model() == "BAAI/llm-embedder"
