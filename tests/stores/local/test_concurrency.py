"""Several writers and readers on one index directory: nothing is lost, nothing raises a raw OS error."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from m3rag import IndexLockedError, M3Encoder, M3Index
from m3rag.cli import main
from m3rag.stores.local import snapshot

WRITER = textwrap.dedent(
    """
    import sys
    from m3rag import M3Encoder, M3Index
    from m3rag.testing import SAMPLE_TEXTS
    checkpoint, path, name, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    index = M3Index(M3Encoder(checkpoint, device="cpu"))
    for i in range(rounds):
        index.add([SAMPLE_TEXTS[i % 225]], ids=[f"{name}-{i}"])
        index.save(path)
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_saving_to_one_directory_while_it_is_read(tiny_checkpoint: Path, tmp_path: Path, encoder: M3Encoder) -> None:
    path, rounds = tmp_path / "idx", 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tiny_checkpoint), str(path), name, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    loads = 0
    while any(w.poll() is None for w in writers):
        if (path / "CURRENT").exists():
            ids = M3Index.load(path, encoder).ids  # every load succeeds: one writer's complete version
            prefix = ids[0].split("-")[0]
            assert ids == [f"{prefix}-{i}" for i in range(len(ids))]
            loads += 1
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0 and out.strip() == "done", err
    assert loads > 0 and len(M3Index.load(path, encoder)) == rounds
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("snap-")) == ["CURRENT", "LOCK"]
    assert len(list(path.glob("snap-*"))) == 1


def test_two_threads_saving_to_one_directory(encoder: M3Encoder, tmp_path: Path) -> None:
    path = tmp_path / "idx"
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        index = M3Index(encoder)
        try:
            for i in range(6):
                index.add([f"{name} text {i}"], ids=[f"{name}-{i}"])
                index.save(path)
        except BaseException as exc:
            errors.append(exc)

    for _ in range(5):
        threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(M3Index.load(path, encoder)) == 6


def test_a_held_lock_times_out_with_a_typed_error(encoder: M3Encoder, tmp_path: Path, index: M3Index) -> None:
    path = tmp_path / "idx"
    index.save(path)
    fd = os.open(path / "LOCK", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's save in progress
    try:
        with pytest.raises(IndexLockedError, match="locked"):
            index.store.save(path, timeout=0.2)  # type: ignore[attr-defined]
        with pytest.raises(IndexLockedError), snapshot.open_snapshot(path, timeout=0.2):
            pass
    finally:
        os.close(fd)
    index.save(path)


def test_leftovers_of_an_interrupted_first_save_are_cleaned_not_refused(
    encoder: M3Encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "idx"
    (path / ".tmp-snap-0123456789abcdef0123456789abcdef").mkdir(parents=True)
    (path / ".tmp-snap-0123456789abcdef0123456789abcdef" / "dense.npy").write_bytes(b"half")
    (path / ".CURRENT-snap-fedcba9876543210fedcba9876543210").write_text("{}")
    (path / "snap-00000000000000000000000000000000").mkdir()  # renamed, but CURRENT never swapped
    (path / "LOCK").touch()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Some text to index.")
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    assert main(["index", str(corpus), "--index", str(path)]) == 0
    assert len(M3Index.load(path, encoder)) == 1
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("snap-")) == ["CURRENT", "LOCK"]
    assert len(list(path.glob("snap-*"))) == 1
