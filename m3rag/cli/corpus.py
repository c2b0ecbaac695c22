"""Which files ``m3rag index`` reads, how it keys them, and why it skips the others."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TEXT_SUFFIXES", "Skipped", "SourceFile", "common_root", "read_text", "walk"]

TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst")
"""Suffixes ``m3rag index`` reads from folders (a file named on the command line is read whatever its suffix)."""


@dataclass(frozen=True)
class SourceFile:
    """A file to index: ``key`` is its path relative to the indexed root (POSIX separators), so a
    moved corpus keeps its keys."""

    path: Path
    key: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def common_root(paths: Sequence[Path]) -> Path:
    """The directory keys are relative to: a single folder itself, else the common parent."""
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1 and resolved[0].is_dir():
        return resolved[0]
    return Path(os.path.commonpath([p if p.is_dir() else p.parent for p in resolved]))


def walk(paths: Sequence[str]) -> tuple[Path, list[SourceFile], list[Skipped]]:
    """``(root, files to read, skipped entries)``; raises ``FileNotFoundError`` naming every path
    that does not exist (nothing is indexed then)."""
    missing = [raw for raw in paths if not os.path.lexists(raw)]
    if missing:
        raise FileNotFoundError(f"no such file or directory: {', '.join(missing)}")
    root = common_root([Path(p) for p in paths])
    files: dict[Path, SourceFile] = {}
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw).resolve()
        for candidate, named in _candidates(path):
            reason = _unreadable_kind(candidate)
            if reason:
                skipped.append(Skipped(str(candidate), reason))
            elif not named and candidate.suffix.lower() not in TEXT_SUFFIXES:
                skipped.append(Skipped(str(candidate), f"not a text file ({' '.join(TEXT_SUFFIXES)} are read from folders)"))
            else:
                files.setdefault(candidate, SourceFile(candidate, candidate.relative_to(root).as_posix()))
    return root, sorted(files.values(), key=lambda f: f.key), skipped


def _candidates(path: Path) -> Iterator[tuple[Path, bool]]:
    """Files under ``path`` (``True`` when named directly), hidden entries of folders left out."""
    if not path.is_dir():
        yield path, True
        return
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name, False


def _unreadable_kind(path: Path) -> str | None:
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISLNK(mode):
        try:
            mode = path.stat().st_mode
        except OSError:
            return "a broken symlink"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a regular file"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def read_text(path: Path) -> tuple[str, str]:
    """``(text, sha256 of the bytes)``; ``ValueError`` naming the byte when it is not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); convert it with iconv") from None
    return text, hashlib.sha256(data).hexdigest()
