"""The XLM-R tokenizer of the test checkpoints: a sentencepiece unigram model trained on the sample
corpus, and the four tokenizer files of a BAAI/bge-m3 snapshot built around it."""

from __future__ import annotations

import base64
import functools
import io
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import sentencepiece

from m3rag.testing.corpus import SAMPLE_TEXTS

__all__ = ["MODEL_MAX_LENGTH", "XLMR_FILES", "json_bytes", "xlmr_tokenizer_files", "xlmr_vocab"]

MODEL_MAX_LENGTH: Final[int] = 8192
XLMR_FILES: Final[tuple[str, ...]] = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Sentencepiece pieces; the XLM-R vocabulary adds <pad> and <mask> (1502 ids). The corpus supports at
# most ~1600 pieces.
_SPM_VOCAB_SIZE: Final[int] = 1500

_FAIRSEQ_SPECIALS: Final[tuple[str, ...]] = ("<s>", "<pad>", "</s>", "<unk>")
_MASK: Final[str] = "<mask>"


@functools.lru_cache(maxsize=1)
def _sentencepiece_model() -> bytes:
    """Train the unigram model on SAMPLE_TEXTS (deterministic: whole corpus, in order, one thread)."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SAMPLE_TEXTS),
        model_writer=model,
        model_type="unigram",
        vocab_size=_SPM_VOCAB_SIZE,
        normalization_rule_name="nmt_nfkc",
        character_coverage=1.0,  # every character of the corpus gets a piece: no <unk> on SAMPLE_TEXTS
        byte_fallback=False,  # as XLM-R
        num_threads=1,
        input_sentence_size=0,  # use every sentence: no sampling
        shuffle_input_sentence=False,
        # sentencepiece's own ids, as in XLM-R's model; the fairseq offset turns them into 3 / 0 / 2.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return model.getvalue()


@functools.lru_cache(maxsize=1)
def xlmr_vocab() -> tuple[tuple[str, float], ...]:
    """The XLM-R vocabulary: <s> <pad> </s> <unk>, sentencepiece pieces 3.. (id + 1), then <mask>."""
    processor = sentencepiece.SentencePieceProcessor(model_proto=_sentencepiece_model())
    own_specials = tuple(processor.id_to_piece(i) for i in range(3))
    if own_specials != ("<unk>", "<s>", "</s>"):
        raise RuntimeError(f"unexpected sentencepiece specials {own_specials}")
    pieces = tuple((processor.id_to_piece(i), float(processor.get_score(i))) for i in range(3, len(processor)))
    return tuple((token, 0.0) for token in _FAIRSEQ_SPECIALS) + pieces + ((_MASK, 0.0),)


def _precompiled_charsmap(model_proto: bytes) -> bytes:
    """`ModelProto.normalizer_spec.precompiled_charsmap` of a serialized sentencepiece model."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def _added_token(token_id: int, content: str) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": content == _MASK,  # XLM-R's <mask> swallows the space before it
        "rstrip": False,
        "normalized": False,
        "special": True,
    }


def _special_token_entry(content: str) -> dict[str, Any]:
    return {"content": content, "lstrip": content == _MASK, "normalized": False, "rstrip": False, "single_word": False}


@functools.lru_cache(maxsize=1)
def xlmr_tokenizer_files() -> Mapping[str, bytes]:
    """The four tokenizer files, shaped as the ones in the BAAI/bge-m3 snapshot.

    `tokenizer.json` has the pipeline of bge-m3's file, as transformers 4 converted XLM-R (Precompiled +
    collapse-spaces normalizer, Metaspace pre-tokenizer), so raw `tokenizers` users meet bge-m3's quirks
    (an extra `▁` before `</s>` for text ending in whitespace). transformers 5 only takes the vocabulary,
    charsmap and post-processor from it and builds its own pre-tokenizer, which does not emit that `▁`.
    The configs are bge-m3's (transformers-4 era) files: `<mask>` has lstrip, model_max_length is 8192.
    """
    model_proto = _sentencepiece_model()
    vocab = xlmr_vocab()
    mask_id = len(vocab) - 1
    metaspace = {"type": "Metaspace", "replacement": "▁", "add_prefix_space": True, "prepend_scheme": "always"}
    special_ids = {token: i for i, (token, _) in enumerate(vocab) if token in ("<s>", "</s>")}
    added_tokens = [_added_token(i, token) for i, token in enumerate(_FAIRSEQ_SPECIALS)]
    added_tokens.append(_added_token(mask_id, _MASK))
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {
                    "type": "Precompiled",
                    "precompiled_charsmap": base64.b64encode(_precompiled_charsmap(model_proto)).decode("ascii"),
                },
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [_special("<s>"), _sequence("A"), _special("</s>")],
            "pair": [
                *(_special("<s>"), _sequence("A"), _special("</s>")),
                *(_special("</s>"), _sequence("B"), _special("</s>")),
            ],
            "special_tokens": {token: {"id": token, "ids": [token_id], "tokens": [token]} for token, token_id in special_ids.items()},
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [list(entry) for entry in vocab], "byte_fallback": False},
    }
    tokenizer_config = {
        "added_tokens_decoder": {str(entry["id"]): {k: v for k, v in entry.items() if k != "id"} for entry in added_tokens},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": True,
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": _MASK,
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "sp_model_kwargs": {},
        "tokenizer_class": "XLMRobertaTokenizer",
        "unk_token": "<unk>",
    }
    special_tokens_map = {
        "bos_token": _special_token_entry("<s>"),
        "cls_token": _special_token_entry("<s>"),
        "eos_token": _special_token_entry("</s>"),
        "mask_token": _special_token_entry(_MASK),
        "pad_token": _special_token_entry("<pad>"),
        "sep_token": _special_token_entry("</s>"),
        "unk_token": _special_token_entry("<unk>"),
    }
    return MappingProxyType(
        {
            "sentencepiece.bpe.model": model_proto,
            "tokenizer.json": json_bytes(tokenizer_json),
            "tokenizer_config.json": json_bytes(tokenizer_config),
            "special_tokens_map.json": json_bytes(special_tokens_map),
        }
    )


def _special(token: str) -> dict[str, Any]:
    return {"SpecialToken": {"id": token, "type_id": 0}}


def _sequence(name: str) -> dict[str, Any]:
    return {"Sequence": {"id": name, "type_id": 0}}


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
