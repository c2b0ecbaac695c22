from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m3rag import M3Index
from m3rag.cli import main


def _index(corpus: Path, index: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["index", str(corpus), *extra, "--index", str(index), "--chunk-tokens", "64", "--overlap", "8"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _contents(index_dir: Path) -> dict[str, str]:
    index = M3Index.load(index_dir)
    return {doc.id: doc.text for doc in index.get(index.ids)}


def test_rerun_updates_only_what_changed(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "idx"
    _index(corpus, index, capsys)
    code, out, _ = _index(corpus, index, capsys)
    assert "0 files (re)indexed, 8 unchanged, 0 removed" in out
    (corpus / "en" / "cooking.txt").write_text("Pasta needs salted boiling water.", encoding="utf-8")
    (corpus / "fr" / "montagne.txt").unlink()
    (corpus / "new.rst").write_text("A brand new note about tea.", encoding="utf-8")
    code, out, _ = _index(corpus, index, capsys)
    assert code == 0 and "2 files (re)indexed, 6 unchanged, 1 removed" in out
    sources = {doc_id.split("#")[0] for doc_id in _contents(index)}
    assert "fr/montagne.txt" not in sources and "new.rst" in sources and "en/cooking.txt" in sources


def test_a_moved_corpus_is_not_indexed_again(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _index(corpus, tmp_path / "idx", capsys)
    before = _contents(tmp_path / "idx")
    moved = corpus.rename(tmp_path / "elsewhere")
    code, out, _ = _index(moved, tmp_path / "idx", capsys)
    assert code == 0 and "0 files (re)indexed, 8 unchanged, 0 removed" in out
    assert _contents(tmp_path / "idx") == before


def test_skipped_files_are_named_and_the_rest_indexed(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (corpus / "broken.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    (corpus / "empty.md").write_text("   \n")
    (corpus / "scan.pdf").write_bytes(b"%PDF")
    os.mkfifo(corpus / "pipe.txt")
    code, out, err = _index(corpus, tmp_path / "idx", capsys)
    assert code == 1 and "8 files (re)indexed, 0 unchanged, 0 removed, 1 empty" in out
    assert "broken.txt: not UTF-8 text (byte 0xff at offset 0)" in err and "pipe.txt: a named pipe (FIFO)" in err
    assert "skipped 1 files that are not text (.pdf: 1)" in err
    code, out, _ = _index(corpus, tmp_path / "idx", capsys)
    assert "0 files (re)indexed, 8 unchanged" in out  # an empty file is not "(re)indexed" on every run


def test_a_missing_path_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path / "no" / "such"), "--index", str(tmp_path / "idx")]) == 2
    assert "no such file or directory" in capsys.readouterr().err and not (tmp_path / "idx").exists()


def test_options_of_a_new_index(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _index(corpus, tmp_path / "idx", capsys, "--no-colbert", "--dense-index", "hnsw")
    manifest = json.loads(next((tmp_path / "idx").glob("snap-*/manifest.json")).read_text())
    assert code == 0 and manifest["settings"]["store_colbert"] is False and manifest["settings"]["dense_index"] == "hnsw"
    assert main(["search", str(tmp_path / "idx"), "mountain", "--rerank", "colbert"]) == 0  # recomputed ColBERT
    capsys.readouterr()
    code, _, err = _index(corpus, tmp_path / "idx32", capsys, "--colbert-dtype", "float32")
    assert (
        code == 0
        and json.loads(next((tmp_path / "idx32").glob("snap-*/manifest.json")).read_text())["settings"]["colbert_dtype"] == "float32"
    )
    code, _, err = _index(corpus, tmp_path / "idx32", capsys, "--colbert-dtype", "float16")
    assert code == 2 and "differs from this index's float32" in err


def test_interrupted_run_keeps_finished_files_and_the_rerun_completes_it(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _index(corpus, tmp_path / "reference", capsys, "--batch", "4")
    real_add, calls = M3Index.add, []

    def add(self: M3Index, *args: object, **kwargs: object) -> list[str]:
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the fourth batch
        return real_add(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(M3Index, "add", add)
    code, _, err = _index(corpus, tmp_path / "idx", capsys, "--batch", "4")
    monkeypatch.undo()
    assert code == 130 and "interrupted" in err and "Run the same command again" in err
    partial = _contents(tmp_path / "idx")
    assert 0 < len(partial) < len(_contents(tmp_path / "reference"))
    code, _, _ = _index(corpus, tmp_path / "idx", capsys, "--batch", "4")
    assert code == 0 and _contents(tmp_path / "idx") == _contents(tmp_path / "reference")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_saves_progress(tiny_checkpoint: Path, tmp_path: Path, sig: int) -> None:
    corpus = tmp_path / "big"
    corpus.mkdir()
    from m3rag.testing import SAMPLE_TEXTS

    for i in range(120):
        (corpus / f"doc{i:03d}.txt").write_text("\n".join(SAMPLE_TEXTS[i % 200 : i % 200 + 25]), encoding="utf-8")
    argv = [
        sys.executable,
        "-m",
        "m3rag.cli",
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "idx"),
        "--batch",
        "8",
        "--save-every",
        "0.5",
        "--chunk-tokens",
        "32",
        "--overlap",
        "4",
    ]
    child = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "M3RAG_MODEL": str(tiny_checkpoint)})
    deadline = time.monotonic() + 60
    while not (tmp_path / "idx" / "CURRENT").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    index = M3Index.load(tmp_path / "idx")
    assert len(index) > 0 and "interrupted" in err
