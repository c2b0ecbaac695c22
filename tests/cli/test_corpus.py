from __future__ import annotations

import os
from pathlib import Path

import pytest

from m3rag.cli.corpus import read_text, walk


def _tree(root: Path) -> Path:
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.md").write_text("one")
    (root / "a" / "two.rst").write_text("two")
    (root / "b.markdown").write_text("three")
    (root / "c.text").write_text("four")
    (root / "picture.png").write_bytes(b"\x89PNG")
    (root / ".hidden.txt").write_text("secret")
    return root


def test_keys_are_relative_to_the_folder_given_so_a_moved_corpus_keeps_them(tmp_path: Path) -> None:
    root, files, skipped = walk([str(_tree(tmp_path / "docs"))])
    assert root == (tmp_path / "docs").resolve()
    assert [f.key for f in files] == ["a/one.md", "a/two.rst", "b.markdown", "c.text"]
    assert [Path(s.path).name for s in skipped] == ["picture.png"] and "not a text file" in skipped[0].reason
    os.rename(tmp_path / "docs", tmp_path / "moved")
    assert [f.key for f in walk([str(tmp_path / "moved")])[1]] == ["a/one.md", "a/two.rst", "b.markdown", "c.text"]


def test_several_paths_are_keyed_from_their_common_folder(tmp_path: Path) -> None:
    _tree(tmp_path / "docs")
    root, files, _ = walk([str(tmp_path / "docs" / "a"), str(tmp_path / "docs" / "b.markdown"), str(tmp_path / "docs" / "picture.png")])
    assert root == (tmp_path / "docs").resolve()
    assert [f.key for f in files] == ["a/one.md", "a/two.rst", "b.markdown", "picture.png"]  # a file named is read whatever its suffix


def test_missing_paths_are_an_error_before_anything_happens(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        walk([str(tmp_path), str(tmp_path / "nope")])


def test_a_fifo_is_listed_as_skipped_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "ok.txt").write_text("fine")
    _, files, skipped = walk([str(tmp_path)])
    assert [f.key for f in files] == ["ok.txt"]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("pipe.txt", "a named pipe (FIFO), not a regular file")]


def test_read_text_names_the_bad_byte(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_text(tmp_path / "latin1.txt")
    (tmp_path / "bom.txt").write_bytes("\ufeffhello".encode())
    assert read_text(tmp_path / "bom.txt")[0] == "hello"
