"""The serve command's arguments (fast tier: no model, no server)."""

from __future__ import annotations

import argparse

import pytest

from m3rag.serve.cli import add_serve_arguments


def test_defaults_bind_loopback() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.api_key_env, args.max_queue, args.max_request_texts) == ("127.0.0.1", 8000, None, 64, 256)
    assert args.model is None and args.max_batch_tokens is None


def test_a_subparser_with_shared_model_options_keeps_them() -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model")
    common.add_argument("--device")
    common.add_argument("--dtype")
    common.add_argument("--batch-tokens", type=int)
    parser = argparse.ArgumentParser(prog="m3rag")
    serve = parser.add_subparsers(dest="command").add_parser("serve", parents=[common])
    add_serve_arguments(serve)
    args = parser.parse_args(["serve", "--model", "m", "--port", "9000", "--max-queue", "5", "--api-key-env", "KEY"])
    assert (args.model, args.port, args.max_queue, args.api_key_env) == ("m", 9000, 5, "KEY")


@pytest.mark.parametrize("bad", [["--max-queue", "0"], ["--max-request-texts", "x"], ["--max-batch-tokens", "-1"]])
def test_limits_must_be_positive_integers(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(bad)
    assert "error" in capsys.readouterr().err
