"""Instructions of the BGE family: how FlagEmbedding prepends them, the model cards' query
instructions, and LLM-Embedder's per-task table. Pure Python (no torch import)."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from m3rag.errors import InputTypeError, InputValueError, UnknownTaskError

__all__ = [
    "BGE_EN_QUERY_INSTRUCTION",
    "BGE_ZH_QUERY_INSTRUCTION",
    "FAMILY",
    "LLM_EMBEDDER_INSTRUCTIONS",
    "LLM_EMBEDDER_TASKS",
    "Family",
    "InstructionArg",
    "apply_instruction",
    "check_format",
    "check_instruction",
    "family_query_instruction",
    "llm_embedder_instruction",
]

BGE_EN_QUERY_INSTRUCTION: Final[str] = "Represent this sentence for searching relevant passages: "
"""The query instruction of bge-{small,base,large}-en and -en-v1.5 (their model cards; a trailing space)."""
BGE_ZH_QUERY_INSTRUCTION: Final[str] = "为这个句子生成表示以用于检索相关文章："
"""The query instruction of bge-{small,base,large}-zh and -zh-v1.5 (ends with a full-width colon, U+FF1A)."""

LLM_EMBEDDER_INSTRUCTIONS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "qa": MappingProxyType(
            {"query": "Represent this query for retrieving relevant documents: ", "key": "Represent this document for retrieval: "}
        ),
        "convsearch": MappingProxyType(
            {"query": "Encode this query and context for searching relevant passages: ", "key": "Encode this passage for retrieval: "}
        ),
        "chat": MappingProxyType(
            {"query": "Embed this dialogue to find useful historical dialogues: ", "key": "Embed this historical dialogue for retrieval: "}
        ),
        "lrlm": MappingProxyType(
            {
                "query": "Embed this text chunk for finding useful historical chunks: ",
                "key": "Embed this historical text chunk for retrieval: ",
            }
        ),
        "icl": MappingProxyType(
            {
                "query": "Convert this example into vector to look for useful examples: ",
                "key": "Convert this example into vector for retrieval: ",
            }
        ),
        "tool": MappingProxyType(
            {
                "query": "Transform this user request for fetching helpful tool descriptions: ",
                "key": "Transform this tool description for retrieval: ",
            }
        ),
    }
)
"""LLM-Embedder's query and key instruction per task, as FlagEmbedding 1.2.11's ``LLMEmbedder.instructions``."""
LLM_EMBEDDER_TASKS: Final[tuple[str, ...]] = tuple(LLM_EMBEDDER_INSTRUCTIONS)


class Family(enum.Enum):
    """Sentinel type of :data:`FAMILY`."""

    FAMILY = "family"


FAMILY: Final = Family.FAMILY
"""Default of ``query_instruction_for_retrieval``: the instruction of the model's family, found from
its name (see :func:`family_query_instruction`)."""

InstructionArg = str | None | Literal[Family.FAMILY]

_EN = re.compile(r"^bge-(small|base|large)-en(-v1\.5)?$")
_ZH = re.compile(r"^bge-(small|base|large)-zh(-v1\.5)?$")


def family_query_instruction(model_name: str | os.PathLike[str]) -> str | None:
    """The model card's query instruction for a BGE v1/v1.5 English or Chinese model, else ``None``.

    Looks for ``bge-{small,base,large}-{en,zh}[-v1.5]`` in the hub id or in any component of a local
    path (a Hugging Face cache path ``models--BAAI--bge-small-en-v1.5/snapshots/...`` included).
    bge-m3, llm-embedder, the rerankers and unrecognised names have none.
    """
    for part in re.split(r"[/\\]", os.fspath(model_name)):
        name = part.lower().rsplit("--", 1)[-1]
        if _EN.match(name):
            return BGE_EN_QUERY_INSTRUCTION
        if _ZH.match(name):
            return BGE_ZH_QUERY_INSTRUCTION
    return None


def check_instruction(instruction: object, name: str) -> str | None:
    """``instruction`` if it is a str or ``None``."""
    if instruction is not None and not isinstance(instruction, str):
        raise InputTypeError(f"{name} must be a str or None, got {type(instruction).__name__}")
    return instruction


def check_format(instruction_format: object, name: str) -> str:
    """``instruction_format`` if it is a str that formats an (instruction, text) pair."""
    if not isinstance(instruction_format, str):
        raise InputTypeError(f"{name} must be a str, got {type(instruction_format).__name__}")
    try:
        formatted = instruction_format.replace("\\n", "\n").format("\x00instruction", "\x00text")
    except (IndexError, KeyError, ValueError) as exc:
        formatted = f"{type(exc).__name__}: {exc}"
    if "\x00instruction" not in formatted or "\x00text" not in formatted:
        raise InputValueError(f"{name}={instruction_format!r} must place two values, the instruction then the text, e.g. '{{}}{{}}'")
    return instruction_format


def apply_instruction(instruction: str | None, text: str, instruction_format: str = "{}{}") -> str:
    """``text`` with ``instruction`` prepended as FlagEmbedding does: nothing when ``instruction`` is
    ``None``; else ``instruction_format.format(instruction, text)`` after turning a literal ``\\n``
    in the format into a newline (``"{}{}"``: plain concatenation)."""
    if instruction is None:
        return text
    return instruction_format.replace("\\n", "\n").format(instruction, text)


def llm_embedder_instruction(task: str, side: Literal["query", "key"]) -> str:
    """LLM-Embedder's instruction for ``task`` (one of :data:`LLM_EMBEDDER_TASKS`) and ``side``."""
    if not isinstance(task, str):
        raise InputTypeError(f"task must be a str, got {type(task).__name__}")
    try:
        return LLM_EMBEDDER_INSTRUCTIONS[task][side]
    except KeyError:
        raise UnknownTaskError(f"unknown LLM-Embedder task {task!r}; the tasks are {', '.join(LLM_EMBEDDER_TASKS)}") from None
