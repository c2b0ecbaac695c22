"""The machine a benchmark ran on: every figure is printed with it (ratios compare within a run)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


def describe_cpu() -> str:
    """``"Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f amx_bf16 ..."`` (Linux; else the platform)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), platform.machine())
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    present = [f for f in MATRIX_FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(present) or 'no AVX2'}"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
