"""Token-aware splitting of long texts into overlapping passages, in memory bounded by the window.

A text of any size is tokenized in blocks of at most 64K characters cut at whitespace (paragraph
breaks preferred), so splitting a 5 MB file holds a few blocks of tokens at a time, not millions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from m3rag.errors import InputValueError
from m3rag.validation import check_positive_int, check_str

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Chunk", "Passage", "chunk_text", "iter_chunks", "source_passages"]

BLOCK_CHARS = 1 << 16
"""Characters tokenized at a time."""


@dataclass(frozen=True)
class Chunk:
    """A passage of a text: ``text == source[start:end]`` (character offsets), ``num_tokens`` tokens."""

    text: str
    start: int
    end: int
    num_tokens: int


def _token_spans(text: str, tokenizer: PreTrainedTokenizerBase, block: int) -> Iterator[tuple[int, int]]:
    """Character spans of the text's tokens (specials and empty spans left out), block by block."""
    start, n = 0, len(text)
    while start < n:
        end = min(n, start + block)
        if end < n:  # cut before whitespace, so each block starts a word as the whole text would
            floor = start + block // 2
            cut = text.rfind("\n\n", floor, end)
            if cut < 0:
                cut = max(text.rfind(" ", floor, end), text.rfind("\n", floor, end))
            if cut > start:
                end = cut
        spans = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
        for a, b in spans:
            if b > a and not text[start + a : start + b].isspace():
                yield start + a, start + b
        start = end


class _Window:
    """Token spans by global index, read ahead on demand and forgotten once passed."""

    def __init__(self, spans: Iterator[tuple[int, int]]) -> None:
        self._spans, self._base, self.done = spans, 0, False
        self._buffer: list[tuple[int, int]] = []

    def has(self, i: int) -> bool:
        while not self.done and i >= self._base + len(self._buffer):
            nxt = next(self._spans, None)
            if nxt is None:
                self.done = True
            else:
                self._buffer.append(nxt)
        return i < self._base + len(self._buffer)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self._buffer[i - self._base]

    def forget_before(self, i: int) -> None:
        if i > self._base:
            del self._buffer[: i - self._base]
            self._base = i


def iter_chunks(
    text: str, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 256, overlap: int = 32, block_chars: int = BLOCK_CHARS
) -> Iterator[Chunk]:
    """Windows of at most ``max_tokens`` tokens (specials not counted), each starting
    ``max_tokens - overlap`` tokens after the previous one, as they are found.

    A window that does not reach the end of the text is pulled back to the last whitespace inside
    it (when there is one in its second half), so words are not cut. Chunks are exact slices of
    the text; whitespace-only text gives no chunk.
    """
    check_str(text, "text")
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(overlap, "overlap", minimum=0)
    check_positive_int(block_chars, "block_chars", minimum=64)
    if overlap >= max_tokens:
        raise InputValueError(f"overlap ({overlap}) must be smaller than max_tokens ({max_tokens})")
    if not text.strip():
        return
    tokens = _Window(_token_spans(text, tokenizer, block_chars))
    if not tokens.has(0):
        return
    first = 0
    while True:
        last = first + max_tokens  # exclusive; clipped below at the end of the text
        more = tokens.has(last)  # is there a token after this window?
        while not tokens.has(last - 1):
            last -= 1
        start, end = tokens[first][0], tokens[last - 1][1]
        if more:
            after = tokens[last][0]
            cut = max(text.rfind(" ", start, after + 1), text.rfind("\n", start, after + 1))
            if cut > start + (end - start) // 2:
                end = cut
                while last > first + 1 and tokens[last - 1][0] >= end:
                    last -= 1
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        stripped = piece.strip()
        yield Chunk(stripped, start + lead, start + lead + len(stripped), last - first)
        if not more:
            return
        first = max(first + 1, last - overlap)
        for j in range(first, last):  # start the next window at a word boundary when the overlap holds one
            position = tokens[j][0]
            if position == 0 or text[position - 1].isspace():
                first = j
                break
        tokens.forget_before(first)


def chunk_text(text: str, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 256, overlap: int = 32) -> list[Chunk]:
    """:func:`iter_chunks` as a list."""
    return list(iter_chunks(text, tokenizer, max_tokens=max_tokens, overlap=overlap))


@dataclass(frozen=True)
class Passage:
    """A chunk of a source file as ``m3rag index`` stores it."""

    id: str
    text: str
    metadata: dict[str, Any]


def source_passages(
    key: str, file_hash: str, text: str, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 256, overlap: int = 32
) -> list[Passage]:
    """The passages of file ``key`` (its text and content hash): ids ``f"{key}#{i}"`` (the same on
    every run, so re-indexing upserts), metadata ``source, file_hash, chunk, chunks, start, end``
    (character offsets). Used on one machine and on Ray alike."""
    chunks = chunk_text(text, tokenizer, max_tokens=max_tokens, overlap=overlap)
    n = len(chunks)
    return [
        Passage(f"{key}#{i}", c.text, {"source": key, "file_hash": file_hash, "chunk": i, "chunks": n, "start": c.start, "end": c.end})
        for i, c in enumerate(chunks)
    ]
