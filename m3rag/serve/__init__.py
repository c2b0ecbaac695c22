"""``m3rag serve``: one M3 encoder for many processes, and the remote encoder that talks to it.

- :mod:`m3rag.serve.client`: :class:`RemoteM3Encoder`, an :class:`~m3rag.M3EncoderLike` that
  every component (``M3Index``, ``rerank``, the LangChain and LlamaIndex classes) takes, also as
  ``model_name="http://host:port"``. Needs only httpx.
- :mod:`m3rag.serve.app` and :mod:`m3rag.serve.cli`: the server (``pip install "m3rag[serve]"``:
  FastAPI, uvicorn, prometheus-client), run as ``m3rag serve`` or ``python -m m3rag.serve``.
- :mod:`m3rag.serve.wire`: the JSON wire format both sides share (nothing pickled).

Importing this package imports neither side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from m3rag.serve.client import RemoteM3Encoder

__all__ = ["RemoteM3Encoder"]


def __getattr__(name: str) -> Any:
    if name == "RemoteM3Encoder":
        from m3rag.serve.client import RemoteM3Encoder

        return RemoteM3Encoder
    raise AttributeError(f"module 'm3rag.serve' has no attribute {name!r}")
