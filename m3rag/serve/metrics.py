"""Prometheus metrics of one server: requests, texts, tokens, shared-call sizes, queue wait, latency."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """The metrics of one app, in a registry of its own (several apps in one process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("m3rag_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "m3rag_request_seconds", "Time from request to response, by endpoint", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.texts = Counter("m3rag_texts", "Texts received for encoding, by endpoint", ["endpoint"], registry=r)
        self.tokens = Counter("m3rag_tokens", "Tokens encoded (after truncation, specials included)", registry=r)
        self.batch_texts = Histogram(
            "m3rag_batch_texts", "Texts per shared model call (coalesced requests)", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "m3rag_batch_requests", "Requests served by one shared model call", buckets=_SIZE_BUCKETS, registry=r
        )
        self.queue_wait = Histogram("m3rag_queue_wait_seconds", "Time a request waited for the model", buckets=_LATENCY_BUCKETS, registry=r)
        self.model_seconds = Histogram("m3rag_model_seconds", "Duration of one shared model call", buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("m3rag_requests_in_flight", "Model requests admitted (waiting or running)", registry=r)
        self.rejected = Counter("m3rag_rejected", "Requests refused before the model, by reason", ["reason"], registry=r)

    def observe_call(self, waits: list[float], n_texts: int, seconds: float, out: Any) -> None:
        """The coalescer's observer: one shared model call."""
        self.batch_texts.observe(n_texts)
        self.batch_requests.observe(len(waits))
        for wait in waits:
            self.queue_wait.observe(wait)
        self.model_seconds.observe(seconds)
        num_tokens = getattr(out, "num_tokens", None)
        if num_tokens is not None:
            self.tokens.inc(int(num_tokens.sum()))
