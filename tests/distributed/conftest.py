"""One local Ray for the distributed tests (2 CPUs, no dashboard), started on first use and shut
down at the end of the session; its workers import this checkout's m3rag."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


def actor_processes(name: str) -> dict[int, bool]:
    """The Ray Data actor processes running ``name`` (a class name in their process title), and
    whether each is executing a task right now (Ray titles a busy worker ``....submit``)."""
    found: dict[int, bool] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if title.startswith("ray::MapWorker(") and f"({name})" in title:
            found[int(entry.name)] = title.endswith(".submit")
    return found


def kill_busy_actor(name: str, timeout: float = 60.0) -> int:
    """SIGKILL one actor process of ``name`` while it executes a task; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [pid for pid, running in actor_processes(name).items() if running]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            return busy[0]
        time.sleep(0.005)
    raise AssertionError(f"no {name} actor was seen executing a task within {timeout} s")
