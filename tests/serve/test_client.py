"""RemoteM3Encoder against a real server: the local encoder's results, arguments and errors."""

from __future__ import annotations

import asyncio
import os
import warnings

import numpy as np
import pytest

from m3rag import (
    InputTypeError,
    InputValueError,
    M3Encoder,
    M3EncoderLike,
    M3TruncationWarning,
    ModelMismatchError,
    RemoteError,
    ServiceUnavailableError,
)
from m3rag.chunking import chunk_text
from m3rag.encoder import resolve_encoder
from m3rag.serve.client import RemoteM3Encoder
from m3rag.testing import SAMPLE_TEXTS

from .conftest import MAX_REQUEST_TEXTS, Server, free_port
from .helpers import assert_same_item, assert_same_output

pytestmark = pytest.mark.service

TEXTS = list(SAMPLE_TEXTS[:40])
ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


def test_satisfies_the_protocol_and_has_the_local_identity(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    assert isinstance(remote, M3EncoderLike)
    local = encoder.identity
    assert {k: v for k, v in remote.identity.items() if k != "name"} == {k: v for k, v in local.items() if k != "name"}
    assert remote.name == remote.url and remote.model == encoder.name
    assert (remote.query_max_length, remote.passage_max_length, remote.max_length) == (
        encoder.query_max_length,
        encoder.passage_max_length,
        encoder.max_length,
    )
    assert not remote.dense_only


@pytest.mark.parametrize(
    "kw", [{}, {"return_sparse": True}, {"return_dense": False, "return_colbert_vecs": True}, ALL, {**ALL, "max_length": 16}]
)
def test_encode_equals_local(remote: RemoteM3Encoder, encoder: M3Encoder, kw: dict[str, object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M3TruncationWarning)
        assert_same_output(remote.encode(TEXTS, **kw), encoder.encode(TEXTS, **kw))  # type: ignore[arg-type]


def test_queries_corpus_items_and_async_equal_local(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    assert_same_output(remote.encode_queries(TEXTS[:5], **ALL), encoder.encode_queries(TEXTS[:5], **ALL))
    assert_same_output(remote.encode_corpus(TEXTS[:5], **ALL), encoder.encode_corpus(TEXTS[:5], **ALL))
    assert_same_item(remote.encode(TEXTS[0], **ALL), encoder.encode(TEXTS[0], **ALL))
    assert_same_item(remote.encode_queries(TEXTS[1], **ALL), encoder.encode_queries(TEXTS[1], **ALL))

    async def both() -> tuple[object, ...]:
        return await asyncio.gather(
            remote.aencode(TEXTS, **ALL), remote.aencode_queries(TEXTS[2], **ALL), remote.aencode_corpus(TEXTS[:3], return_sparse=True)
        )

    out, item, corpus = asyncio.run(both())
    assert_same_output(out, encoder.encode(TEXTS, **ALL))  # type: ignore[arg-type]
    assert_same_item(item, encoder.encode_queries(TEXTS[2], **ALL))  # type: ignore[arg-type]
    assert_same_output(corpus, encoder.encode_corpus(TEXTS[:3], return_sparse=True))  # type: ignore[arg-type]


def test_query_and_passage_limits_apply_by_default(remote: RemoteM3Encoder) -> None:
    long = "word " * 700
    with pytest.warns(M3TruncationWarning, match="1 of 1 texts were longer than max_length=512") as caught:
        assert remote.encode_queries([long]).num_tokens.tolist() == [512]
    assert caught[0].filename == __file__  # the warning points at the caller, as the local encoder's
    assert remote.encode_corpus([long]).num_tokens[0] > 512


def test_calls_larger_than_the_server_limit_are_split(remote: RemoteM3Encoder, encoder: M3Encoder, server: Server) -> None:
    texts = [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] + f" {i}" for i in range(3 * MAX_REQUEST_TEXTS + 5)]
    before = server.metric("m3rag_requests_total", endpoint="/v1/encode", status="200")
    assert_same_output(remote.encode(texts, **ALL), encoder.encode(texts, **ALL))
    assert server.metric("m3rag_requests_total", endpoint="/v1/encode", status="200") - before == 4


def test_empty_input_gives_the_local_empty_output_without_a_request(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    assert_same_output(remote.encode([], **ALL), encoder.encode([], **ALL))
    assert_same_output(remote.encode([]), encoder.encode([]))


def test_scoring_api_equals_local(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    pairs = [(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[3]), (TEXTS[0], TEXTS[3])]
    got, want = remote.compute_score(pairs), encoder.compute_score(pairs)
    assert isinstance(got, dict) and isinstance(want, dict) and got.keys() == want.keys()
    for mode in want:
        np.testing.assert_allclose(got[mode], want[mode], atol=1e-6)
    single = remote.compute_score(["a query", "a passage"], weights_for_different_modes=[0.4, 0.2, 0.4])
    assert isinstance(single, dict) and isinstance(single["dense"], float)
    weights = remote.encode(TEXTS[:2], return_dense=False, return_sparse=True).lexical_weights
    assert remote.convert_id_to_token(weights) == encoder.convert_id_to_token(weights)


def test_tokenizer_chunks_like_the_local_one(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    text = " ".join(SAMPLE_TEXTS[:30])
    assert remote.tokenizer(text)["input_ids"] == encoder.tokenizer(text)["input_ids"]
    assert chunk_text(text, remote.tokenizer, max_tokens=40, overlap=8) == chunk_text(text, encoder.tokenizer, max_tokens=40, overlap=8)


def test_bad_arguments_raise_the_local_errors(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    for enc in (remote, encoder):
        with pytest.raises(InputTypeError, match=r"texts\[1\] is int"):
            enc.encode(["a", 1])  # type: ignore[list-item]
        with pytest.raises(InputValueError, match="max_length must be >= 2"):
            enc.encode(["a"], max_length=1)
        with pytest.raises(InputValueError, match="exceeds the model's limit"):
            enc.encode(["a"], max_length=10**6)
        with pytest.raises(InputValueError, match="nothing to return"):
            enc.encode(["a"], return_dense=False)
        with pytest.raises(InputTypeError):
            enc.encode(None)  # type: ignore[call-overload]
        with pytest.raises(InputValueError, match="not valid Unicode"):
            enc.encode(["fine", "bad \ud800"])


def test_server_side_input_errors_keep_their_type(server: Server, remote: RemoteM3Encoder) -> None:
    remote.max_length = 10**6  # skip the client's own check: the server's answer must be typed the same
    with pytest.raises(InputValueError, match="exceeds the model's limit"):
        remote.encode(["a"], max_length=10**5)


def test_shared_instances_and_names(server: Server, api_key_env: str) -> None:
    shared = RemoteM3Encoder.shared(server.url)
    assert RemoteM3Encoder.shared(server.url + "/") is shared
    assert resolve_encoder(server.url) is shared and resolve_encoder(None, server.url) is shared
    assert M3Encoder.remote(server.url) is shared
    assert RemoteM3Encoder.shared(server.url, timeout=5) is not shared
    with pytest.raises(InputValueError, match="http"):
        RemoteM3Encoder("localhost:8000")


def test_wrong_or_missing_key_is_a_remote_401(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M3RAG_API_KEY", raising=False)
    with pytest.raises(RemoteError, match="missing API key") as missing:
        RemoteM3Encoder(server.url)
    with pytest.raises(RemoteError, match="wrong API key") as wrong:
        RemoteM3Encoder(server.url, api_key="nope")
    assert missing.value.status == wrong.value.status == 401


def test_unreachable_server_is_service_unavailable_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError, match="unreachable after 3 attempts") as info:
        RemoteM3Encoder(url, retries=2, backoff=0.01)
    assert info.value.address == url


def test_other_weights_behind_the_same_address_are_refused(remote: RemoteM3Encoder) -> None:
    remote.fingerprint = "0" * 16  # as if the server had been restarted with other weights
    with pytest.raises(ModelMismatchError, match="now serves other weights"):
        remote.encode(["a"])


def test_env_api_key_is_used(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3RAG_API_KEY", server.api_key or "")
    assert RemoteM3Encoder(server.url).encode("x").num_tokens > 0
    assert os.environ["M3RAG_API_KEY"] == server.api_key
