"""The ``m3rag serve`` command: its arguments and how it runs (the ``m3rag`` CLI wires both in).

    m3rag serve [--model M] [--host 127.0.0.1] [--port 8000] [--device D] [--dtype T]
                [--api-key-env VAR] [--max-batch-tokens N] [--max-request-texts N]
                [--max-request-bytes N] [--max-queue N]

Binds 127.0.0.1 unless told otherwise. SIGINT/SIGTERM stop accepting connections, finish the
requests in flight (up to ``--graceful-timeout`` seconds), then exit with status 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
import warnings
from typing import Any

from m3rag.errors import M3RagError

__all__ = ["add_serve_arguments", "run_serve"]

logger = logging.getLogger("m3rag.serve")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the serve options to ``parser`` (a top-level parser or the ``serve`` subparser). Options the
    parser already has (``--model``, ``--device``, ``--dtype`` from a shared parent parser) are kept."""

    def option(*flags: str, **kwargs: Any) -> None:
        if not any(flag in parser._option_string_actions for flag in flags):
            parser.add_argument(*flags, **kwargs)

    option("--model", default=None, help="hub id or local directory (default: $M3RAG_MODEL or BAAI/bge-m3)")
    option("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    option("--port", type=int, default=8000, help="port (default 8000)")
    option("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    option("--dtype", default=None, help="float32, float16, bfloat16 or auto (default: fp16 on GPU, fp32 on CPU)")
    option(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="name of the environment variable holding the API key; then every route but /health needs 'Authorization: Bearer <key>'",
    )
    option(
        "--max-batch-tokens",
        type=_positive,
        default=None,
        metavar="N",
        help="padded tokens per forward pass (default: 2048 on CPU, 16384 on CUDA)",
    )
    option(
        "--max-request-texts",
        type=_positive,
        default=256,
        metavar="N",
        help="texts (or documents, or pairs) per request; more is 413 (default 256)",
    )
    option("--max-request-bytes", type=_positive, default=16 * 2**20, metavar="N", help="request body size; more is 413 (default 16 MiB)")
    option(
        "--max-queue",
        type=_positive,
        default=64,
        metavar="N",
        help="model requests admitted at once; more is 429 with Retry-After (default 64)",
    )
    option(
        "--window-ms", type=float, default=2.0, help="how long the model waits for concurrent requests to share a forward pass (default 2)"
    )
    option(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on shutdown, seconds to let requests in flight finish (default 30)",
    )
    option(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        metavar="IPS",
        help="proxies whose X-Forwarded-* headers are trusted (default 127.0.0.1)",
    )
    option("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    option("--no-access-log", action="store_true", help="do not log every request")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(message: str) -> int:
    print(f"m3rag serve: error: {message}", file=sys.stderr)
    return 2


def run_serve(args: argparse.Namespace) -> int:
    """Load the model, serve it until SIGINT/SIGTERM; 0 after a clean shutdown, 2 on a bad
    argument or model, 1 if the server could not start (e.g. the port is taken)."""
    try:
        import uvicorn

        from m3rag.serve.app import ServeSettings, create_app
    except ImportError as exc:
        return _error(str(exc) if "m3rag[serve]" in str(exc) else f'{exc}: pip install "m3rag[serve]"')
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "").strip()
        if not api_key:
            return _error(f"--api-key-env {args.api_key_env}: that environment variable is not set or empty")
    if not _is_loopback(args.host) and api_key is None:
        print(
            f"m3rag serve: warning: listening on {args.host} without an API key: anyone who reaches this port can use the model "
            "(set --api-key-env, or bind 127.0.0.1 behind a reverse proxy)",
            file=sys.stderr,
        )
    warnings.filterwarnings("ignore", message=r".*were longer than max_length=.*")  # reported per text in the responses
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from m3rag.encoder.m3 import M3Encoder

    try:
        settings = ServeSettings(
            api_key=api_key,
            max_request_texts=args.max_request_texts,
            max_request_bytes=args.max_request_bytes,
            max_queue=args.max_queue,
            window_ms=args.window_ms,
        )
        batch_tokens = args.max_batch_tokens if args.max_batch_tokens is not None else getattr(args, "batch_tokens", None)
        encoder = M3Encoder(args.model, device=args.device, dtype=args.dtype, batch_tokens=batch_tokens)
        app = create_app(encoder, settings)
    except (M3RagError, OSError) as exc:
        return _error(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    logger.info(
        "serving %s (fingerprint %s, dense %d, colbert %s) on %s/%s at http://%s:%d; API key %s",
        encoder.name,
        encoder.fingerprint,
        encoder.dim,
        encoder.colbert_dim,
        encoder.device,
        str(encoder.dtype).replace("torch.", ""),
        args.host,
        args.port,
        "required" if api_key else "off",
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGINT/SIGTERM itself (stop accepting, finish in-flight requests, shut the app
    # down), then raises the signal again for the previous handler: ours turns that into exit 0.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    except _Stopped:
        pass
    except SystemExit:  # uvicorn exits this way when it cannot start (e.g. the port is taken)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


class _Stopped(Exception):
    """SIGINT/SIGTERM after uvicorn's graceful shutdown."""


def _stopped(signum: int, _: object) -> None:
    raise _Stopped(signum)
