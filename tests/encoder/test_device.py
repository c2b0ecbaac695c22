from __future__ import annotations

import pytest
import torch

from m3rag import InputTypeError, InputValueError
from m3rag.encoder.device import resolve_device, resolve_dtype


def test_cpu_when_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32


def test_cuda_first_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)


def test_gpu_defaults_to_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dtype(None, torch.device("cuda", 0)) == torch.float16
    assert resolve_dtype("auto", torch.device("mps")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("bf16", torch.device("cuda", 0)) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(InputValueError, match="bfloat16 is not supported"):
        resolve_dtype("bfloat16", torch.device("cuda", 0))


@pytest.mark.parametrize(("name", "dtype"), [("fp32", torch.float32), ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16)])
def test_dtype_names(name: object, dtype: torch.dtype) -> None:
    assert resolve_dtype(name, torch.device("cpu")) == dtype  # type: ignore[arg-type]


def test_bad_device_and_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(InputValueError, match="unknown device"):
        resolve_device("gpu")
    with pytest.raises(InputValueError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
    with pytest.raises(InputValueError, match="not supported"):
        resolve_dtype(torch.int8, torch.device("cpu"))
    with pytest.raises(InputTypeError):
        resolve_dtype(3, torch.device("cpu"))  # type: ignore[arg-type]


def test_auto_dtype_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from m3rag.encoder import device as device_module

    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32  # the default stays exact
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.float16


def test_fast_bf16_detection_matches_the_cpu_flags() -> None:
    from pathlib import Path

    from m3rag.encoder.device import cpu_has_fast_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this platform")  # the policy itself is tested above
    flags = set(cpuinfo.read_text().split())
    assert cpu_has_fast_bf16() == bool(flags & {"amx_tile", "avx512_bf16"})
