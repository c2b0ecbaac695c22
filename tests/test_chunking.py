from __future__ import annotations

import itertools

import numpy as np
import pytest

from m3rag import InputValueError, M3Encoder
from m3rag.chunking import chunk_text, iter_chunks
from m3rag.testing import SAMPLE_TEXTS

LONG = " ".join(SAMPLE_TEXTS[:40])


def test_chunks_are_slices_within_budget_with_overlap(encoder: M3Encoder) -> None:
    chunks = chunk_text(LONG, encoder.tokenizer, max_tokens=50, overlap=10)
    assert len(chunks) > 3
    for c in chunks:
        assert c.text == LONG[c.start : c.end] and c.text.strip() == c.text
        assert 0 < c.num_tokens <= 50
        assert len(encoder.tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= 51
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end  # consecutive chunks overlap
        assert b.start == 0 or LONG[b.start - 1].isspace()  # and start at a word
    assert chunks[0].start == 0 and chunks[-1].end == len(LONG.rstrip())


def test_short_and_empty_texts(encoder: M3Encoder) -> None:
    assert chunk_text("   \n", encoder.tokenizer) == []
    (only,) = chunk_text("  short text ", encoder.tokenizer)
    assert only.text == "short text"


def test_text_without_spaces_is_still_split(encoder: M3Encoder) -> None:
    text = "检索增强生成把检索结果交给大语言模型。" * 30
    chunks = chunk_text(text, encoder.tokenizer, max_tokens=40, overlap=5)
    assert len(chunks) > 2 and all(c.num_tokens <= 40 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").startswith(text[:20])


def test_bad_arguments(encoder: M3Encoder) -> None:
    with pytest.raises(InputValueError):
        chunk_text("x", encoder.tokenizer, max_tokens=10, overlap=10)
    with pytest.raises(InputValueError):
        chunk_text("x", encoder.tokenizer, max_tokens=0)


def test_tokenizing_in_blocks_gives_the_chunks_of_the_whole_text(encoder: M3Encoder) -> None:
    """Blocks are cut at whitespace, so a large file split block by block (bounded memory) gives
    exactly the chunks of tokenizing it whole."""
    rng = np.random.default_rng(0)
    words = " ".join(SAMPLE_TEXTS).split()
    separators = [" ", " ", "\n", "\n\n", "  ", " \n "]
    for _ in range(10):
        text = "".join(w + separators[rng.integers(len(separators))] for w in rng.choice(words, int(rng.integers(50, 3000))))
        for max_tokens, overlap in [(64, 8), (16, 0)]:
            whole = list(iter_chunks(text, encoder.tokenizer, max_tokens=max_tokens, overlap=overlap, block_chars=len(text) + 1))
            blocks = list(iter_chunks(text, encoder.tokenizer, max_tokens=max_tokens, overlap=overlap, block_chars=300))
            assert blocks == whole
