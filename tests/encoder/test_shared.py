from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from m3rag import M3Encoder


@pytest.fixture(autouse=True)
def fresh_registry() -> Any:
    M3Encoder.clear_shared()
    yield
    M3Encoder.clear_shared()


def test_same_model_device_dtype_share_one_instance(tiny_checkpoint: Path, load_counter: list[str]) -> None:
    a = M3Encoder.shared(tiny_checkpoint, device="cpu")
    b = M3Encoder.shared(str(tiny_checkpoint) + "/", dtype="float32")
    assert a is b and len(load_counter) == 1
    c = M3Encoder.shared(tiny_checkpoint, device="cpu", dtype="bfloat16")
    assert c is not a and c.dtype == torch.bfloat16 and len(load_counter) == 2


def test_dense_only_request_reuses_a_full_encoder(tiny_checkpoint: Path, load_counter: list[str]) -> None:
    full = M3Encoder.shared(tiny_checkpoint)
    assert M3Encoder.shared(tiny_checkpoint, dense_only=True) is full
    assert len(load_counter) == 1


def test_concurrent_first_use_loads_once(tiny_checkpoint: Path, load_counter: list[str]) -> None:
    barrier = threading.Barrier(8)
    got: list[M3Encoder] = []

    def worker() -> None:
        barrier.wait()
        got.append(M3Encoder.shared(tiny_checkpoint))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(load_counter) == 1 and len({id(e) for e in got}) == 1
