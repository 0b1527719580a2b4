"""HTTP clients for Restate: the ingress (call agents) and the admin API (inspect and control).

Lesson 01 introduces them. Every non-2xx answer raises `RestateError`, carrying
Restate's own message. Calls to an agent served inside this notebook's kernel must not
block the kernel's event loop, so those have async twins: `await ingress.acall(...)`.

The admin API asks again, for up to `retry_for` seconds, when the server answers that it
cannot answer *yet*: a cluster's partitions moving after a node came back ("expecting a
partition store"), a "not ready", a connection refused or reset while a node returns. A
mistake (a malformed invocation id, SQL that names no such table) fails at once.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from . import _http
from ._sql import sql_literal
from .server import DEFAULT_ADMIN_PORT, DEFAULT_INGRESS_PORT

__all__ = [
    "Admin",
    "Ingress",
    "RestateError",
    "SendResult",
    "admin_url",
    "forwarded_url",
    "ingress_url",
    "transient",
    "ui_url",
]


def ingress_url() -> str:
    """Return the ingress URL: `RESTATE_INGRESS_URL`, else localhost:8080."""
    return os.environ.get("RESTATE_INGRESS_URL", f"http://127.0.0.1:{DEFAULT_INGRESS_PORT}").rstrip("/")


def admin_url() -> str:
    """Return the admin API URL: `RESTATE_ADMIN_URL`, else localhost:9070."""
    return os.environ.get("RESTATE_ADMIN_URL", f"http://127.0.0.1:{DEFAULT_ADMIN_PORT}").rstrip("/")


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "::1")


def forwarded_url(url: str) -> str:
    """Return the address a browser should open for a local URL: in a GitHub codespace, the forwarded one.

    Codespaces sets CODESPACE_NAME and GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN, and forwards local port P
    to https://<name>-P.<domain>/. Anywhere else, or for a host that is not local, the URL stays as it is.
    """
    name = os.environ.get("CODESPACE_NAME")
    domain = os.environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN")
    parts = urlsplit(url)
    if not (name and domain) or parts.hostname not in _LOCAL_HOSTS:
        return url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return urlunsplit(("https", f"{name}-{port}.{domain}", parts.path or "/", parts.query, parts.fragment))


def ui_url(admin: str | None = None, path: str = "") -> str:
    """Return the link to the Restate UI (or to `path` in it) served by this admin API, as a browser reaches it.

    Every UI link the kit prints goes through here: lesson 00, `make lab`, `python -m agent_lib up`,
    the doctor, the invocation links of observe and the widgets. In a codespace it is the forwarded address.
    """
    base = (admin or admin_url()).rstrip("/")
    return forwarded_url(base + ("/" + path.lstrip("/") if path else ""))


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


def _target(service: str, handler: str, key: str | None) -> str:
    if not service or not handler:
        raise ValueError("name both the service and the handler, e.g. call('WeatherAgent', 'run', ..., key='s1')")
    parts = [service] + ([key] if key is not None else []) + [handler]
    return "/" + "/".join(quote(p, safe="") for p in parts)


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
        self._http = _http.client(base_url=self.url, timeout=timeout)
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
            self._ahttp = _http.async_client(base_url=self.url, timeout=self.timeout)
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
        old, self._http = self._http, _http.client(base_url=self.url, timeout=self.timeout)
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


class Ingress(_Http):
    """The ingress: call and send to services, attach to invocations, resolve awakeables."""

    what = "ingress"
    fresh_after_error = True

    def __init__(self, url: str | None = None, *, timeout: float = 120.0) -> None:
        super().__init__(url or ingress_url(), timeout, retry_for=0.0)

    @staticmethod
    def _call_args(body: Any, idempotency_key: str | None, raw: bool) -> dict[str, Any]:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        if raw:
            return {"content": body, "headers": {"content-type": "application/json", **headers}}
        return {"json": body, "headers": headers}

    def call(
        self,
        service: str,
        handler: str,
        body: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        raw: bool = False,
    ) -> Any:
        """Call a handler and wait for its result (raw=True sends `body` bytes as they are)."""
        return self._request("POST", _target(service, handler, key), **self._call_args(body, idempotency_key, raw))

    async def acall(
        self,
        service: str,
        handler: str,
        body: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        raw: bool = False,
    ) -> Any:
        """Call a handler without blocking the event loop (for agents served in this kernel)."""
        args = self._call_args(body, idempotency_key, raw)
        return await self._arequest("POST", _target(service, handler, key), **args)

    def send(
        self,
        service: str,
        handler: str,
        body: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        delay: str | None = None,
    ) -> SendResult:
        """Start a handler without waiting for it; return its invocation id."""
        path = _target(service, handler, key) + "/send" + (f"?delay={quote(delay)}" if delay else "")
        answer = self._request("POST", path, **self._call_args(body, idempotency_key, False))
        return SendResult(answer["invocationId"], answer.get("status", ""))

    def attach(self, invocation_id: str, *, timeout: float | None = None) -> Any:
        """Wait for an invocation to finish and return its result (at most `timeout` s, else this client's)."""
        limit: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        return self._request("GET", f"/restate/invocation/{quote(invocation_id, safe='')}/attach", **limit)

    async def aattach(self, invocation_id: str) -> Any:
        """Wait for an invocation without blocking the event loop."""
        return await self._arequest("GET", f"/restate/invocation/{quote(invocation_id, safe='')}/attach")

    def output(self, invocation_id: str) -> Any:
        """Return a finished invocation's result (raises RestateError if it is not finished)."""
        return self._request("GET", f"/restate/invocation/{quote(invocation_id, safe='')}/output")

    def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None:
        """Resolve an awakeable with a JSON value; the waiting handler resumes with it."""
        self._request("POST", f"/restate/awakeables/{quote(awakeable_id, safe='')}/resolve", json=value)

    def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        """Reject an awakeable; the waiting handler gets a TerminalError with `reason`."""
        self._request(
            "POST",
            f"/restate/awakeables/{quote(awakeable_id, safe='')}/reject",
            content=reason.encode(),
            headers={"content-type": "text/plain"},
        )


class Admin(_Http):
    """The admin API: deployments, services, SQL over the server's tables, invocation control.

    A "not now" from the server (see `transient`) is asked again for up to `retry_for` seconds; a
    refused or reset connection too, once this client has had an answer (a node coming back), so a
    server that was never there still fails at once.
    """

    what = "admin API"

    def __init__(self, url: str | None = None, *, timeout: float = 30.0, retry_for: float = 30.0) -> None:
        super().__init__(url or admin_url(), timeout, retry_for=retry_for)

    def health(self) -> bool:
        """Return True if the admin API answers (asked once: this is a probe)."""
        try:
            self._request("GET", "/health", retry=False)
        except (RestateError, ConnectionError):
            return False
        return True

    @staticmethod
    def _deployment_body(uri: str, force: bool) -> dict[str, Any]:
        return {"uri": uri, "force": force}

    def register(self, uri: str, *, force: bool = True) -> dict[str, Any]:
        """Register (or with force, re-register) the deployment at `uri`; return the answer."""
        return dict(self._request("POST", "/deployments", json=self._deployment_body(uri, force)))

    async def aregister(self, uri: str, *, force: bool = True) -> dict[str, Any]:
        """Register a deployment served by this kernel, without blocking its event loop."""
        return dict(await self._arequest("POST", "/deployments", json=self._deployment_body(uri, force)))

    def deployments(self) -> list[dict[str, Any]]:
        """List the registered deployments."""
        return list(self._request("GET", "/deployments")["deployments"])

    def remove_deployment(self, deployment_id: str, *, force: bool = False) -> None:
        """Remove a deployment (force=True even if invocations still run on it)."""
        self._request("DELETE", f"/deployments/{quote(deployment_id, safe='')}", params={"force": str(force).lower()})

    def services(self) -> list[str]:
        """List the names of the registered services."""
        return [s["name"] for s in self._request("GET", "/services")["services"]]

    def service(self, name: str) -> dict[str, Any]:
        """Return one registered service: its type, handlers, the deployment that serves it now (`deployment_id`)."""
        return dict(self._request("GET", f"/services/{quote(name, safe='')}"))

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        """Return one deployment: its uri, when it was registered (`created_at`), the services it serves."""
        return dict(self._request("GET", f"/deployments/{quote(deployment_id, safe='')}"))

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Run SQL over the server's tables (sys_invocation, sys_journal, state, ...); return rows."""
        answer = self._request("POST", "/query", json={"query": sql}, headers={"accept": "application/json"})
        return list(answer["rows"])

    def query_df(self, sql: str) -> Any:
        """Run SQL and return a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.query(sql))

    def invocation(self, invocation_id: str) -> dict[str, Any] | None:
        """Return the sys_invocation row of one invocation, or None."""
        rows = self.query(f"SELECT * FROM sys_invocation WHERE id = {sql_literal(invocation_id)}")
        return rows[0] if rows else None

    def status(self, invocation_id: str) -> str | None:
        """Return an invocation's status (pending, running, backing-off, suspended, paused, completed...)."""
        row = self.invocation(invocation_id)
        return None if row is None else str(row["status"])

    def invocations(self, service: str | None = None) -> list[dict[str, Any]]:
        """Return the sys_invocation rows, optionally of one service, newest first."""
        where = f"WHERE target_service_name = {sql_literal(service)}" if service else ""
        return self.query(f"SELECT * FROM sys_invocation {where} ORDER BY created_at DESC")

    def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        """Return an invocation's journal entries from sys_journal, in order.

        Each row has index, entry_type (e.g. "Command: Run"), name (e.g. "call LLM"),
        appended_at and entry_json; absent values are None.
        """
        rows = self.query(
            "SELECT index, entry_type, name, appended_at, entry_json "
            f"FROM sys_journal WHERE id = {sql_literal(invocation_id)} ORDER BY index"
        )
        columns = ("index", "entry_type", "name", "appended_at", "entry_json")
        return [{c: (row.get(c) if row.get(c) != "" else None) for c in columns} for row in rows]

    def steps(self, invocation_id: str) -> list[str]:
        """Return the names of an invocation's `run` steps, in order (e.g. ["call LLM", "Get weather"])."""
        return [r["name"] for r in self.journal(invocation_id) if r["entry_type"] == "Command: Run"]

    def journal_df(self, invocation_id: str) -> Any:
        """Return an invocation's journal as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.journal(invocation_id)).fillna({"name": ""})

    def state(self, service: str, key: str) -> dict[str, str]:
        """Return a virtual object's state as {key: value as UTF-8 text}."""
        rows = self.query(
            "SELECT key, value_utf8 FROM state "
            f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)}"
        )
        return {r["key"]: r["value_utf8"] for r in rows}

    def _control(self, invocation_id: str, action: str) -> None:
        self._request("PATCH", f"/invocations/{quote(invocation_id, safe='')}/{action}")

    def kill(self, invocation_id: str) -> None:
        """Kill an invocation at once: no compensation, its journal is dropped."""
        self._control(invocation_id, "kill")

    def cancel(self, invocation_id: str) -> None:
        """Cancel an invocation: it gets a TerminalError at its next await and can clean up."""
        self._control(invocation_id, "cancel")

    def pause(self, invocation_id: str) -> None:
        """Pause an invocation: it stops being retried until resumed."""
        self._control(invocation_id, "pause")

    def resume(self, invocation_id: str, deployment_id: str | None = None) -> None:
        """Resume a paused invocation, optionally on another deployment."""
        params = {"deployment": deployment_id} if deployment_id else None
        self._request("PATCH", f"/invocations/{quote(invocation_id, safe='')}/resume", params=params)

    def restart_as_new(
        self, invocation_id: str, from_entry: int | None = None, *, deployment: str | None = None
    ) -> str:
        """Restart a completed invocation as a new one; return the new invocation's id (lesson 06).

        With `from_entry`, the new invocation keeps the old journal's entries 0 to `from_entry` (included), and the
        results of the steps among them: those steps are not run again, and it runs on the latest deployment
        (`deployment`: "keep" for the old one's, or a deployment id). Without it, it starts again from its input.
        """
        if from_entry is not None and from_entry < 0:
            raise ValueError(f"from_entry={from_entry}: pass a journal entry's index (0 or more), or None")
        params: dict[str, Any] = {}
        if from_entry:
            params["from"] = from_entry
            if deployment:
                params["deployment"] = deployment
        elif deployment:
            raise ValueError("deployment= works with from_entry only: a restart from the start runs on the latest")
        try:
            answer = self._request(
                "PATCH", f"/invocations/{quote(invocation_id, safe='')}/restart-as-new", params=params, retry=False
            )
        except RestateError as err:
            raise RestateError(
                err.status,
                _restart_failure(err, invocation_id, from_entry),
                method="PATCH",
                url=err.url,
                code=err.code,
            ) from None
        return str(answer["new_invocation_id"])


def _restart_failure(err: RestateError, invocation_id: str, from_entry: int | None) -> str:
    """Say why Restate refused to restart an invocation as new, and what to do (Restate's own words at the end)."""
    said = err.message
    if err.status == 404:
        what = (
            f"the server has no invocation {invocation_id}: check the id in sys_invocation (a finished invocation is "
            "kept only as long as its service's retention)"
        )
    elif err.status == 409:
        what = (
            f"{invocation_id} has not completed: only a completed invocation can be restarted as new; wait for it "
            "(ingress.attach), or end it first (admin.cancel, admin.kill)"
        )
    elif err.status == 410 or "not retained" in said:
        what = (
            f"the server kept no journal of {invocation_id}, so there is nothing to restart from: give the service a "
            "journal retention (restate.VirtualObject(name, journal_retention=timedelta(days=1))), and restart a turn "
            "that completed after that"
        )
    elif "without respective Completions" in said:
        what = (
            f"entry {from_entry} of {invocation_id}'s journal is past its last entry, or past a step that never got "
            "its result: pick the index of an entry after a finished step (observe.journal_entries lists them)"
        )
    elif "invocation_id" in said:
        what = f"{invocation_id!r} is not an invocation id: pass one like 'inv_1...', from sys_invocation"
    else:
        return said
    return f"{what} (Restate: {said})"
