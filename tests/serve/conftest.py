"""Real ``m3rag serve`` processes on loopback, started on the tiny checkpoint."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from m3rag.serve.client import RemoteM3Encoder

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123"
MAX_REQUEST_TEXTS = 64
MAX_REQUEST_BYTES = 2**20


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    api_key: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs: object) -> RemoteM3Encoder:
        return RemoteM3Encoder(self.url, api_key=self.api_key, **kwargs)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.process.poll() is None and httpx.get(f"{self.url}/health", timeout=5).status_code == 200

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", headers=self.headers, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def wait_in_flight(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.metric("m3rag_requests_in_flight") < count:
            assert time.monotonic() < deadline, f"never {count} requests in flight"
            time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_server(checkpoint: Path, log_dir: Path, *args: str, api_key: str | None = API_KEY, port: int | None = None) -> Iterator[Server]:
    """``m3rag serve`` in a subprocess, ready (``/health`` answers) when yielded; stopped after."""
    port = port or free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "m3rag.cli", "serve", "--model", str(checkpoint), "--port", str(port)]  # the `m3rag serve` command
    command += ["--device", "cpu", "--dtype", "float32", "--log-level", "warning", "--no-access-log", *args]
    if api_key:
        env["M3RAG_TEST_SERVE_KEY"] = api_key
        command += ["--api-key-env", "M3RAG_TEST_SERVE_KEY"]
    log = log_dir / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log, api_key)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"m3rag serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"m3rag serve did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server of the service tests: API key on, 64 texts and 1 MiB per request."""
    with start_server(
        tiny_checkpoint,
        tmp_path_factory.mktemp("serve"),
        "--max-request-texts",
        str(MAX_REQUEST_TEXTS),
        "--max-request-bytes",
        str(MAX_REQUEST_BYTES),
    ) as s:
        yield s


@pytest.fixture
def remote(server: Server) -> RemoteM3Encoder:
    return server.client()


@pytest.fixture
def api_key_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """``$M3RAG_API_KEY`` set, so ``model_name=<url>`` reaches the server with its key; returns the url."""
    monkeypatch.setenv("M3RAG_API_KEY", API_KEY)
    return server.url
