"""The HTTP API of a real server: endpoints, validation, limits, auth, metrics, shutdown."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from m3rag import M3Encoder, ServiceUnavailableError, rerank
from m3rag.serve.client import RemoteM3Encoder
from m3rag.testing import SAMPLE_TEXTS

from .conftest import MAX_REQUEST_BYTES, MAX_REQUEST_TEXTS, REPO, Server, start_server

pytestmark = pytest.mark.service

LONG = "word " * 9000  # 8192 tokens after truncation: a request of a few of these takes seconds on the tiny model


def post(
    server: Server, path: str, body: Any = None, *, content: bytes | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    hdrs = {**server.headers, **(headers or {})}
    if content is not None:
        return httpx.post(server.url + path, content=content, headers={"Content-Type": "application/json", **hdrs}, timeout=60)
    return httpx.post(server.url + path, json=body, headers=hdrs, timeout=60)


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["code"] == response.status_code
    return str(body["error"]["message"])


# ---------------------------------------------------------------- endpoints


def test_health_and_models(server: Server, encoder: M3Encoder) -> None:
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    card = httpx.get(server.url + "/v1/models", headers=server.headers).json()["data"][0]
    assert card["id"] == encoder.name and card["object"] == "model"
    facts = card["m3rag"]
    assert {k: facts[k] for k in ("dim", "colbert_dim", "vocab_size", "fingerprint")} == {
        k: v for k, v in encoder.identity.items() if k != "name"
    }
    assert facts["limits"]["max_request_texts"] == MAX_REQUEST_TEXTS and facts["limits"]["max_request_bytes"] == MAX_REQUEST_BYTES


def test_every_answer_names_the_weights(server: Server, encoder: M3Encoder) -> None:
    assert httpx.get(server.url + "/health").headers["x-m3rag-fingerprint"] == encoder.fingerprint


def test_openai_embeddings_float_and_base64(server: Server, encoder: M3Encoder) -> None:
    texts = list(SAMPLE_TEXTS[:5])
    local = encoder.encode(texts, max_length=encoder.passage_max_length).dense
    body = post(server, "/v1/embeddings", {"input": texts, "model": "text-embedding-3-small", "user": "u1"}).json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(5))
    assert body["usage"]["prompt_tokens"] == int(encoder.encode(texts).num_tokens.sum()) == body["usage"]["total_tokens"]
    np.testing.assert_allclose(np.array([d["embedding"] for d in body["data"]]), local, atol=1e-6)
    b64 = post(server, "/v1/embeddings", {"input": texts[0], "encoding_format": "base64"}).json()["data"][0]["embedding"]
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(b64), dtype="<f4"), local[0], atol=1e-6)  # type: ignore[index]
    wrong_dims = post(server, "/v1/embeddings", {"input": "x", "dimensions": 3})
    assert wrong_dims.status_code == 400 and "cannot be shortened" in error_of(wrong_dims)
    tokens = post(server, "/v1/embeddings", {"input": [[1, 2, 3]]})
    assert tokens.status_code == 400 and "check_embedding_ctx_length=False" in error_of(tokens)


def test_rerank_speaks_the_rerank_client_shape_and_equals_m3rag_rerank(server: Server, encoder: M3Encoder) -> None:
    docs = list(SAMPLE_TEXTS[:8])
    query = SAMPLE_TEXTS[3][:40]
    for mode in ("colbert", "hybrid"):
        documents = [docs[0], *({"text": d} for d in docs[1:])]  # plain strings and {"text": ...} objects
        request = {"query": query, "documents": documents, "top_n": 3, "mode": mode, "return_documents": True, "model": "anything"}
        body = post(server, "/v1/rerank", request).json()
        want = rerank(encoder, query, docs, mode=mode, top_n=3)  # type: ignore[arg-type]
        assert [r["index"] for r in body["results"]] == [r.index for r in want]
        np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], [r.score for r in want], atol=1e-6)
        assert all(r["document"]["text"] == docs[r["index"]] for r in body["results"])
        assert set(body["results"][0]["scores"]) == set(want[0].scores)
    assert "document" not in post(server, "/v1/rerank", {"query": "q", "documents": ["a", "b"]}).json()["results"][0]


def test_score_equals_compute_score(server: Server, encoder: M3Encoder) -> None:
    pairs = [[SAMPLE_TEXTS[0], SAMPLE_TEXTS[1]], [SAMPLE_TEXTS[2], SAMPLE_TEXTS[3]]]
    body = post(server, "/v1/score", {"pairs": pairs, "weights": [0.4, 0.2, 0.4]}).json()
    want = encoder.compute_score([tuple(p) for p in pairs], weights_for_different_modes=[0.4, 0.2, 0.4])
    assert isinstance(want, dict) and body["scores"].keys() == want.keys()
    for mode, values in want.items():
        np.testing.assert_allclose(body["scores"][mode], values, atol=1e-6)


def test_encode_float16_colbert(server: Server, encoder: M3Encoder) -> None:
    texts = list(SAMPLE_TEXTS[:4])
    half = RemoteM3Encoder(server.url, api_key=server.api_key, colbert_dtype="float16").encode(texts, return_colbert_vecs=True)
    np.testing.assert_allclose(half.colbert, encoder.encode(texts, return_colbert_vecs=True).colbert, atol=2e-3)  # type: ignore[arg-type]


def test_openapi_page_documents_every_endpoint(server: Server) -> None:
    spec = httpx.get(server.url + "/openapi.json", headers=server.headers).json()
    assert {"/v1/encode", "/v1/embeddings", "/v1/rerank", "/v1/score", "/v1/models", "/v1/tokenizer", "/metrics", "/health"} <= set(
        spec["paths"]
    )
    assert httpx.get(server.url + "/docs", headers=server.headers).status_code == 200


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/encode", b'{"texts": ["a"', 400, "not valid JSON"),
        ("/v1/encode", b"[1, 2]", 422, "valid dictionary"),
        ("/v1/encode", b'{"texts": "a"}', 422, "texts: Input should be a valid list"),
        ("/v1/encode", b'{"texts": ["a", 3]}', 422, "texts.1: Input should be a valid string"),
        ("/v1/encode", b'{"texts": ["a"], "return_sparse": "yes"}', 422, "return_sparse: Input should be a valid boolean"),
        ("/v1/encode", b'{"texts": ["a"], "max_length": 1}', 400, "max_length must be >= 2"),
        ("/v1/encode", b'{"texts": ["a"], "max_length": 100000}', 400, "exceeds the model's limit"),
        ("/v1/encode", b'{"texts": ["a"], "return_dense": false}', 400, "nothing to return"),
        ("/v1/encode", b'{"texts": ["a"], "retrun_sparse": true}', 422, "retrun_sparse: Extra inputs are not permitted"),
        ("/v1/encode", b'{"texts": []}', 400, "texts is empty"),
        ("/v1/encode", b'{"texts": ["ok", "\\ud800"]}', 400, "texts[1] is not valid Unicode"),
        ("/v1/embeddings", b'{"input": []}', 400, "input is empty"),
        ("/v1/embeddings", b'{"input": null}', 422, "input"),
        ("/v1/rerank", b'{"query": "q", "documents": []}', 400, "documents is empty"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "top_n": 0}', 400, "top_n must be >= 1"),
        ("/v1/rerank", b'{"query": "q", "documents": ["a"], "mode": "dense"}', 422, "mode"),
        ("/v1/rerank", b'{"query": 1, "documents": ["a"]}', 422, "query"),
        ("/v1/score", b'{"pairs": [["a"]]}', 422, "pairs.0"),
        ("/v1/score", b'{"pairs": []}', 400, "pairs is empty"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(server: Server, path: str, body: bytes, status: int, message: str) -> None:
    response = post(server, path, content=body)
    assert response.status_code == status, response.text
    assert message in error_of(response)


def test_oversized_requests_are_413(server: Server) -> None:
    too_many = post(server, "/v1/encode", {"texts": ["a"] * (MAX_REQUEST_TEXTS + 1)})
    assert too_many.status_code == 413 and "split the request" in error_of(too_many)
    too_big = post(server, "/v1/encode", {"texts": ["a" * (MAX_REQUEST_BYTES + 10)]})
    assert too_big.status_code == 413 and "exceeds the limit" in error_of(too_big)

    def chunked() -> Any:  # no Content-Length: the limit applies while the body streams in
        yield b'{"texts": ["'
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"a" * 65536
        yield b'"]}'

    streamed = httpx.post(
        server.url + "/v1/encode", content=chunked(), headers={**server.headers, "Content-Type": "application/json"}, timeout=60
    )
    assert streamed.status_code == 413 and "exceeds the limit" in error_of(streamed)
    assert post(server, "/v1/rerank", {"query": "q", "documents": ["d"] * (MAX_REQUEST_TEXTS + 1)}).status_code == 413


def test_api_key_guards_every_route_but_health(server: Server) -> None:
    for path in ("/v1/models", "/metrics", "/v1/tokenizer", "/docs", "/openapi.json", "/nowhere"):
        missing = httpx.get(server.url + path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer" and "missing API key" in error_of(missing)
        wrong = httpx.get(server.url + path, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and "wrong API key" in error_of(wrong)
        assert httpx.get(server.url + path, headers={"Authorization": f"Basic {server.api_key}"}).status_code == 401
    unauthorised_post = httpx.post(server.url + "/v1/encode", json={"texts": ["a"]})
    assert unauthorised_post.status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200


def test_the_server_stays_up_after_bad_requests(server: Server, remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    for body in (b"{", b'{"texts": [null]}', b'{"texts": ["\\udfff"]}', b"\xff\xfe"):
        assert 400 <= post(server, "/v1/encode", content=body).status_code < 500
    assert server.alive()
    np.testing.assert_allclose(remote.encode(["still here"]).dense, encoder.encode(["still here"]).dense, atol=1e-6)  # type: ignore[arg-type]


def test_non_json_content_type_is_explained(server: Server) -> None:
    response = httpx.post(server.url + "/v1/encode", content=b'{"texts": ["a"]}', headers={**server.headers, "Content-Type": "text/plain"})
    assert response.status_code == 422 and "Content-Type: application/json" in error_of(response)


# ---------------------------------------------------------------- concurrency and metrics


def test_32_concurrent_clients_each_get_their_own_results(server: Server, encoder: M3Encoder) -> None:
    options = [
        {},
        {"return_sparse": True},
        {"return_dense": False, "return_colbert_vecs": True},
        {"return_sparse": True, "return_colbert_vecs": True},
    ]
    calls = [([SAMPLE_TEXTS[(7 * i + j) % len(SAMPLE_TEXTS)] for j in range(1 + i % 3)], options[i % 4]) for i in range(32)]
    expected = [encoder.encode(texts, **kw) for texts, kw in calls]  # type: ignore[arg-type]
    shared_calls_before = server.metric("m3rag_batch_requests_count")
    requests_before = server.metric("m3rag_batch_requests_sum")
    clients = [server.client() for _ in range(32)]  # 32 clients, each with its own connection pool
    barrier = threading.Barrier(32)
    results: list[Any] = [None] * 32
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            texts, kw = calls[i]
            results[i] = [clients[i].encode(texts, **kw) for _ in range(3)]  # type: ignore[arg-type]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    from .helpers import assert_same_output

    for got, want in zip(results, expected):
        for out in got:
            assert_same_output(out, want, atol=1e-5)
    shared_calls = server.metric("m3rag_batch_requests_count") - shared_calls_before
    served = server.metric("m3rag_batch_requests_sum") - requests_before
    assert served == 96 and shared_calls < served  # concurrent requests shared forward passes


def test_concurrent_async_callers_on_one_client(remote: RemoteM3Encoder, encoder: M3Encoder) -> None:
    import asyncio

    texts = [SAMPLE_TEXTS[i] for i in range(32)]

    async def main() -> list[Any]:
        return await asyncio.gather(*(remote.aencode([t], return_sparse=True, return_colbert_vecs=True) for t in texts))

    from .helpers import assert_same_output

    for text, out in zip(texts, asyncio.run(main())):
        assert_same_output(out, encoder.encode([text], return_sparse=True, return_colbert_vecs=True), atol=1e-5)


def test_metrics_count_requests_texts_tokens_batches_waits_latency(server: Server, remote: RemoteM3Encoder) -> None:
    before = {
        n: server.metric(n)
        for n in ("m3rag_tokens_total", "m3rag_batch_texts_count", "m3rag_queue_wait_seconds_count", "m3rag_model_seconds_count")
    }
    texts_before = server.metric("m3rag_texts_total", endpoint="/v1/encode")
    ok_before = server.metric("m3rag_requests_total", endpoint="/v1/encode", status="200")
    out = remote.encode(["one two three", "four five"])
    assert server.metric("m3rag_texts_total", endpoint="/v1/encode") - texts_before == 2
    assert server.metric("m3rag_requests_total", endpoint="/v1/encode", status="200") - ok_before == 1
    assert server.metric("m3rag_tokens_total") - before["m3rag_tokens_total"] == int(out.num_tokens.sum())
    for name in ("m3rag_batch_texts_count", "m3rag_queue_wait_seconds_count", "m3rag_model_seconds_count"):
        assert server.metric(name) > before[name], name
    assert server.metric("m3rag_request_seconds_count", endpoint="/v1/encode") >= 1
    refused_before = server.metric("m3rag_requests_total", endpoint="/v1/encode", status="401")
    assert httpx.post(server.url + "/v1/encode", json={"texts": ["x"]}, timeout=60).status_code == 401  # no key
    assert server.metric("m3rag_requests_total", endpoint="/v1/encode", status="401") - refused_before == 1
    assert server.metric("m3rag_requests_in_flight") == 0


# ---------------------------------------------------------------- limits, failures, shutdown


def test_a_full_queue_answers_429_with_retry_after(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with start_server(tiny_checkpoint, tmp_path, "--max-queue", "1") as server:
        slow: list[httpx.Response] = []
        worker = threading.Thread(target=lambda: slow.append(post(server, "/v1/encode", {"texts": [LONG] * 3})))
        worker.start()
        server.wait_in_flight(1)
        busy = post(server, "/v1/encode", {"texts": ["quick"]})
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1" and "busy" in error_of(busy)
        assert httpx.get(server.url + "/health").status_code == 200
        with pytest.raises(Exception, match="HTTP 429") as info:
            server.client().encode(["quick"])
        assert getattr(info.value, "status", None) == 429
        worker.join(120)
        assert slow[0].status_code == 200 and slow[0].json()["data"]["num_tokens"] == [8192] * 3
        assert post(server, "/v1/encode", {"texts": ["quick"]}).status_code == 200
        assert server.metric("m3rag_rejected_total", reason="queue_full") == 2


def test_server_killed_mid_request_gives_a_typed_error_not_a_hang(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with start_server(tiny_checkpoint, tmp_path) as server:
        client = server.client(retries=2, backoff=0.05)
        outcome: list[BaseException | object] = []

        def call() -> None:
            try:
                outcome.append(client.encode([LONG] * 6, return_colbert_vecs=True))
            except BaseException as exc:  # the assertion below checks its type
                outcome.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        server.wait_in_flight(1)
        killed_at = time.monotonic()
        server.process.send_signal(signal.SIGKILL)
        worker.join(30)
        assert not worker.is_alive(), "the client hung"
        assert time.monotonic() - killed_at < 10
        assert isinstance(outcome[0], ServiceUnavailableError) and "mid-request" in str(outcome[0])
        assert outcome[0].address == server.url
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match=f"m3rag serve at {server.url}"):  # refused: retried, then typed
            client.encode(["after"])

        async def after() -> None:
            await client.aencode(["after"])

        import asyncio

        with pytest.raises(ServiceUnavailableError, match=f"m3rag serve at {server.url}"):
            asyncio.run(after())
        assert time.monotonic() - started < 10


@pytest.mark.filterwarnings("ignore::m3rag.M3TruncationWarning")
def test_sigterm_finishes_requests_in_flight_then_exits_0(tiny_checkpoint: Path, tmp_path: Path, encoder: M3Encoder) -> None:
    with start_server(tiny_checkpoint, tmp_path) as server:
        client = server.client()
        got: list[Any] = []
        worker = threading.Thread(target=lambda: got.append(client.encode([LONG, "short one"] * 2, return_sparse=True)))
        worker.start()
        server.wait_in_flight(1)
        server.process.send_signal(signal.SIGTERM)
        worker.join(120)
        assert server.process.wait(60) == 0
        want = encoder.encode([LONG, "short one"] * 2, return_sparse=True)
        from .helpers import assert_same_output

        assert_same_output(got[0], want, atol=1e-5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/health")


# ---------------------------------------------------------------- the command


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "m3rag.serve", *args], env=environment, capture_output=True, text=True, timeout=120)


def test_command_refuses_an_unset_key_variable_and_a_bad_model(tmp_path: Path) -> None:
    unset = _serve("--api-key-env", "M3RAG_TEST_NOT_SET", "--model", str(tmp_path))
    assert unset.returncode == 2 and "M3RAG_TEST_NOT_SET" in unset.stderr and "not set" in unset.stderr
    missing = _serve("--model", str(tmp_path / "nowhere"), "--device", "cpu")
    assert missing.returncode == 2 and "m3rag serve: error:" in missing.stderr
    assert "--max-queue" in _serve("--help").stdout


def test_command_warns_when_exposed_without_a_key_and_fails_on_a_taken_port(tiny_checkpoint: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        run = _serve("--model", str(tiny_checkpoint), "--host", "0.0.0.0", "--port", port, "--device", "cpu")
    assert "without an API key" in run.stderr
    assert run.returncode == 1 and "address already in use" in run.stderr.lower()
