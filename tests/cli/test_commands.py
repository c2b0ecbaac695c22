from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from m3rag import M3Encoder
from m3rag.cli import main
from m3rag.testing import build_checkpoint
from tests.cli.conftest import CORPUS

MOUNTAIN = " ".join((CORPUS / "fr" / "montagne.txt").read_text(encoding="utf-8").split())


def _index(corpus: Path, index: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["index", str(corpus), *extra, "--index", str(index), "--chunk-tokens", "64", "--overlap", "8"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_table_json_filter_and_empty_query(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _index(corpus, tmp_path / "idx", capsys)
    assert code == 0 and "8 files (re)indexed" in out
    assert main(["search", str(tmp_path / "idx"), MOUNTAIN, "-k", "3", "--rerank", "colbert"]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split() == ["#", "score", "dense", "sparse", "colbert", "source", "text"]
    assert len(table) == 4 and "fr/montagne.txt:" in table[1]
    assert "named by the index" in captured.err  # which model the index chose is said
    assert main(["search", str(tmp_path / "idx"), MOUNTAIN, "-k", "2", "--mode", "sparse", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["metadata"]["source"] == "fr/montagne.txt"
    assert set(hits[0]["scores"]) == {"sparse"}
    assert main(["search", str(tmp_path / "idx"), MOUNTAIN, "-k", "9", "--json", "--filter", "source=en/rag.md"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert hits and {h["metadata"]["source"] for h in hits} == {"en/rag.md"}
    for query in ("", "   "):  # the core's rule: a blank query finds nothing
        assert main(["search", str(tmp_path / "idx"), query]) == 0
        assert capsys.readouterr().out.strip() == "(no results: the query is empty)"


def test_errors_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], corpus: Path) -> None:
    assert main(["search", str(tmp_path / "nope"), "q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3rag: error:") and err.count("\n") == 1 and "not an m3rag index" in err
    _index(corpus, tmp_path / "idx", capsys)
    other = build_checkpoint(tmp_path / "other", seed=1)
    assert main(["search", str(tmp_path / "idx"), "q", "--model", str(other)]) == 2
    assert "was built with model" in capsys.readouterr().err
    assert main(["search", str(tmp_path / "idx"), "q", "--filter", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_encode_jsonl_skips_blank_lines_and_numbers_the_rest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"hello world\n\n   \nsecond line\n"), encoding="utf-8"))
    assert main(["encode", "--sparse", "--colbert"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = M3Encoder(model, device="cpu").encode(["hello world", "second line"], return_sparse=True, return_colbert_vecs=True)
    assert [r["line"] for r in records] == [1, 4]
    assert records[0]["sparse"] == {str(k): v for k, v in ref.lexical_weights[0].items()}
    assert len(records[1]["colbert"]) == len(ref.colbert_vecs[1]) and len(records[0]["dense"]) == ref.dense.shape[1]


def test_encode_errors_and_truncation_speak_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait\n".encode("latin-1"))
    assert main(["encode", str(latin1)]) == 2
    err = capsys.readouterr().err
    assert err == f"m3rag: error: {latin1} is not UTF-8 text (byte 0xe9 at offset 3)\n"
    assert main(["encode", str(latin1), "--no-dense"]) == 2
    assert "--no-dense needs --sparse or --colbert" in capsys.readouterr().err
    long = tmp_path / "long.txt"
    long.write_text("short\n" + "word " * 100 + "\n")
    assert main(["encode", str(long), "--max-length", "8"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(x)["truncated"] for x in captured.out.splitlines()] == [False, True]
    assert captured.err == 'm3rag: 1 of 2 lines were longer than 8 tokens and were truncated ("truncated": true)\n'


def test_info_on_an_index_reads_its_manifest_without_loading_a_model(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _index(corpus, tmp_path / "idx", capsys)
    code = (
        "import sys; from m3rag.cli import main; rc = main(['info', '--index', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")], capture_output=True, text=True, check=True)
    facts = dict(line.split(None, 1) for line in run.stdout.splitlines())
    assert facts["passages"] == str(len(__import__("m3rag").M3Index.load(tmp_path / "idx").ids))
    assert facts["format_version"] == "2" and facts["dense_index"] == "flat" and facts["store_colbert"] == "True"
    assert main(["info"]) == 0  # the model's facts
    facts = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert facts["dtype"] == "float32" and facts["max_length"] == "8192"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["index", "--help"], ["search"], ["index", "x"], ["frobnicate"]])
def test_help_version_and_argument_errors_import_nothing_heavy(argv: list[str]) -> None:
    code = (
        "import sys; from m3rag.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'transformers', 'faiss', 'numpy'} & set(sys.modules)\nassert not heavy, sorted(heavy)"
    )
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    if argv == ["--version"]:
        assert run.stdout.strip() == f"m3rag {__import__('m3rag').__version__}"
    if argv in (["search"], ["index", "x"]):
        assert "error:" in run.stderr  # argparse's usage error, status 2


def test_option_help_shows_defaults_and_no_markup() -> None:
    from m3rag.cli import build_parser

    parser = build_parser()
    texts = {name: sub.format_help() for name, sub in parser._subparsers._group_actions[0].choices.items()}  # type: ignore[union-attr]
    assert "(default: 5)" in texts["search"] and "(default: hybrid)" in texts["search"] and "auto:" in texts["search"]
    assert "(default: 256)" in texts["index"] and "--no-colbert" in texts["index"] and "--colbert-dtype" in texts["index"]
    assert all("``" not in text for text in [parser.format_help(), *texts.values()])
