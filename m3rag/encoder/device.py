"""Device and dtype policy for the encoder.

Device: CUDA > MPS > CPU.

Dtype: ``None`` (the default) is float16 on CUDA and MPS and float32 on CPU (exact, FlagEmbedding
parity). ``"auto"`` is the fast policy: float16 on CUDA and MPS, bfloat16 on CPUs with native bf16
matrix units (AMX or AVX512-BF16, where bf16 runs ~4x fp32 and keeps dense cosine to fp32 >= 0.999;
see the README's fidelity table), float32 elsewhere. float16 is preferred to bfloat16 on GPUs: it
has 3 more mantissa bits, and XLM-R activations stay within its range.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

import torch

from m3rag.errors import InputTypeError, InputValueError

__all__ = ["DTypeLike", "DeviceLike", "cpu_has_fast_bf16", "resolve_device", "resolve_dtype"]

DeviceLike: TypeAlias = "str | torch.device | None"
DTypeLike: TypeAlias = "str | torch.dtype | None"

logger = logging.getLogger(__name__)

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def resolve_device(device: DeviceLike = None) -> torch.device:
    """Return the device to run on: the one given, else CUDA, MPS or CPU (first available)."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise InputTypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InputValueError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputValueError(f"device {device!r} was asked for, but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputValueError(f"device {device!r} was asked for, but MPS is not available")
    return resolved


def cpu_has_fast_bf16() -> bool:
    """True if this CPU multiplies bf16 matrices natively (AMX tiles or AVX512-BF16), and no ISA
    cap in the environment (``ONEDNN_MAX_CPU_ISA``, ``ATEN_CPU_CAPABILITY``) makes oneDNN emulate them."""
    from m3rag._cpu import bf16_capped

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks) and not bf16_capped()


def resolve_dtype(dtype: DTypeLike, device: torch.device) -> torch.dtype:
    """Return the compute dtype: the one given, else the policy in this module's docstring."""
    if dtype is None:
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if dtype == "auto":
        if device.type in ("cuda", "mps"):
            return torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        logger.info("dtype='auto': no native bf16 matrix units on this %s, using float32", device.type)
        return torch.float32
    if isinstance(dtype, str):
        try:
            dtype = _DTYPE_NAMES[dtype.lower()]
        except KeyError:
            names = ", ".join(sorted(_DTYPE_NAMES))
            raise InputValueError(f"unknown dtype {dtype!r}; use one of: {names}") from None
    if not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
    if dtype not in _SUPPORTED:
        raise InputValueError(f"dtype {dtype} is not supported; use float32, float16 or bfloat16")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputValueError(f"bfloat16 is not supported on {device}; use float16")
    return dtype
