"""Tests for m3rag.testing.reranker: cross-encoders in the bge-reranker-v2-m3 layout and a BERT one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from m3rag.errors import InputValueError
from m3rag.testing import PRESETS, RERANKER_CHECKPOINT_FILES, SAMPLE_TEXTS, build_reranker_checkpoint

TINY = PRESETS["tiny"]
PAIRS = [(SAMPLE_TEXTS[i], SAMPLE_TEXTS[j]) for i in range(0, 225, 9) for j in range(3, 225, 37)]


def test_xlmr_layout_is_bge_reranker_v2_m3s(reranker_checkpoint: Path) -> None:
    assert sorted(os.listdir(reranker_checkpoint)) == sorted(RERANKER_CHECKPOINT_FILES["xlm-roberta"])
    config = json.loads((reranker_checkpoint / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["XLMRobertaForSequenceClassification"]
    assert (config["model_type"], config["max_position_embeddings"], config["id2label"]) == ("xlm-roberta", 8194, {"0": "LABEL_0"})
    weights = load_file(reranker_checkpoint / "model.safetensors")
    h = TINY.hidden_size
    assert all(k.startswith(("roberta.", "classifier.")) for k in weights)
    assert not any("pooler" in k for k in weights)  # the BAAI rerankers have none
    head = {k: tuple(v.shape) for k, v in weights.items() if k.startswith("classifier.")}
    assert head == {
        "classifier.dense.weight": (h, h),
        "classifier.dense.bias": (h,),
        "classifier.out_proj.weight": (1, h),
        "classifier.out_proj.bias": (1,),
    }


def test_bert_layout(bert_reranker_checkpoint: Path) -> None:
    assert sorted(os.listdir(bert_reranker_checkpoint)) == sorted(RERANKER_CHECKPOINT_FILES["bert"])
    weights = load_file(bert_reranker_checkpoint / "model.safetensors")
    assert "bert.pooler.dense.weight" in weights and tuple(weights["classifier.weight"].shape) == (1, TINY.hidden_size)


@pytest.mark.parametrize("which", ["reranker_checkpoint", "bert_reranker_checkpoint"])
def test_loads_cleanly_and_scores_are_input_sensitive(which: str, request: pytest.FixtureRequest) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path: Path = request.getfixturevalue(which)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))
    assert model.config.num_labels == 1 and model.dtype == torch.float32
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok([q for q, _ in PAIRS], [p for _, p in PAIRS], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        scores = model.eval()(**batch).logits.view(-1)
        assert float(scores.std()) > 0.2  # pairs get clearly different scores
        if "token_type_ids" in batch:  # segment B's type matters, so dropping token_type_ids would show
            untyped = model(**{k: v for k, v in batch.items() if k != "token_type_ids"}).logits.view(-1)
            assert float((untyped - scores).abs().max()) > 0.1


def test_byte_identical_rebuild_and_arguments(reranker_checkpoint: Path, tmp_path: Path) -> None:
    state = torch.get_rng_state()
    again = build_reranker_checkpoint(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), state)
    for name in RERANKER_CHECKPOINT_FILES["xlm-roberta"]:
        assert (again / name).read_bytes() == (reranker_checkpoint / name).read_bytes(), name
    with pytest.raises(InputValueError, match="base"):
        build_reranker_checkpoint(tmp_path / "bad", base="gemma")  # type: ignore[arg-type]
    with pytest.raises(InputValueError):
        build_reranker_checkpoint(tmp_path / "bad", seed=2**63)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_command_line_builds_every_layout(tmp_path: Path) -> None:
    for layout, marker in (("bge-en-v1.5", "vocab.txt"), ("bge-reranker-v2-m3", "sentencepiece.bpe.model"), ("bert-reranker", "vocab.txt")):
        out = subprocess.run(
            [sys.executable, "-m", "m3rag.testing", str(tmp_path / layout), "--layout", layout],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        assert Path(out) == tmp_path / layout and (Path(out) / marker).is_file()
