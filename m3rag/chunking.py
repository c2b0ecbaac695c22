"""Token-aware splitting of long texts into overlapping passages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

from m3rag.errors import InputValueError
from m3rag.validation import check_positive_int, check_str

__all__ = ["Chunk", "chunk_text"]


@dataclass(frozen=True)
class Chunk:
    """A passage of a text: ``text == source[start:end]`` (character offsets), ``num_tokens`` tokens."""

    text: str
    start: int
    end: int
    num_tokens: int


def chunk_text(text: str, tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 256, overlap: int = 32) -> list[Chunk]:
    """Split ``text`` into windows of at most ``max_tokens`` tokens (specials not counted), each
    starting ``max_tokens - overlap`` tokens after the previous one.

    A window that does not reach the end of the text is pulled back to the last whitespace inside
    it (when there is one in its second half), so words are not cut. Chunks are exact slices of
    the text; whitespace-only text gives no chunk.
    """
    check_str(text, "text")
    check_positive_int(max_tokens, "max_tokens")
    check_positive_int(overlap, "overlap", minimum=0)
    if overlap >= max_tokens:
        raise InputValueError(f"overlap ({overlap}) must be smaller than max_tokens ({max_tokens})")
    if not text.strip():
        return []
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    offsets = [(a, b) for a, b in offsets if b > a]
    if len(offsets) <= max_tokens:
        start, end = offsets[0][0], offsets[-1][1]
        return [Chunk(text[start:end], start, end, len(offsets))]
    chunks: list[Chunk] = []
    first = 0
    while first < len(offsets):
        last = min(first + max_tokens, len(offsets))  # exclusive
        start, end = offsets[first][0], offsets[last - 1][1]
        if last < len(offsets):
            cut = max(text.rfind(" ", start, offsets[last][0] + 1), text.rfind("\n", start, offsets[last][0] + 1))
            if cut > start + (end - start) // 2:
                end = cut
                while last > first + 1 and offsets[last - 1][0] >= end:
                    last -= 1
        chunk = text[start:end].strip()
        lead = len(text[start:end]) - len(text[start:end].lstrip())
        chunks.append(Chunk(chunk, start + lead, start + lead + len(chunk), last - first))
        if last >= len(offsets):
            break
        first = max(first + 1, last - overlap)
        # start the next window at a word boundary when the overlap holds one
        for j in range(first, last):
            if offsets[j][0] == 0 or text[offsets[j][0] - 1].isspace():
                first = j
                break
    return chunks
