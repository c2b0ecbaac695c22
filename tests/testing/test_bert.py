"""Tests for m3rag.testing.bert: the BERT checkpoint in the BAAI/bge-*-en-v1.5 (and llm-embedder) layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from m3rag.errors import InputValueError
from m3rag.testing import BERT_CHECKPOINT_FILES, PRESETS, SAMPLE_TEXTS, build_bert_checkpoint
from m3rag.testing import bert as bert_module

TINY = PRESETS["tiny"]


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_layout_config_and_keys(bert_checkpoint: Path) -> None:
    from transformers import AutoConfig, BertModel

    assert _files(bert_checkpoint) == sorted(BERT_CHECKPOINT_FILES)
    config = json.loads((bert_checkpoint / "config.json").read_text(encoding="utf-8"))
    expected = {
        "model_type": "bert",
        "architectures": ["BertModel"],
        "hidden_size": TINY.hidden_size,
        "num_hidden_layers": TINY.num_hidden_layers,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "pad_token_id": 0,
        "layer_norm_eps": 1e-12,
        "vocab_size": len(bert_module.bert_vocab()),
    }
    assert {key: config[key] for key in expected} == expected
    weights = load_file(bert_checkpoint / "model.safetensors")
    with torch.device("meta"):
        reference = BertModel(AutoConfig.from_pretrained(bert_checkpoint), add_pooling_layer=True)
    expected_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items() if k != "embeddings.position_ids"}
    assert {k: tuple(v.shape) for k, v in weights.items()} == expected_shapes  # the BAAI files keep the pooler
    assert weights["embeddings.word_embeddings.weight"][0].abs().sum() == 0  # [PAD] row, as HF's init
    assert weights["embeddings.position_embeddings.weight"][0].abs().sum() > 0  # BERT positions have no padding row
    pooling = json.loads((bert_checkpoint / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_cls_token"] and not pooling["pooling_mode_mean_tokens"]


def test_loads_without_missing_or_unexpected_keys(bert_checkpoint: Path) -> None:
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(bert_checkpoint, output_loading_info=True)
    assert type(model).__name__ == "BertModel" and model.dtype == torch.float32
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"))


def test_wordpiece_tokenizer(bert_checkpoint: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_checkpoint)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 100, 101, 102, 103)
    assert tok.model_max_length == 512 and len(tok) == len(bert_module.bert_vocab())
    texts = [*SAMPLE_TEXTS, "Héllo  WÖRLD!!", "naïve café", "[UNK] and [SEP] as text", "tab\there", ""]
    raw = Tokenizer.from_file(str(bert_checkpoint / "tokenizer.json"))
    for text in texts:  # transformers 5 rebuilds the pipeline from tokenizer_config.json: same ids
        assert tok(text)["input_ids"] == raw.encode(text).ids, text
    assert all(100 not in tok(text)["input_ids"] for text in SAMPLE_TEXTS)  # no [UNK] on the corpus
    assert tok("hello WORLD")["input_ids"] == tok("hello world")["input_ids"]  # uncased
    pair = tok("a question", "a passage here")
    assert pair["input_ids"][0] == 101 and pair["input_ids"].count(102) == 2
    sep = pair["input_ids"].index(102)
    assert pair["token_type_ids"] == [0] * (sep + 1) + [1] * (len(pair["input_ids"]) - sep - 1)


def test_input_sensitive(bert_checkpoint: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(bert_checkpoint), AutoModel.from_pretrained(bert_checkpoint).eval()
    batch = tok(list(SAMPLE_TEXTS), padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        cls = torch.nn.functional.normalize(model(**batch).last_hidden_state[:, 0], dim=-1)
    cosine = cls @ cls.T
    upper = torch.triu_indices(len(SAMPLE_TEXTS), len(SAMPLE_TEXTS), 1)
    pairwise = cosine[upper[0], upper[1]]
    assert float(pairwise.mean()) < 0.7 and float(pairwise.max()) < 0.95  # HF's std-0.02 init gives ~0.99


def test_byte_identical_rebuild_and_rng_untouched(bert_checkpoint: Path, tmp_path: Path) -> None:
    bert_module.bert_tokenizer_files.cache_clear()
    bert_module.bert_vocab.cache_clear()
    state = torch.get_rng_state()
    again = build_bert_checkpoint(tmp_path / "again")
    assert torch.equal(torch.get_rng_state(), state)
    for name in BERT_CHECKPOINT_FILES:
        assert (again / name).read_bytes() == (bert_checkpoint / name).read_bytes(), name
    other = build_bert_checkpoint(tmp_path / "seed1", seed=1)
    assert (other / "model.safetensors").read_bytes() != (bert_checkpoint / "model.safetensors").read_bytes()
    assert (other / "vocab.txt").read_bytes() == (bert_checkpoint / "vocab.txt").read_bytes()


def test_mean_pooling_variant_and_arguments(tmp_path: Path) -> None:
    mean = build_bert_checkpoint(tmp_path / "mean", pooling="mean", num_layers=1)
    pooling = json.loads((mean / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert json.loads((mean / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"] == 1
    with pytest.raises(InputValueError):
        build_bert_checkpoint(mean)  # not empty
    build_bert_checkpoint(mean, exist_ok=True)  # replaces its own files, 1_Pooling included
    for bad in (dict(pooling="max"), dict(seed=-1), dict(preset="huge"), dict(num_layers=0)):
        with pytest.raises(InputValueError):
            build_bert_checkpoint(tmp_path / "bad", **bad)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no staging leftovers
