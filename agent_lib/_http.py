"""One TLS context for every HTTP client the kit makes, built once.

httpx builds a new SSL context for each client it creates, loading the CA bundle from disk: 20 to 100 ms each,
though the kit talks plain HTTP to loopback almost always. `python -m agent_lib up` polls the server's health
with a new client every 200 ms, and spent 3.4 of its 10 s there on a loaded machine (issue 23).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

__all__ = ["async_client", "client", "tls"]


@functools.cache
def tls() -> ssl.SSLContext:
    """Return the kit's one TLS context (httpx's defaults: certifi's CA bundle)."""
    return httpx.create_ssl_context()


def client(**options: Any) -> httpx.Client:
    """Return an httpx.Client that shares the kit's TLS context."""
    return httpx.Client(verify=tls(), **options)


def async_client(**options: Any) -> httpx.AsyncClient:
    """Return an httpx.AsyncClient that shares the kit's TLS context."""
    return httpx.AsyncClient(verify=tls(), **options)
