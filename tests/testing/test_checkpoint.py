"""Tests for m3rag.testing: the small checkpoints in the exact BAAI/bge-m3 layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import sentencepiece
import torch
from safetensors.torch import load_file

from m3rag.errors import InputValueError
from m3rag.testing import (
    CHECKPOINT_FILES,
    PRESETS,
    SAMPLE_TEXTS,
    SAMPLE_TEXTS_BY_LANGUAGE,
    build_checkpoint,
    checkpoint_quality,
    tokenizer,
)

TINY = PRESETS["tiny"]


def _load_heads(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {name: torch.load(path / f"{name}.pt", map_location="cpu", weights_only=True) for name in ("colbert_linear", "sparse_linear")}


def _hidden_states(path: Path, texts: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).last_hidden_state, enc


# ---------------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------------


def test_layout_and_config(tiny_checkpoint: Path) -> None:
    assert sorted(os.listdir(tiny_checkpoint)) == sorted(CHECKPOINT_FILES)
    config = json.loads((tiny_checkpoint / "config.json").read_text(encoding="utf-8"))
    expected = {
        "model_type": "xlm-roberta",
        "architectures": ["XLMRobertaModel"],
        "hidden_size": TINY.hidden_size,
        "num_attention_heads": TINY.num_attention_heads,
        "intermediate_size": TINY.intermediate_size,
        "num_hidden_layers": TINY.num_hidden_layers,
        "max_position_embeddings": 8194,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
    }
    assert {key: config[key] for key in expected} == expected

    from transformers import AutoTokenizer

    assert config["vocab_size"] == len(AutoTokenizer.from_pretrained(tiny_checkpoint))


def test_weights_match_xlm_roberta_model(tiny_checkpoint: Path) -> None:
    from transformers import AutoConfig, XLMRobertaModel

    weights = load_file(tiny_checkpoint / "model.safetensors")
    assert not any(key.startswith("roberta.") for key in weights)
    assert "pooler.dense.weight" in weights
    assert all(t.dtype == torch.float32 for t in weights.values())
    with torch.device("meta"):
        reference = XLMRobertaModel(AutoConfig.from_pretrained(tiny_checkpoint), add_pooling_layer=True)
    expected = reference.state_dict()
    assert sorted(weights) == sorted(expected)
    assert {k: tuple(v.shape) for k, v in weights.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values())


def test_heads_are_plain_state_dicts(tiny_checkpoint: Path) -> None:
    heads = _load_heads(tiny_checkpoint)  # weights_only=True: plain tensors only
    h = TINY.hidden_size
    assert {k: tuple(v.shape) for k, v in heads["colbert_linear"].items()} == {"weight": (h, h), "bias": (h,)}
    assert {k: tuple(v.shape) for k, v in heads["sparse_linear"].items()} == {"weight": (1, h), "bias": (1,)}
    for head in heads.values():
        for tensor in head.values():
            assert tensor.dtype == torch.float32 and tensor.is_contiguous()
            assert tensor.untyped_storage().nbytes() == tensor.numel() * 4  # not a view of something bigger


def test_automodel_loads_without_missing_or_unexpected_keys(tiny_checkpoint: Path) -> None:
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(tiny_checkpoint, output_loading_info=True)
    assert type(model).__name__ == "XLMRobertaModel"
    assert model.dtype == torch.float32
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert not info["error_msgs"]


# ---------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------


def test_tokenizer_special_tokens(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert type(tok).__name__.startswith("XLMRobertaTokenizer")
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, len(tok) - 1]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert (tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(tok) - 1
    assert tok.model_max_length == 8192
    assert 1000 <= len(tok) <= 2002
    ids = tok("x <mask>")["input_ids"]  # XLM-R's <mask> strips the space before it
    assert ids[0] == 0 and ids[-2:] == [tok.mask_token_id, 2]
    long = tok(" ".join(SAMPLE_TEXTS) * 40, truncation=True, max_length=8192)["input_ids"]
    assert len(long) == 8192 and long[0] == 0 and long[-1] == 2


def test_tokenizer_matches_sentencepiece_with_fairseq_offset(tiny_checkpoint: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tiny_checkpoint / "sentencepiece.bpe.model"))
    assert len(sp) + 2 == len(tok)  # + <pad> + <mask>
    for text in (*SAMPLE_TEXTS, "Ｆｕｌｌ-ｗｉｄｔｈ  and   spaces", "unseen ẞ 𝔘 ☃"):
        expected = [0] + [3 if i == 0 else i + 1 for i in sp.encode(text)] + [2]
        assert tok(text)["input_ids"] == expected, text
    assert all(3 not in tok(text)["input_ids"] for text in SAMPLE_TEXTS)  # the corpus has no <unk>


def test_tokenizer_json_is_the_bge_m3_pipeline(tiny_checkpoint: Path) -> None:
    """Raw `tokenizers` reading tokenizer.json agrees with AutoTokenizer, except bge-m3's whitespace quirk."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    for text in SAMPLE_TEXTS:
        assert raw.encode(text).ids == tok(text)["input_ids"], text
    # As with the real bge-m3 file (and transformers 4): text ending in whitespace gets an extra "▁"
    # before </s>; transformers 5 rebuilds its own pre-tokenizer and does not emit it.
    assert raw.encode("hello world ").ids == [*tok("hello world")["input_ids"][:-1], raw.token_to_id("▁"), 2]
    assert tok("hello world ")["input_ids"] == tok("hello world")["input_ids"]


def test_tokenizer_files_agree_with_transformers_conversion(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """transformers building the tokenizer from sentencepiece.bpe.model alone gives the same ids."""
    from transformers import AutoTokenizer, XLMRobertaTokenizer

    (tmp_path / "sentencepiece.bpe.model").write_bytes((tiny_checkpoint / "sentencepiece.bpe.model").read_bytes())
    converted = XLMRobertaTokenizer.from_pretrained(tmp_path)
    ours = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert converted.get_vocab() == ours.get_vocab()
    batch = list(SAMPLE_TEXTS[::5])
    assert converted(batch)["input_ids"] == ours(batch)["input_ids"]


def test_sentencepiece_model_is_unigram_nmt_nfkc(tiny_checkpoint: Path) -> None:
    from sentencepiece import sentencepiece_model_pb2 as pb2

    data = (tiny_checkpoint / "sentencepiece.bpe.model").read_bytes()
    proto = pb2.ModelProto()
    proto.ParseFromString(data)
    assert proto.normalizer_spec.name == "nmt_nfkc"
    assert proto.trainer_spec.model_type == 1  # unigram


# ---------------------------------------------------------------------------------------------------
# Determinism and arguments
# ---------------------------------------------------------------------------------------------------


def test_same_seed_is_byte_identical_and_rng_untouched(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    # Retrain the tokenizer too, instead of reusing this process's cached model.
    tokenizer._sentencepiece_model.cache_clear()
    tokenizer.xlmr_vocab.cache_clear()
    tokenizer.xlmr_tokenizer_files.cache_clear()
    rng_state = torch.get_rng_state()
    again = build_checkpoint(tmp_path / "again", preset="tiny", seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)
    for name in CHECKPOINT_FILES:
        assert (again / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    texts = list(SAMPLE_TEXTS[::9])
    ids = AutoTokenizer.from_pretrained(again)(texts)["input_ids"]
    assert ids == AutoTokenizer.from_pretrained(tiny_checkpoint)(texts)["input_ids"]


def test_seed_changes_weights_not_tokenizer(tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = build_checkpoint(tmp_path / "seed1", preset="tiny", seed=1)
    for name in ("model.safetensors", "colbert_linear.pt", "sparse_linear.pt"):
        assert (other / name).read_bytes() != (tiny_checkpoint / name).read_bytes(), name
    for name in ("config.json", "sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json"):
        assert (other / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    a = load_file(tiny_checkpoint / "model.safetensors")
    b = load_file(other / "model.safetensors")
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(a[key], b[key])


def test_num_layers_and_wide_shape(tmp_path: Path) -> None:
    one = build_checkpoint(tmp_path / "one", num_layers=1)
    config = json.loads((one / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 1
    assert not any(key.startswith("encoder.layer.1.") for key in load_file(one / "model.safetensors"))

    wide = build_checkpoint(tmp_path / "wide", preset="wide", num_layers=1)
    config = json.loads((wide / "config.json").read_text(encoding="utf-8"))
    assert (config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]) == (1024, 16, 4096)
    assert (config["num_hidden_layers"], config["max_position_embeddings"]) == (1, 8194)
    assert PRESETS["wide"].num_hidden_layers == 4
    sparse = torch.load(wide / "sparse_linear.pt", weights_only=True)
    assert sparse["weight"].shape == (1, 1024)


def test_existing_directory_rules(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "ckpt"
    assert build_checkpoint(target) == target.absolute()
    with pytest.raises(InputValueError):
        build_checkpoint(target)
    (target / "notes.txt").write_text("kept", encoding="utf-8")
    build_checkpoint(target, seed=3, exist_ok=True)
    assert (target / "notes.txt").read_text(encoding="utf-8") == "kept"
    empty = tmp_path / "empty"
    empty.mkdir()
    build_checkpoint(empty)  # an empty directory is fine without exist_ok
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InputValueError):
        build_checkpoint(tmp_path / "file", exist_ok=True)
    with pytest.raises(InputValueError):
        build_checkpoint(tmp_path / "bad", preset="huge")  # type: ignore[arg-type]
    with pytest.raises(InputValueError):
        build_checkpoint(tmp_path / "bad", num_layers=0)
    with pytest.raises(InputValueError):
        build_checkpoint(tmp_path / "bad", seed=-1)
    assert not (tmp_path / "bad").exists()
    leftovers = [p.name for p in (tmp_path / "nested").iterdir() if p.name != "ckpt"]
    assert leftovers == []  # staging directories are cleaned up


# ---------------------------------------------------------------------------------------------------
# Quality: a random checkpoint that is still input-sensitive
# ---------------------------------------------------------------------------------------------------


def test_sample_texts() -> None:
    assert len(SAMPLE_TEXTS) == len(set(SAMPLE_TEXTS)) >= 200
    assert set(SAMPLE_TEXTS_BY_LANGUAGE) == {"en", "fr", "de", "es", "zh", "ja", "ru", "ar", "code"}
    assert all(len(texts) >= 20 for texts in SAMPLE_TEXTS_BY_LANGUAGE.values())
    assert all(text == text.strip() and text for text in SAMPLE_TEXTS)


def test_quality(tiny_checkpoint: Path) -> None:
    quality = checkpoint_quality(tiny_checkpoint)
    assert quality["num_texts"] == len(SAMPLE_TEXTS)
    assert quality["all_finite"]
    assert quality["unk_share"] == 0.0
    # HF's default init gives ~0.99 here: every text the same vector.
    assert quality["mean_pairwise_cosine"] < 0.7
    assert quality["max_pairwise_cosine"] < 0.95
    # ... yet a text stays closer to its own first 80 % than to other texts.
    assert quality["mean_truncated_cosine"] > quality["mean_pairwise_cosine"] + 0.2
    assert 0.3 <= quality["sparse_positive_share"] <= 0.8


def test_quality_of_another_seed(tmp_path: Path) -> None:
    quality = checkpoint_quality(build_checkpoint(tmp_path / "seed7", seed=7), texts=SAMPLE_TEXTS[::3])
    assert quality["all_finite"] and quality["mean_pairwise_cosine"] < 0.7
    assert 0.25 <= quality["sparse_positive_share"] <= 0.85


# ---------------------------------------------------------------------------------------------------
# The reference implementation loads it
# ---------------------------------------------------------------------------------------------------


def test_flagembedding_loads_checkpoint_with_its_heads(tiny_checkpoint: Path) -> None:
    FlagEmbedding = pytest.importorskip("FlagEmbedding")
    texts = [SAMPLE_TEXTS_BY_LANGUAGE[lang][i] for lang in ("en", "fr", "zh", "ru", "code") for i in (0, 1)]
    model = FlagEmbedding.BGEM3FlagModel(str(tiny_checkpoint), use_fp16=False, devices="cpu")
    out = model.encode(texts, batch_size=4, return_dense=True, return_sparse=True, return_colbert_vecs=True)

    dense = np.asarray(out["dense_vecs"])
    assert dense.shape == (len(texts), TINY.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-5)
    cosine = dense @ dense.T
    assert cosine[np.triu_indices(len(texts), 1)].mean() < 0.8

    hidden, enc = _hidden_states(tiny_checkpoint, texts)
    np.testing.assert_allclose(dense, torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy(), atol=1e-5)

    # The lexical weights come from our sparse head (FlagEmbedding silently keeps a random head when the
    # files are missing), and a good share of tokens survive.
    sparse = _load_heads(tiny_checkpoint)["sparse_linear"]
    weights = torch.relu(hidden @ sparse["weight"].T + sparse["bias"]).squeeze(-1)
    for row, lexical in enumerate(out["lexical_weights"]):
        expected: dict[str, float] = {}
        for token_id, weight in zip(enc["input_ids"][row].tolist(), weights[row].tolist()):
            if token_id > 3 and weight > 0:
                expected[str(token_id)] = max(weight, expected.get(str(token_id), 0.0))
        assert lexical and sorted(lexical) == sorted(expected)
        np.testing.assert_allclose([lexical[k] for k in expected], list(expected.values()), atol=1e-5)

    for row, vectors in enumerate(out["colbert_vecs"]):
        assert vectors.shape == (int(enc["attention_mask"][row].sum()) - 1, TINY.hidden_size)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
