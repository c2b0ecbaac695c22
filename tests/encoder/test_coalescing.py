from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder
from m3rag.testing import SAMPLE_TEXTS
from tests.helpers import run_with_heartbeat

CALLS: list[tuple[list[str], dict[str, Any]]] = [
    (
        list(SAMPLE_TEXTS[i : i + 1 + i % 3]),
        [
            {},
            {"return_sparse": True},
            {"return_dense": False, "return_colbert_vecs": True},
            {"max_length": 12, "return_sparse": True, "return_colbert_vecs": True},
        ][i % 4],
    )
    for i in range(48)
]


@pytest.fixture
def coalescing(tiny_checkpoint: Path) -> Any:
    enc = M3Encoder(tiny_checkpoint, device="cpu")
    enc.enable_coalescing(window_ms=20, max_texts=64)
    yield enc
    enc.disable_coalescing()


def _same(a: Any, b: Any) -> None:
    for key in ("dense", "colbert"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, atol=1e-5)
    if a.sparse is not None:
        assert abs(a.sparse - b.sparse).max() <= 1e-5 if a.sparse.nnz else b.sparse.nnz == 0
    np.testing.assert_array_equal(a.num_tokens, b.num_tokens)
    np.testing.assert_array_equal(a.truncated, b.truncated)


@pytest.mark.filterwarnings("ignore::m3rag.M3TruncationWarning")
def test_concurrent_threads_share_passes_and_get_their_own_results(coalescing: M3Encoder, encoder: M3Encoder) -> None:
    expected = [encoder.encode(texts, **kw) for texts, kw in CALLS]
    barrier = threading.Barrier(16)

    def call(i: int) -> Any:
        if i < 16:
            barrier.wait()
        texts, kw = CALLS[i]
        return coalescing.encode(texts, **kw)

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(call, range(len(CALLS))))
    for g, e in zip(got, expected):
        _same(g, e)
    assert coalescing._coalescer is not None and coalescing._coalescer.calls < len(CALLS)


@pytest.mark.filterwarnings("ignore::m3rag.M3TruncationWarning")
def test_concurrent_coroutines_share_passes(coalescing: M3Encoder, encoder: M3Encoder) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(coalescing.aencode(texts, **kw) for texts, kw in CALLS))

    got = asyncio.run(main())
    for g, (texts, kw) in zip(got, CALLS):
        _same(g, encoder.encode(texts, **kw))
    # 48 requests in 4 option groups share passes (how many depends on thread timing; alone would be 48)
    assert coalescing._coalescer.calls < len(CALLS) // 2


def test_single_string_and_large_calls(coalescing: M3Encoder, encoder: M3Encoder) -> None:
    item = coalescing.encode(SAMPLE_TEXTS[0], return_sparse=True)
    assert item.lexical_weights == pytest.approx(encoder.encode(SAMPLE_TEXTS[0], return_sparse=True).lexical_weights)
    big = list(SAMPLE_TEXTS[:100])  # over max_texts: runs directly
    calls = coalescing._coalescer.calls
    _same(coalescing.encode(big), encoder.encode(big))
    assert coalescing._coalescer.calls == calls


def test_bad_requests_fail_alone(coalescing: M3Encoder) -> None:
    with pytest.raises(InputTypeError):
        coalescing.encode(["ok", 1])  # type: ignore[list-item]
    with pytest.raises(InputValueError):
        coalescing.encode(["ok"], max_length=10**6)
    assert coalescing.encode(["still fine"]).dense.shape[0] == 1


def test_a_failing_pass_reaches_every_caller_in_it(tiny_checkpoint: Path) -> None:
    enc = M3Encoder(tiny_checkpoint, device="cpu")

    def boom(texts: list[str], **kw: Any) -> Any:
        raise RuntimeError("forward failed")

    enc._process = boom  # type: ignore[method-assign]
    enc.enable_coalescing(window_ms=20)
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(enc.encode, ["x"]) for _ in range(4)]
        for f in futures:
            with pytest.raises(RuntimeError, match="forward failed"):
                f.result()
    finally:
        enc.disable_coalescing()


def test_async_encode_leaves_the_event_loop_free(coalescing: M3Encoder) -> None:
    _, ticks = run_with_heartbeat(coalescing.aencode([" ".join(SAMPLE_TEXTS)] * 3, return_colbert_vecs=True))
    assert ticks > 3


def test_disable_and_bad_settings(tiny_checkpoint: Path) -> None:
    enc = M3Encoder(tiny_checkpoint, device="cpu")
    assert not enc.coalescing
    with pytest.raises(InputValueError):
        enc.enable_coalescing(window_ms=-1)
    enc.enable_coalescing()
    assert enc.coalescing
    enc.disable_coalescing()
    assert not enc.coalescing and enc.encode(["x"]).dense.shape == (1, enc.dim)


def test_observer_sees_every_call_with_waits_sizes_and_outputs(tiny_checkpoint: Path) -> None:
    seen: list[tuple[list[float], int, float, Any]] = []
    enc = M3Encoder(tiny_checkpoint, device="cpu")
    enc.enable_coalescing(window_ms=50, max_texts=64, observe=lambda *call: seen.append(call))
    try:
        barrier = threading.Barrier(8)

        def call(i: int) -> Any:
            barrier.wait()
            return enc.encode(list(SAMPLE_TEXTS[i : i + 2]))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(8)))
    finally:
        enc.disable_coalescing()
    assert sum(len(waits) for waits, *_ in seen) == 8  # every request reported once
    assert sum(n for _, n, _, _ in seen) == 16
    assert all(w >= 0 for waits, *_ in seen for w in waits) and all(s > 0 for _, _, s, _ in seen)
    assert all(len(out) == n for _, n, _, out in seen)
    assert len(seen) < 8  # some calls served several requests


def test_a_failing_observer_does_not_fail_the_callers(tiny_checkpoint: Path, encoder: M3Encoder) -> None:
    enc = M3Encoder(tiny_checkpoint, device="cpu")

    def broken(*_: Any) -> None:
        raise RuntimeError("observer bug")

    enc.enable_coalescing(observe=broken)
    try:
        np.testing.assert_allclose(enc.encode(["a b c"]).dense, encoder.encode(["a b c"]).dense, atol=1e-6)
    finally:
        enc.disable_coalescing()
