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
    """The Ray Data actor processes running class ``name`` (Ray titles them
    ``ray::MapWorker(MapBatches(<name>))``, before Ray 2.5x ``ray::MapBatches(<name>)``) and whether
    each is executing a task: Ray >= 2.5x appends ``.submit`` to the title of a busy worker; for
    older ones a worker that used over 40% of a core in the last 50 ms counts as busy."""
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if title.startswith("ray::") and f"MapBatches({name})" in title:
                titles[int(entry.name)] = title
    if any(t.startswith("ray::MapWorker(") for t in titles.values()):
        return {pid: title.endswith(".submit") for pid, title in titles.items()}
    before = {pid: _cpu_ticks(pid) for pid in titles}
    time.sleep(0.05)
    ticks_per_50ms = os.sysconf("SC_CLK_TCK") / 20
    return {pid: _cpu_ticks(pid) - before[pid] > 0.4 * ticks_per_50ms for pid in titles}


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


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
