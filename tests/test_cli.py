from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from m3rag import M3Encoder
from m3rag.cli import main
from m3rag.testing import build_checkpoint

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"
MOUNTAIN = " ".join((CORPUS / "fr" / "montagne.txt").read_text(encoding="utf-8").split())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))


@pytest.fixture(autouse=True)
def model(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    return tiny_checkpoint


def _index(corpus: Path, index: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["index", str(corpus), *extra, "--index", str(index), "--chunk-tokens", "64", "--overlap", "8"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_index_then_search_table_and_json(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _index(corpus, tmp_path / "idx", capsys)
    assert code == 0 and "8 files (re)indexed" in out
    assert main(["search", str(tmp_path / "idx"), MOUNTAIN, "-k", "3", "--rerank", "colbert"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["#", "score", "dense", "sparse", "colbert", "source", "text"]
    assert len(table) == 4 and "montagne.txt" in table[1]
    assert main(["search", str(tmp_path / "idx"), MOUNTAIN, "-k", "2", "--mode", "sparse", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["metadata"]["source"].endswith("montagne.txt")
    assert set(hits[0]["scores"]) == {"sparse"}


def test_rerun_updates_only_what_changed(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "idx"
    _index(corpus, index, capsys)
    code, out, _ = _index(corpus, index, capsys)
    assert "0 files (re)indexed, 8 unchanged, 0 removed" in out
    (corpus / "en" / "cooking.txt").write_text("Pasta needs salted boiling water.", encoding="utf-8")
    (corpus / "fr" / "montagne.txt").unlink()
    (corpus / "new.md").write_text("A brand new note about tea.", encoding="utf-8")
    code, out, _ = _index(corpus, index, capsys)
    assert code == 0 and "2 files (re)indexed, 6 unchanged, 1 removed" in out
    main(["search", str(index), "Pasta needs salted boiling water.", "-k", "20", "--json"])
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    sources = {Path(h["metadata"]["source"]).name for h in hits}
    assert "montagne.txt" not in sources and "new.md" in sources
    assert all("bread" not in h["text"] for h in hits)


def test_unreadable_files_are_listed_and_the_rest_indexed(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (corpus / "broken.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    code, out, err = _index(corpus, tmp_path / "idx", capsys, str(tmp_path / "missing.md"))
    assert code == 1 and "8 files (re)indexed" in out
    assert "broken.txt" in err and "missing.md: no such file" in err


def test_errors_are_one_line_and_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str], corpus: Path) -> None:
    assert main(["search", str(tmp_path / "nope"), "q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3rag: error:") and err.count("\n") == 1
    _index(corpus, tmp_path / "idx", capsys)
    other = build_checkpoint(tmp_path / "other", seed=1)
    assert main(["search", str(tmp_path / "idx"), "q", "--model", str(other)]) == 2
    assert "was built with model" in capsys.readouterr().err


def test_encode_jsonl_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model: Path) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hello world\nsecond line\n"))
    assert main(["encode", "--sparse", "--colbert"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = M3Encoder(model, device="cpu").encode(["hello world", "second line"], return_sparse=True, return_colbert_vecs=True)
    assert [r["index"] for r in records] == [0, 1]
    assert records[0]["sparse"] == {str(k): v for k, v in ref.lexical_weights[0].items()}
    assert len(records[1]["colbert"]) == len(ref.colbert_vecs[1]) and len(records[0]["dense"]) == ref.dense.shape[1]


def test_info(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _index(corpus, tmp_path / "idx", capsys)
    assert main(["info", "--index", str(tmp_path / "idx")]) == 0
    facts = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert facts["files"] == "8" and facts["dtype"] == "float32" and facts["max_length"] == "8192"
