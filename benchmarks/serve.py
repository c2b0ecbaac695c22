"""One ``m3rag serve`` for N worker processes vs an encoder loaded in each worker process.

    python benchmarks/serve.py [--checkpoint DIR] [--preset wide|tiny] [--requests 64] [--clients 1 8 32]
    python benchmarks/serve.py --quick        # tiny checkpoint, 1 and 2 clients, a few calls: a smoke run

Each client is a separate process (as uvicorn/gunicorn workers or task-queue workers are) that
embeds one short query at a time (dense + sparse, what hybrid search needs) until it has made
``--requests`` calls. Two setups run in the same invocation on the same checkpoint:

- ``served``: one ``m3rag serve`` process holds the model; the clients use ``RemoteM3Encoder``
  (their concurrent requests share forward passes on the server);
- ``local``: every client process loads its own ``M3Encoder``.

Printed: the CPU (model, cores, SIMD flags), then per client count the throughput (queries/s over
all clients), p50 and p99 latency of a call, and the resident memory (VmRSS) of all processes
involved: the clients, plus the server in the served setup. A local run whose memory would not
fit (measured per-process RSS x clients > 60% of MemAvailable) is skipped and says so. Absolute
figures on a shared machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_cpu

ROOT = Path(__file__).resolve().parent.parent
QUERY_MAX_LENGTH = 64


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process in MiB (VmRSS), NaN where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def mem_available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def client(mode: str, target: str, queries: list[str], requests: int, offset: int, barrier: Any, results: Any) -> None:
    """One worker process: load (or connect to) the encoder, wait for the others, then time each call."""
    if mode == "local":
        from m3rag import M3Encoder

        encoder: Any = M3Encoder(target, device="cpu", dtype="float32")
    else:
        from m3rag.serve.client import RemoteM3Encoder

        encoder = RemoteM3Encoder(target, timeout=600)
    encoder.encode_queries(queries[0], max_length=QUERY_MAX_LENGTH, return_sparse=True)  # warm-up
    barrier.wait()
    latencies = []
    for i in range(requests):
        start = time.monotonic()
        encoder.encode_queries(queries[(offset + i) % len(queries)], max_length=QUERY_MAX_LENGTH, return_sparse=True)
        latencies.append(time.monotonic() - start)
    results.put((latencies, time.monotonic(), rss_mb()))
    barrier.wait()  # stay alive (memory resident) until every client is measured


@dataclass
class Run:
    qps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float


def run_clients(mode: str, target: str, queries: list[str], clients: int, requests: int, extra_rss: float = 0.0) -> Run:
    ctx = mp.get_context("spawn")  # a forked torch process is not safe; spawn is what worker pools do
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=client, args=(mode, target, queries, requests, 7 * i, barrier, results)) for i in range(clients)]
    for p in procs:
        p.start()
    barrier.wait(timeout=900)  # every client loaded and warmed up
    start = time.monotonic()
    collected = [results.get(timeout=1800) for _ in procs]
    barrier.wait(timeout=60)
    for p in procs:
        p.join(60)
    latencies = sorted(x for lat, _, _ in collected for x in lat)
    wall = max(end for _, end, _ in collected) - start
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return Run(len(latencies) / wall, statistics.median(latencies) * 1e3, p99 * 1e3, sum(r for _, _, r in collected) + extra_rss)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(checkpoint: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "m3rag.serve",
        "--model",
        str(checkpoint),
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    command += ["--log-level", "warning", "--no-access-log", "--max-queue", "1024"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"m3rag serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"m3rag serve did not start:\n{log.read_text()}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a bge-m3 layout directory (default: build one of --preset)")
    parser.add_argument("--preset", choices=("wide", "tiny"), default="wide")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=64, help="calls per client")
    parser.add_argument("--quick", action="store_true", help="tiny checkpoint, 1 and 2 clients, 5 calls each (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.clients, args.requests = "tiny", [1, 2], 5

    from m3rag.testing import SAMPLE_TEXTS, build_checkpoint

    work = Path(tempfile.mkdtemp(prefix="m3rag-serve-bench-"))
    checkpoint = args.checkpoint or build_checkpoint(work / f"{args.preset}-m3", preset=args.preset)
    queries = [t[:80] for t in SAMPLE_TEXTS]
    print(f"CPU: {describe_cpu()}")
    origin = f"built, preset {args.preset}" if args.checkpoint is None else "given"
    print(f"checkpoint: {checkpoint} ({origin}), float32")
    print(f"each call: one query <= {QUERY_MAX_LENGTH} tokens, dense + sparse; {args.requests} calls per client process")

    server, url = start_server(checkpoint, work / "serve.log")
    rows: list[tuple[int, str, Run | None, str]] = []
    try:
        server_rss_idle = rss_mb(server.pid)
        local_rss_one: float | None = None
        for clients in args.clients:
            served = run_clients("remote", url, queries, clients, args.requests)
            server_rss = rss_mb(server.pid)
            rows.append(
                (
                    clients,
                    "served",
                    Run(served.qps, served.p50_ms, served.p99_ms, served.rss_mb + server_rss),
                    f"server {server_rss:,.0f} MiB",
                )
            )
            need = (local_rss_one or 0.0) * clients
            if local_rss_one is not None and need > 0.6 * mem_available_mb():
                rows.append((clients, "local", None, f"skipped: needs ~{need / 1024:.1f} GiB"))
                continue
            local = run_clients("local", str(checkpoint), queries, clients, args.requests)
            local_rss_one = local.rss_mb / clients
            rows.append((clients, "local", local, ""))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    print(f"\nserver idle RSS (model loaded): {server_rss_idle:,.0f} MiB\n")
    print("| clients | setup | queries/s | p50 ms | p99 ms | RSS of all processes (MiB) | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    by_clients: dict[int, dict[str, Run]] = {}
    for clients, setup, run, note in rows:
        label = "m3rag serve + remote clients" if setup == "served" else "encoder in each process"
        if run is None:
            print(f"| {clients} | {label} | | | | | {note} |")
            continue
        by_clients.setdefault(clients, {})[setup] = run
        print(f"| {clients} | {label} | {run.qps:,.1f} | {run.p50_ms:,.1f} | {run.p99_ms:,.1f} | {run.rss_mb:,.0f} | {note} |")
    print()
    for clients, runs in by_clients.items():
        if {"served", "local"} <= set(runs):
            s, lo = runs["served"], runs["local"]
            ratios = f"throughput {s.qps / lo.qps:.2f}x, p99 {s.p99_ms / lo.p99_ms:.2f}x, memory {s.rss_mb / lo.rss_mb:.2f}x"
            print(f"{clients} clients, served / local: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
