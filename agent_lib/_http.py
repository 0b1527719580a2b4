"""The kit's HTTP plumbing under `Ingress` and `Admin`: one TLS context, errors, asking again, one pool per client.

One TLS context for every HTTP client the kit makes, built once.

httpx builds a new SSL context for each client it creates, loading the CA bundle from disk: 20 to 100 ms each,
though the kit talks plain HTTP to loopback almost always. `python -m agent_lib up` polls the server's health
with a new client every 200 ms, and spent 3.4 of its 10 s there on a loaded machine (issue 23).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import weakref
from dataclasses import dataclass
from typing import Any, Self

import httpx

__all__ = ["RestateError", "SendResult", "async_client", "client", "tls", "transient"]


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


class RestateError(RuntimeError):
    """Restate answered with an error status; `message` is Restate's own explanation."""

    def __init__(self, status: int, message: str, *, method: str, url: str, code: str | None = None) -> None:
        super().__init__(f"{status} from {method} {url}: {message}")
        self.status = status
        self.message = message
        self.code = code
        self.url = url


@dataclass(frozen=True)
class SendResult:
    """What the ingress answers to a one-way send."""

    invocation_id: str
    status: str


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    message, code = response.text, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message", message))
        code = body.get("restate_code") or body.get("code")
    raise RestateError(
        response.status_code,
        message.strip() or response.reason_phrase,
        method=response.request.method,
        url=str(response.request.url),
        code=str(code) if code is not None else None,
    )


def _decode(response: httpx.Response) -> Any:
    _raise_for(response)
    if not response.content:
        return None
    if "json" in response.headers.get("content-type", ""):
        return response.json()
    return response.text


_MISTAKES = ("valid invocation id", "Error during planning", "Schema error", "SQL error")
"""Parts of a 5xx's message that mean the request itself is wrong: asking again cannot help."""

_RESET = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""The connection broke after the request was sent (a node going down or coming back)."""


def transient(err: RestateError) -> bool:
    """Return True if Restate's answer means "not now": a 5xx that names no mistake in the request.

    A malformed invocation id, SQL that does not plan, or an error with a Restate code (e.g. META0003: the
    deployment did not answer discovery) is about the request, so asking again cannot help.
    """
    return err.status >= 500 and err.code is None and not any(m in err.message for m in _MISTAKES)


def _connect_error(base: str, err: httpx.ConnectError, what: str) -> ConnectionError:
    return ConnectionError(
        f"cannot reach the Restate {what} at {base} ({err}): is the server running? "
        "Start it with `make server` (or `python -m agent_lib up`)"
    )


class _Attempts:
    """One request's attempts: whether to ask again after an error, and how long to wait first."""

    def __init__(self, owner: _Http, method: str, path: str, retry: bool) -> None:
        self.owner = owner
        self.method = method
        self.path = path
        self.started = time.monotonic()
        self.deadline = self.started + (owner.retry_for if retry else 0.0)
        self.delay = 0.2
        self.tries = 0
        self.safe = method in ("GET", "HEAD") or path == "/query"
        """Read-only: asking again is harmless even if the first request reached the server."""

    def wait_before_next(self, err: Exception) -> float:
        """Return the seconds to wait before the next attempt, or raise the error that ends them."""
        self.tries += 1
        if isinstance(err, RestateError):
            if not transient(err):
                raise err
        elif isinstance(err, httpx.ConnectError):
            if not self.owner._answered:
                raise _connect_error(self.owner.url, err, self.owner.what) from None
        elif not (isinstance(err, _RESET) and self.safe):
            raise err
        now = time.monotonic()
        if now + self.delay > self.deadline:
            raise self._given_up(err, now - self.started) from None
        delay, self.delay = self.delay, min(self.delay * 2, 2.0)
        return delay

    def _given_up(self, err: Exception, elapsed: float) -> Exception:
        if self.tries == 1:
            if isinstance(err, httpx.ConnectError):
                return _connect_error(self.owner.url, err, self.owner.what)
            return err
        tried = f"asked {self.tries} times over {elapsed:.1f}s and gave up"
        if isinstance(err, RestateError):
            return RestateError(
                err.status,
                f"{err.message} ({tried}: the server was not ready to answer; if it is a cluster whose node just "
                "came back, wait until every node is healthy and ask again, or pass a longer retry_for)",
                method=self.method,
                url=err.url,
                code=err.code,
            )
        return ConnectionError(
            f"the Restate {self.owner.what} at {self.owner.url} stopped answering ({tried}; the last error: "
            f"{type(err).__name__}: {err}): is the server (or this cluster node) running? "
            "Start it again, or ask another node"
        )


class _Http:
    """One server's HTTP API: one connection pool for blocking calls, one for async calls; `with` closes them."""

    what = "server"

    def __init__(self, url: str, timeout: float, retry_for: float = 0.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry_for = retry_for
        self._answered = False
        self._http = client(base_url=self.url, timeout=timeout)
        self._ahttp: httpx.AsyncClient | None = None
        self._ahttp_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._ausers: weakref.WeakKeyDictionary[httpx.AsyncClient, int] = weakref.WeakKeyDictionary()
        """Requests in flight on each async pool: a pool retired after an error answer is closed by the last of them
        (closing it at once broke the others: lesson 06's second waiting caller got a ReadError, not its 409)."""

    def _async_http(self) -> httpx.AsyncClient:
        """Return this client's async connection pool, made on first use in the running event loop.

        An httpx.AsyncClient belongs to the event loop it first ran in, so another loop (a test's `asyncio.run`)
        gets a pool of its own.
        """
        loop = asyncio.get_running_loop()
        if self._ahttp is None or self._ahttp_loop is None or self._ahttp_loop() is not loop:
            self._ahttp = async_client(base_url=self.url, timeout=self.timeout)
            self._ahttp_loop = weakref.ref(loop)
        return self._ahttp

    fresh_after_error = False
    """Open new connections after an error answer (the ingress may close its side of the old one just after)."""

    def _request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        attempts = _Attempts(self, method, path, retry)
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
                self._answered = True
                if response.is_error and self.fresh_after_error:
                    self._fresh_connections()
                return _decode(response)
            except (RestateError, httpx.TransportError) as err:
                time.sleep(attempts.wait_before_next(err))

    async def _arequest(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        attempts = _Attempts(self, method, path, retry)
        while True:
            try:
                http = self._async_http()
                self._ausers[http] = self._ausers.get(http, 0) + 1
                try:
                    response = await http.request(method, path, **kwargs)
                finally:
                    self._ausers[http] -= 1
                self._answered = True
                if response.is_error and self.fresh_after_error and self._ahttp is http:
                    self._ahttp = None
                if self._ahttp is not http and not self._ausers.get(http):
                    self._ausers.pop(http, None)
                    await http.aclose()
                return _decode(response)
            except (RestateError, httpx.TransportError) as err:
                await asyncio.sleep(attempts.wait_before_next(err))

    def _fresh_connections(self) -> None:
        """Use a new connection pool from the next request on, and close the old one.

        Seen once under load (always-replay, four test workers on two cores): a call sent right after a 400
        ("the invoked service is not public") on the same keep-alive connection got no answer at all ("Server
        disconnected without sending a response"): the ingress had closed its side without saying so. Asking again
        is not safe for a call that is not idempotent, so the next request after an error answer does not reuse
        the connection. Errors are rare, so this costs nothing on the paths that matter.
        """
        old, self._http = self._http, client(base_url=self.url, timeout=self.timeout)
        old.close()

    def close(self) -> None:
        """Close the connection pools (the async one is let go: `aclose()` closes it from inside its event loop)."""
        self._http.close()
        self._ahttp = None

    async def aclose(self) -> None:
        """Close the connection pools, from inside the event loop."""
        self._http.close()
        ahttp, self._ahttp = self._ahttp, None
        if ahttp is not None:
            await ahttp.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
