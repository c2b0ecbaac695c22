"""``m3rag index --ray`` gives the index ``m3rag index`` gives, and keeps its interrupt behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from m3rag import M3Index
from m3rag.cli import main

from .conftest import actor_processes
from .helpers import assert_same_index, make_corpus

pytestmark = pytest.mark.service

CHUNKING = ["--chunk-tokens", "32", "--overlap", "4", "--batch", "8"]


@pytest.fixture(autouse=True)
def model(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))


def _index(capsys: pytest.CaptureFixture[str], corpus: Path, index: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["index", str(corpus), "--index", str(index), *CHUNKING, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ray_builds_and_updates_the_same_index(ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = make_corpus(tmp_path / "corpus", 24)
    (corpus / "blank.txt").write_text("  \n")
    code, out, _ = _index(capsys, corpus, tmp_path / "ref")
    assert code == 0 and "32 files (re)indexed, 0 unchanged, 0 removed, 1 empty" in out
    code, out, err = _index(capsys, corpus, tmp_path / "ray", "--ray", "--workers", "2")
    assert code == 0 and "32 files (re)indexed, 0 unchanged, 0 removed, 1 empty" in out, err
    assert_same_index(M3Index.load(tmp_path / "ray"), M3Index.load(tmp_path / "ref"))
    code, out, _ = _index(capsys, corpus, tmp_path / "ray", "--ray")
    assert code == 0 and "0 files (re)indexed, 32 unchanged, 0 removed, 1 empty" in out  # nothing to encode: no Ray job
    (corpus / "en" / "cooking.txt").write_text("Pasta needs salted boiling water. " * 40, encoding="utf-8")
    (corpus / "notes" / "note003.md").unlink()
    (corpus / "new.rst").write_text("A brand new note about tea.", encoding="utf-8")
    for name, extra in (("ref", ()), ("ray", ("--ray", "--workers", "2"))):
        code, out, _ = _index(capsys, corpus, tmp_path / name, *extra)
        assert code == 0 and "2 files (re)indexed, 30 unchanged, 1 removed" in out
    assert_same_index(M3Index.load(tmp_path / "ray"), M3Index.load(tmp_path / "ref"))


def test_an_interrupted_ray_run_keeps_finished_files_and_the_rerun_completes_it(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = make_corpus(tmp_path / "corpus", 24)
    _index(capsys, corpus, tmp_path / "ref")
    real, calls, saved = M3Index.add_encoded, [], []

    def add_encoded(self: M3Index, *args: object, **kwargs: object) -> list[str]:
        calls.append(1)
        saved.append((tmp_path / "ray" / "CURRENT").exists())
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) while Ray's results are being stored
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(M3Index, "add_encoded", add_encoded)
    code, _, err = _index(capsys, corpus, tmp_path / "ray", "--ray", "--workers", "2", "--save-every", "0")
    monkeypatch.undo()
    assert code == 130 and "interrupted" in err and "Run the same command again" in err
    assert saved == [False, True, True, True]  # saved after every stored batch (--save-every 0) while Ray encodes
    partial = M3Index.load(tmp_path / "ray")
    assert 0 < len(partial) < len(M3Index.load(tmp_path / "ref"))
    deadline = time.monotonic() + 30
    while actor_processes("FileEncodeActor") and time.monotonic() < deadline:  # the interrupted job's actors go away
        time.sleep(0.2)
    assert not actor_processes("FileEncodeActor")
    code, out, _ = _index(capsys, corpus, tmp_path / "ray", "--ray", "--workers", "2")
    assert code == 0 and "0 removed" in out
    assert_same_index(M3Index.load(tmp_path / "ray"), M3Index.load(tmp_path / "ref"))


def test_ray_options(ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = make_corpus(tmp_path / "corpus", 0)
    with pytest.raises(SystemExit):
        main(["index", str(corpus), "--index", str(tmp_path / "idx"), "--workers", "2"])
    assert "--ray-address and --workers go with --ray" in capsys.readouterr().err
    code, _, err = _index(capsys, corpus, tmp_path / "idx", "--ray", "--device", "cuda:1")
    assert code == 2 and "on Ray give cpu or cuda" in err
    code, _, err = _index(capsys, corpus, tmp_path / "idx", "--ray", "--device", "cuda")
    assert code == 2 and "the Ray cluster has no GPU" in err


def test_ray_into_a_store_without_colbert(ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = make_corpus(tmp_path / "corpus", 6)
    for name, extra in (("ref", ()), ("ray", ("--ray",))):
        code = main(["index", str(corpus), "--store", f"milvus:{tmp_path / name}.db", *CHUNKING, *extra])
        assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    from m3rag.stores import open_store

    ray_index, ref_index = (M3Index(store=open_store(f"milvus:{tmp_path / n}.db")) for n in ("ray", "ref"))
    try:
        assert not ref_index.store.keeps_colbert
        assert sorted(ray_index.ids) == sorted(ref_index.ids) and len(ref_index) > 0
        for a, b in zip(ray_index.get(ref_index.ids), ref_index.get(ref_index.ids)):
            assert (a.text, a.metadata) == (b.text, b.metadata)
        hits = [h.id for h in ray_index.search("mountain walk", k=5)]
        assert hits == [h.id for h in ref_index.search("mountain walk", k=5)]
    finally:
        ray_index.close()
        ref_index.close()
