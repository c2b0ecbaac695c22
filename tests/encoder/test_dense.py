"""BGEEncoder: the dense BGE embedder, equal to FlagEmbedding's FlagModel (fp32, live)."""

from __future__ import annotations

import asyncio
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from m3rag import BGEEncoder, InputTypeError, InputValueError, M3Encoder, ModelKindError
from m3rag.encoder import BGE_EN_QUERY_INSTRUCTION, BGE_ZH_QUERY_INSTRUCTION, TruncationWarning
from m3rag.encoder.instructions import apply_instruction, family_query_instruction
from m3rag.testing import SAMPLE_TEXTS, build_bert_checkpoint
from tests.reference import reference

ATOL = 1e-5
T = list(SAMPLE_TEXTS)
LONG = [" ".join(T[i : i + 40]) for i in range(0, 225, 45)]  # 600+ tokens: truncated at 512
EDGE = ["", "   ", "Héllo  WÖRLD!!", "naïve café", "[UNK] and [SEP] as text", "<s> and </s> as text", "tab\there", "a {} b {0}", "x" * 300]
TEXTS = T + LONG + EDGE


@pytest.fixture(scope="module")
def mean_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights, declaring mean pooling in sentence-transformers' 1_Pooling/config.json."""
    return build_bert_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-bert-mean", pooling="mean")


@pytest.fixture(scope="module")
def dense(bert_checkpoint: Path) -> BGEEncoder:
    return BGEEncoder(bert_checkpoint, query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION, device="cpu")


def _flag_model(path: Path, **kwargs: Any) -> Any:
    FlagModel = reference("FlagEmbedding", "FlagModel")
    return FlagModel(str(path), use_fp16=False, devices="cpu", **kwargs)


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::m3rag.encoder.TruncationWarning")
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_equals_flagmodel(bert_checkpoint: Path, pooling: str) -> None:
    kwargs: dict[str, Any] = dict(pooling_method=pooling, query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION)
    flag, ours = _flag_model(bert_checkpoint, **kwargs), BGEEncoder(bert_checkpoint, device="cpu", **kwargs)  # type: ignore[arg-type]
    # batch_size 32 keeps FlagModel's padded batches small; batching never changes a vector
    np.testing.assert_allclose(ours.encode(TEXTS), flag.encode(TEXTS, batch_size=32), atol=ATOL)
    np.testing.assert_allclose(ours.encode_queries(T), flag.encode_queries(T, batch_size=32), atol=ATOL)
    np.testing.assert_allclose(ours.encode_corpus(T), flag.encode_corpus(T, batch_size=32), atol=ATOL)
    np.testing.assert_allclose(ours.encode(TEXTS, batch_size=7, max_length=16), flag.encode(TEXTS, batch_size=7, max_length=16), atol=ATOL)
    single, flag_single = ours.encode(T[3]), flag.encode(T[3])
    assert single.shape == flag_single.shape == (ours.dim,) and single.dtype == np.float32
    np.testing.assert_allclose(single, flag_single, atol=ATOL)
    raw = _flag_model(bert_checkpoint, pooling_method=pooling, normalize_embeddings=False)
    np.testing.assert_allclose(ours.encode(T, normalize_embeddings=False), raw.encode(T, batch_size=32), atol=ATOL)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::m3rag.encoder.TruncationWarning")
def test_equals_flagmodel_on_an_xlm_roberta_checkpoint(tiny_checkpoint: Path, encoder: M3Encoder) -> None:
    """XLM-R checkpoints (bge-m3's dense side, multilingual BGE models) run the same way."""
    flag, ours = _flag_model(tiny_checkpoint), BGEEncoder(tiny_checkpoint, device="cpu")
    texts = T[::2] + LONG[:2] + EDGE
    np.testing.assert_allclose(ours.encode(texts), flag.encode(texts, batch_size=32), atol=ATOL)
    np.testing.assert_allclose(ours.encode(T[:40]), encoder.encode(T[:40]).dense, atol=ATOL)  # = M3's dense vectors


@pytest.mark.parity
def test_equals_flagmodel_with_formats_and_passage_instruction(bert_checkpoint: Path) -> None:
    fmt = "<instruct>{}\\n<query>{}"  # FlagEmbedding turns the literal backslash-n into a newline
    kwargs: dict[str, Any] = dict(
        query_instruction_for_retrieval="Find it", query_instruction_format=fmt, passage_instruction_for_retrieval="Doc: "
    )
    flag, ours = _flag_model(bert_checkpoint, **kwargs), BGEEncoder(bert_checkpoint, device="cpu", **kwargs)
    np.testing.assert_allclose(ours.encode_queries(T[:40]), flag.encode_queries(T[:40]), atol=ATOL)
    np.testing.assert_allclose(ours.encode_corpus(T[:40]), flag.encode_corpus(T[:40]), atol=ATOL)
    assert apply_instruction("Find it", "q", fmt) == "<instruct>Find it\n<query>q"


@pytest.mark.parity
def test_use_fp16_on_cpu_is_float32_not_flagmodels_rounded_weights(bert_checkpoint: Path) -> None:
    """FlagModel's default use_fp16=True on a CPU loads fp16 weights, then computes in fp32: about
    1e-3 off a float32 run. m3rag's use_fp16=True means float16 on GPUs only, so on a CPU it is exact."""
    exact = _flag_model(bert_checkpoint).encode(T)
    rounded = reference("FlagEmbedding", "FlagModel")(str(bert_checkpoint), devices="cpu").encode(T)  # FlagModel's defaults
    ours = BGEEncoder(bert_checkpoint, use_fp16=True, devices="cpu")
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.encode(T), exact, atol=ATOL)
    assert float(np.abs(rounded - exact).max()) > 1e-4


# --------------------------------------------------------------------------------------- behaviour
def test_family_instruction_from_the_model_name(bert_checkpoint: Path, tmp_path: Path) -> None:
    assert family_query_instruction("BAAI/bge-small-en-v1.5") == BGE_EN_QUERY_INSTRUCTION
    assert family_query_instruction("BAAI/bge-large-en") == BGE_EN_QUERY_INSTRUCTION
    assert family_query_instruction("/cache/models--BAAI--bge-base-zh-v1.5/snapshots/abc123") == BGE_ZH_QUERY_INSTRUCTION
    for name in ("BAAI/bge-m3", "BAAI/llm-embedder", "BAAI/bge-reranker-v2-m3", "intfloat/e5-base-v2", str(bert_checkpoint)):
        assert family_query_instruction(name) is None, name
    named = tmp_path / "bge-base-en-v1.5"
    named.symlink_to(bert_checkpoint, target_is_directory=True)
    enc = BGEEncoder(named, device="cpu")
    assert enc.query_instruction_for_retrieval == BGE_EN_QUERY_INSTRUCTION
    np.testing.assert_allclose(enc.encode_queries(T[:3]), enc.encode([BGE_EN_QUERY_INSTRUCTION + t for t in T[:3]]), atol=1e-6)
    assert BGEEncoder(named, query_instruction_for_retrieval=None, device="cpu").query_instruction_for_retrieval is None


def test_no_instruction_means_queries_equal_corpus(bert_checkpoint: Path) -> None:
    enc = BGEEncoder(bert_checkpoint, device="cpu")
    assert enc.query_instruction_for_retrieval is None  # no family in a temporary directory's name
    np.testing.assert_array_equal(enc.encode_queries(T[:20]), enc.encode_corpus(T[:20]))


def test_shapes_norms_and_pooling_from_the_checkpoint(dense: BGEEncoder, mean_checkpoint: Path) -> None:
    out = dense.encode(T[:10])
    assert out.shape == (10, dense.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert dense.encode([]).shape == (0, dense.dim)
    raw = dense.encode(T[:10], normalize_embeddings=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), out, atol=1e-6)
    assert dense.pooling_method == "cls"
    mean = BGEEncoder(mean_checkpoint, device="cpu")
    assert mean.pooling_method == "mean"
    np.testing.assert_allclose(mean.encode(T[:10]), BGEEncoder(dense.path, pooling_method="mean", device="cpu").encode(T[:10]), atol=1e-6)


def test_truncation_is_reported(dense: BGEEncoder) -> None:
    with pytest.warns(TruncationWarning, match="1 of 2 texts"):
        dense.encode([LONG[0], "short"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dense.encode(["short", T[0]])  # nothing cut, nothing said


def test_async_and_coalesced_calls_equal_sync(bert_checkpoint: Path) -> None:
    enc = BGEEncoder(bert_checkpoint, query_instruction_for_retrieval="Q: ", device="cpu")
    expected = enc.encode_queries(T[:30])
    np.testing.assert_allclose(asyncio.run(enc.aencode_queries(T[:30])), expected, atol=1e-6)
    np.testing.assert_allclose(asyncio.run(enc.aencode_corpus(T[:30])), enc.encode_corpus(T[:30]), atol=1e-6)
    enc.enable_coalescing(window_ms=5, max_texts=64)
    try:

        async def many() -> list[np.ndarray]:
            return list(await asyncio.gather(*(enc.aencode_queries(T[i : i + 3]) for i in range(0, 30, 3))))

        np.testing.assert_allclose(np.concatenate(asyncio.run(many())), expected, atol=1e-6)
    finally:
        enc.disable_coalescing()


def test_shared_instances(bert_checkpoint: Path, load_counter: list[str]) -> None:
    a = BGEEncoder.shared(bert_checkpoint, device="cpu")
    assert BGEEncoder.shared(str(bert_checkpoint), dtype="float32") is a and len(load_counter) == 1
    other = BGEEncoder.shared(bert_checkpoint, query_instruction_for_retrieval="Q: ")
    assert other is not a and other.query_instruction_for_retrieval == "Q: "
    assert BGEEncoder.shared(bert_checkpoint, dtype="bfloat16").dtype == torch.bfloat16


def test_bfloat16_stays_close(dense: BGEEncoder) -> None:
    bf16 = BGEEncoder(dense.path, dtype="bfloat16", device="cpu")
    cosine = (bf16.encode(T) * dense.encode(T)).sum(axis=1)
    assert float(cosine.min()) > 0.99


def test_default_model_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, bert_checkpoint: Path) -> None:
    monkeypatch.delenv("M3RAG_DENSE_MODEL", raising=False)
    assert BGEEncoder.default_model() == "BAAI/bge-small-en-v1.5"
    monkeypatch.setenv("M3RAG_DENSE_MODEL", str(bert_checkpoint))
    assert BGEEncoder(device="cpu").path == bert_checkpoint


# ------------------------------------------------------------------------------------------ errors
def test_a_reranker_checkpoint_is_refused_by_the_embedders(reranker_checkpoint: Path, bert_reranker_checkpoint: Path) -> None:
    for path in (reranker_checkpoint, bert_reranker_checkpoint):
        with pytest.raises(ModelKindError, match=r"cross-encoder.*BGEReranker"):
            BGEEncoder(path, device="cpu")
    with pytest.raises(ModelKindError, match="BGEReranker, not M3Encoder"):
        M3Encoder(reranker_checkpoint, dense_only=True, device="cpu")


def test_bad_arguments(dense: BGEEncoder, bert_checkpoint: Path) -> None:
    with pytest.raises(InputTypeError, match=r"sentences\[1\]"):
        dense.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InputTypeError):
        dense.encode(None)  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="exceeds the model's limit of 512"):
        dense.encode("x", max_length=513)
    with pytest.raises(InputTypeError, match="instruction"):
        dense.encode("x", instruction=3)  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="query_instruction_format"):
        BGEEncoder(bert_checkpoint, query_instruction_format="{}", device="cpu")
    with pytest.raises(InputValueError, match="pooling_method"):
        BGEEncoder(bert_checkpoint, pooling_method="max", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(InputValueError, match="use_fp16"):
        BGEEncoder(bert_checkpoint, use_fp16=True, dtype="float32")
    assert os.fspath(dense.path) == str(bert_checkpoint)
