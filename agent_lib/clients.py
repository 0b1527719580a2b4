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

import os
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ._http import RestateError, SendResult, _Http, transient
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


def _target(service: str, handler: str, key: str | None) -> str:
    if not service or not handler:
        raise ValueError("name both the service and the handler, e.g. call('WeatherAgent', 'run', ..., key='s1')")
    parts = [service] + ([key] if key is not None else []) + [handler]
    return "/" + "/".join(quote(p, safe="") for p in parts)


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
