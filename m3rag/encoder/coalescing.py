"""Request coalescing: concurrent small encode calls share forward passes.

Many threads or coroutines each asking for a few texts (queries, mostly) would each run a tiny,
inefficient forward pass. A :class:`Coalescer` runs one worker thread that takes the first waiting
request, gathers whatever else arrives within ``window_ms`` (up to ``max_texts`` texts), encodes
requests with the same options in one call, and hands every caller its own slice of the result.
The window is only waited while requests are arriving together (the previous call served more
than one); a lone caller is served at once, so it pays no waiting time.
Each caller gets the outputs it would get alone (up to float rounding of a different batch shape,
~1e-6), and its own errors. An ``observe`` callback sees every call (how long its requests waited,
how many texts it served, how long it took): ``m3rag serve`` turns that into its metrics.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Coalescer", "ObserveFn"]

logger = logging.getLogger(__name__)

EncodeFn = Callable[..., Any]
"""``encode(items, **options) -> out``; ``out.slice(a, b)`` (or ``out[a:b]``) is the part of items ``a:b``."""
ObserveFn = Callable[[list[float], int, float, Any], None]
"""``observe(waits, n_items, seconds, out)`` after each call: the queue wait of each request it
served (seconds), its item count, its duration, and its output (``None`` if it failed)."""


@dataclass
class _Request:
    texts: list[Any]
    options: tuple[tuple[str, Any], ...]  # requests with equal options can share a call
    future: Future[Any] = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)


class Coalescer:
    """Gathers requests for ``encode(texts, **options)`` into shared calls on one worker thread."""

    def __init__(self, encode: EncodeFn, *, window_ms: float = 2.0, max_texts: int = 256, observe: ObserveFn | None = None) -> None:
        self._encode = encode
        self._observe = observe
        self.window = window_ms / 1000.0
        self.max_texts = max_texts
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, name="m3rag-coalescer", daemon=True)
        self._closed = False
        self._company = False  # did the previous call serve several requests?
        self.calls = 0
        """How many encode calls the worker made (each may serve many requests)."""
        self._worker.start()

    def submit(self, texts: list[Any], **options: Any) -> Future[Any]:
        """Queue ``texts``; the future resolves to their part of the output."""
        if self._closed:
            raise RuntimeError("the coalescer is closed")
        request = _Request(texts, tuple(sorted(options.items())))
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join()

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, total = [first], len(first.texts)
        deadline = time.monotonic() + (self.window if self._company else 0.0)
        while total < self.max_texts:
            remaining = deadline - time.monotonic()
            try:
                request = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
            total += len(request.texts)
        return batch, False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._company = len(batch) > 1
            groups: dict[tuple[tuple[str, Any], ...], list[_Request]] = {}
            for request in batch:
                if request.future.set_running_or_notify_cancel():
                    groups.setdefault(request.options, []).append(request)
            for options, requests in groups.items():
                self._serve(requests, dict(options))
            if stop:
                return

    def _serve(self, requests: list[_Request], options: dict[str, Any]) -> None:
        texts = [t for r in requests for t in r.texts]
        began = time.monotonic()
        waits = [began - r.submitted for r in requests]
        try:
            self.calls += 1
            out = self._encode(texts, **options)
        except BaseException as exc:  # every caller of this call gets the error
            for r in requests:
                r.future.set_exception(exc)
            self._report(waits, len(texts), time.monotonic() - began, None)
            return
        seconds = time.monotonic() - began
        start = 0
        for r in requests:
            part = out.slice(start, start + len(r.texts)) if hasattr(out, "slice") else out[start : start + len(r.texts)]
            r.future.set_result(part)
            start += len(r.texts)
        self._report(waits, len(texts), seconds, out)

    def _report(self, waits: list[float], n_items: int, seconds: float, out: Any) -> None:
        if self._observe is not None:
            try:
                self._observe(waits, n_items, seconds, out)
            except Exception:  # an observer's bug must not fail the callers
                logger.exception("coalescer observer failed")
