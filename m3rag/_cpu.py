"""What this CPU's matrix units can do natively, as far as the libraries in use are allowed to use them.

A feature counts only if the CPU has it (``/proc/cpuinfo``, else torch's cpuinfo) *and* no ISA cap
in the environment keeps oneDNN or ATen from using it (``ONEDNN_MAX_CPU_ISA``,
``ATEN_CPU_CAPABILITY``): under ``ONEDNN_MAX_CPU_ISA=AVX2`` an AMX machine multiplies bf16 by
emulation, so for every choice made here it is an AVX2 machine. Results are cached per process
(the caps are read once, at import time by the libraries too).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["bf16_capped", "cpu_flags", "fast_int8_matmul", "isa_capped", "matrix_features", "native_bf16_matmul"]

MATRIX_FLAGS = (
    "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
)  # fmt: skip
"""The flags that decide which matrix kernels run fast (x86 names, as /proc/cpuinfo spells them)."""

# oneDNN's ISA names, lowest first (ONEDNN_MAX_CPU_ISA accepts these, case-insensitive).
_ONEDNN_ORDER = (
    "sse41",
    "avx",
    "avx2",
    "avx2_vnni",
    "avx2_vnni_2",
    "avx512_core",
    "avx512_core_vnni",
    "avx512_core_bf16",
    "avx10_1_512",
    "avx512_core_fp16",
    "avx10_1_512_amx",
    "avx512_core_amx",
    "avx10_1_512_amx_fp16",
    "avx512_core_amx_fp16",
)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where neither /proc/cpuinfo nor torch can tell)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        import torch

        cpu = torch.backends.cpu.get_cpu_capability().lower()  # e.g. "avx512", "avx2", "default"
        return frozenset({"avx2", "fma"} if cpu in ("avx2", "avx512") else set()) | ({"avx512f"} if cpu == "avx512" else set())
    except Exception:  # pragma: no cover - torch missing or too old
        return frozenset()


def _onednn_cap() -> int | None:
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).strip().lower()
    if not cap or cap == "all":
        return None
    return _ONEDNN_ORDER.index(cap) if cap in _ONEDNN_ORDER else None


def isa_capped() -> str | None:
    """The ISA cap set in the environment (e.g. ``"ONEDNN_MAX_CPU_ISA=AVX2"``), or ``None``."""
    names = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
    caps = [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]
    return ", ".join(caps) or None


def _allows(isa: str) -> bool:
    cap = _onednn_cap()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in ("default", "avx2") and isa.startswith(("avx512", "avx10")):
        return False
    return cap is None or cap >= _ONEDNN_ORDER.index(isa)


def bf16_capped() -> bool:
    """True if an ISA cap in the environment keeps oneDNN from native bf16 (AMX and AVX512-BF16)."""
    return not (_allows("avx512_core_amx") or _allows("avx512_core_bf16"))


@functools.cache
def native_bf16_matmul() -> bool:
    """True if bf16 matrix products run on native units (AMX-BF16 or AVX512-BF16), not emulated."""
    flags = cpu_flags()
    amx = "amx_bf16" in flags and _allows("avx512_core_amx")
    avx512 = "avx512_bf16" in flags and _allows("avx512_core_bf16")
    return amx or avx512


@functools.cache
def fast_int8_matmul() -> bool:
    """True if torch's ``_int_mm`` runs on this CPU through oneDNN's int8 kernels: AMX-INT8 or VNNI
    dot products, or AVX2's ``vpmaddubsw`` (slower, but still ahead of dequantizing to float32:
    measured 1.8x vs 1.0x under an AVX2 cap)."""
    flags = cpu_flags()
    if not ({"avx2", "avx512_vnni", "avx_vnni", "amx_int8"} & flags):
        return False
    try:
        import torch

        a = torch.ones(2, 8, dtype=torch.int8)
        return bool((torch._int_mm(a, a.T.contiguous()) == 8).all())
    except Exception:  # torch without CPU _int_mm
        return False


def matrix_features() -> str:
    """``"avx2 fma ... amx_int8"`` plus any ISA cap in force, for benchmark reports."""
    present = [f for f in MATRIX_FLAGS if f in cpu_flags()]
    text = " ".join(present) or "no AVX2"
    cap = isa_capped()
    return f"{text} (capped: {cap})" if cap else text
