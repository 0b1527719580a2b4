"""Read what the server knows about invocations: journals, timelines, and SQL recipes (lessons 06 and 07).

Everything here is a query over the server's own SQL tables (`sys_invocation`,
`sys_journal`, `sys_journal_events`, `sys_keyed_service_status`, `sys_inbox`, `state`),
made through `Admin.query`, and returned as a pandas DataFrame a notebook can show. The
widgets in `agent_lib.widgets` draw these frames; tests check the frames themselves.

    timeline(admin, invocation_id)       # one row per durable step: when it started, how long it took
    stuck_invocations(admin, "FlakyAgent")
    key_blockers(admin, "FlakyAgent", "session-1")
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ._sql import sql_literal
from .clients import Admin
from .clients import ui_url as _ui_url

__all__ = [
    "BlockingWaitError",
    "DrainError",
    "await_retries",
    "await_state",
    "await_status",
    "MONITOR_COLUMNS",
    "TIMELINE_COLUMNS",
    "first_line",
    "in_flight",
    "journal_entries",
    "journal_events",
    "key_blockers",
    "monitor_frame",
    "object_state",
    "remove_drained",
    "retried_more_than",
    "service_deployments",
    "steps_from_entries",
    "stuck_invocations",
    "suspended_invocations",
    "timeline",
    "ui_url",
    "wait_for_retries",
    "wait_for_state",
    "wait_for_status",
]

TIMELINE_COLUMNS = ["step", "index", "start", "duration", "started_at", "finished_at", "done", "failed", "error"]
"""The columns of `timeline()`: start and duration in seconds, from the invocation's first entry."""

MONITOR_COLUMNS = [
    "id", "key", "handler", "status", "retry_count", "failing_step", "last_failure", "deployment", "created_at",
    "modified_at",
]  # fmt: skip
"""The columns of `monitor_frame()`. The server forgets `retry_count` once an invocation completes (<NA>)."""

_INVOCATION_COLUMNS = (
    "id, target_service_key AS key, target_handler_name AS handler, status, retry_count, "
    "last_failure_related_command_name AS failing_step, last_failure, last_failure_error_code AS error_code, "
    "pinned_deployment_id AS deployment, created_at, modified_at"
)
_OPEN = "status != 'completed'"


class DrainError(RuntimeError):
    """A deployment still has invocations in flight, so removing it would strand them."""


def _ts(value: Any) -> pd.Timestamp | None:
    if value in (None, ""):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")


def first_line(text: Any, limit: int = 160) -> str | None:
    """Return the first line of an error text, shortened to `limit` characters (None stays None)."""
    if text in (None, ""):
        return None
    line = str(text).strip().splitlines()[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def ui_url(admin: Admin, invocation_id: str) -> str:
    """Return the address of an invocation's page in the Restate UI (forwarded in a codespace, see clients.ui_url)."""
    return _ui_url(admin.url, f"/ui/invocations/{invocation_id}")


def journal_entries(admin: Admin, invocation_id: str) -> pd.DataFrame:
    """Return an invocation's journal as a table: index, entry_type, name, appended_at, at (s), detail."""
    rows = admin.query(
        "SELECT index, entry_type, name, appended_at, entry_lite_json "
        f"FROM sys_journal WHERE id = {sql_literal(invocation_id)} ORDER BY index"
    )
    frame = pd.DataFrame(
        [
            {
                "index": int(r["index"]),
                "entry_type": r.get("entry_type"),
                "name": r.get("name") or None,
                "appended_at": _ts(r.get("appended_at")),
                "detail": r.get("entry_lite_json"),
            }
            for r in rows
        ],
        columns=["index", "entry_type", "name", "appended_at", "detail"],
    )
    if not frame.empty:
        origin = frame["appended_at"].min()
        frame.insert(4, "at", [(t - origin).total_seconds() for t in frame["appended_at"]])
    else:
        frame.insert(4, "at", pd.Series(dtype=float))
    return frame


def journal_events(admin: Admin, invocation_id: str) -> pd.DataFrame:
    """Return the events the server recorded beside the journal (TransientError, Paused, ...)."""
    rows = admin.query(
        "SELECT after_journal_entry_index, appended_at, event_type, event_json "
        f"FROM sys_journal_events WHERE id = {sql_literal(invocation_id)} ORDER BY appended_at"
    )
    records = []
    for r in rows:
        try:
            event = json.loads(r.get("event_json") or "{}")
        except ValueError:
            event = {}
        records.append(
            {
                "after_index": int(r["after_journal_entry_index"]),
                "appended_at": _ts(r.get("appended_at")),
                "event_type": r.get("event_type"),
                "message": first_line(event.get("error_message") or event.get("reason")),
            }
        )
    return pd.DataFrame(records, columns=["after_index", "appended_at", "event_type", "message"])


def _lite(row: Mapping[str, Any]) -> dict[str, Any]:
    detail = row.get("detail")
    if isinstance(detail, dict):
        return detail
    try:
        return dict(json.loads(detail or "{}"))
    except ValueError:
        return {}


def steps_from_entries(
    entries: pd.DataFrame, events: pd.DataFrame | None = None, *, now: datetime | None = None
) -> pd.DataFrame:
    """Turn journal entries into one row per `run` step (the timeline), without asking the server.

    A step starts when its `Command: Run` entry is appended and ends when the matching
    `Notification: Run` (same completion id) is. A step with no notification yet is still
    running (or retrying): its duration runs up to `now`. `failed` marks a step after which
    the server recorded a TransientError, and `error` is that error's first line.
    """
    if entries.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    origin = entries["appended_at"].min()
    now_ts = pd.Timestamp(now or datetime.now(UTC))
    finished: dict[int, pd.Timestamp] = {}
    for _, row in entries.iterrows():
        notification = _lite(row).get("Notification", {})
        completion = notification.get("id", {}).get("CompletionId") if isinstance(notification, dict) else None
        if completion is not None:
            finished[int(completion)] = row["appended_at"]
    errors: dict[int, str | None] = {}
    if events is not None:
        for _, event in events.iterrows():
            if event["event_type"] == "TransientError":
                errors.setdefault(int(event["after_index"]), event["message"])
    records = []
    for _, row in entries.iterrows():
        run = _lite(row).get("Command", {})
        run = run.get("Run") if isinstance(run, dict) else None
        if row["entry_type"] != "Command: Run" or not isinstance(run, dict):
            continue
        started = row["appended_at"]
        ended = finished.get(int(run.get("completion_id", -1)))
        records.append(
            {
                "step": run.get("name") or row["name"] or "run",
                "index": int(row["index"]),
                "start": (started - origin).total_seconds(),
                "duration": max(0.0, ((ended if ended is not None else now_ts) - started).total_seconds()),
                "started_at": started,
                "finished_at": ended,
                "done": ended is not None,
                "failed": int(row["index"]) in errors,
                "error": errors.get(int(row["index"])),
            }
        )
    return pd.DataFrame(records, columns=TIMELINE_COLUMNS)


def timeline(admin: Admin, invocation_id: str, *, now: datetime | None = None) -> pd.DataFrame:
    """Return one row per durable step ("call LLM", a tool's step...): start and duration in seconds.

    A step that never finished ends at `now` while the invocation runs, or where the
    invocation ended (a kill or a cancel).
    """
    if now is None:
        row = admin.invocation(invocation_id) or {}
        ended = _ts(row.get("completed_at")) if row.get("status") == "completed" else None
        now = ended.to_pydatetime() if ended is not None else None
    return steps_from_entries(journal_entries(admin, invocation_id), journal_events(admin, invocation_id), now=now)


def _invocation_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    records = [
        {
            "id": r.get("id"),
            "key": r.get("key"),
            "handler": r.get("handler"),
            "status": r.get("status"),
            "retry_count": r.get("retry_count"),
            "failing_step": r.get("failing_step") or None,
            "last_failure": first_line(r.get("last_failure")),
            "deployment": r.get("deployment") or None,
            "created_at": _ts(r.get("created_at")),
            "modified_at": _ts(r.get("modified_at")),
        }
        for r in rows
    ]
    frame = pd.DataFrame(records, columns=MONITOR_COLUMNS)
    frame["retry_count"] = frame["retry_count"].astype("Int64")
    return frame


def _where(*conditions: str | None) -> str:
    kept = [c for c in conditions if c]
    return ("WHERE " + " AND ".join(f"({c})" for c in kept)) if kept else ""


def _service(service: str | None) -> str | None:
    return f"target_service_name = {sql_literal(service)}" if service else None


def monitor_frame(admin: Admin, service: str | None = None, *, limit: int = 20) -> pd.DataFrame:
    """Return a service's latest invocations: status, retry count, the failing step and the last failure."""
    rows = admin.query(
        f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation {_where(_service(service))} "
        f"ORDER BY created_at DESC LIMIT {int(limit)}"
    )
    return _invocation_frame(rows)


def stuck_invocations(admin: Admin, service: str | None = None) -> pd.DataFrame:
    """Return the unfinished invocations that failed at least once (backing-off, paused, or retrying)."""
    stuck = "status IN ('backing-off', 'paused') OR (status = 'running' AND last_failure IS NOT NULL)"
    rows = admin.query(
        f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation {_where(_OPEN, stuck, _service(service))} "
        "ORDER BY created_at"
    )
    return _invocation_frame(rows)


def retried_more_than(admin: Admin, n: int, service: str | None = None) -> pd.DataFrame:
    """Return the unfinished invocations with more than `n` attempts."""
    rows = admin.query(
        f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation "
        f"{_where(_OPEN, f'retry_count > {int(n)}', _service(service))} ORDER BY retry_count DESC"
    )
    return _invocation_frame(rows)


def suspended_invocations(admin: Admin, service: str | None = None) -> pd.DataFrame:
    """Return the invocations suspended while they wait (an approval, a timer, another service)."""
    rows = admin.query(
        f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation "
        f"{_where("status = 'suspended'", _service(service))} ORDER BY created_at"
    )
    return _invocation_frame(rows)


def key_blockers(admin: Admin, service: str, key: str) -> pd.DataFrame:
    """Return who holds a virtual object's key (role "holds the key") and who waits behind it, in order."""
    holders = admin.query(
        "SELECT invocation_id FROM sys_keyed_service_status "
        f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)}"
    )
    waiting = admin.query(
        "SELECT id, sequence_number FROM sys_inbox "
        f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)} ORDER BY sequence_number"
    )
    order = [(h["invocation_id"], "holds the key") for h in holders] + [
        (w["id"], f"waiting #{n}") for n, w in enumerate(waiting, start=1)
    ]
    if not order:
        return pd.DataFrame(columns=["role", *MONITOR_COLUMNS])
    ids = ", ".join(sql_literal(i) for i, _ in order)
    details = {r["id"]: r for r in admin.query(f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation WHERE id IN ({ids})")}
    frame = _invocation_frame([details.get(i, {"id": i, "key": key}) for i, _ in order])
    frame.insert(0, "role", [role for _, role in order])
    return frame


def in_flight(admin: Admin, deployment_id: str) -> pd.DataFrame:
    """Return the unfinished invocations pinned to a deployment (they must finish before it goes)."""
    rows = admin.query(
        f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation "
        f"{_where(_OPEN, f'pinned_deployment_id = {sql_literal(deployment_id)}')} ORDER BY created_at"
    )
    return _invocation_frame(rows)


def service_deployments(admin: Admin, service: str) -> pd.DataFrame:
    """Return a service's deployments, oldest first: id, endpoint, created_at, latest, in_flight."""
    rows = admin.query(
        "SELECT id, endpoint, created_at FROM sys_deployment "
        f"WHERE array_has(services, {sql_literal(service)}) ORDER BY created_at"
    )
    served = admin.query(f"SELECT deployment_id FROM sys_service WHERE name = {sql_literal(service)}")
    latest = {r["deployment_id"] for r in served}
    counts = {
        r["deployment"]: int(r["n"])
        for r in admin.query(
            "SELECT pinned_deployment_id AS deployment, count(*) AS n FROM sys_invocation "
            f"{_where(_OPEN, _service(service), 'pinned_deployment_id IS NOT NULL')} GROUP BY pinned_deployment_id"
        )
    }
    return pd.DataFrame(
        [
            {
                "id": r["id"],
                "endpoint": r["endpoint"],
                "created_at": _ts(r.get("created_at")),
                "latest": r["id"] in latest,
                "in_flight": counts.get(r["id"], 0),
            }
            for r in rows
        ],
        columns=["id", "endpoint", "created_at", "latest", "in_flight"],
    )


def remove_drained(admin: Admin, deployment_id: str) -> None:
    """Remove a deployment once no invocation runs on it; raise DrainError (and keep it) otherwise."""
    busy = in_flight(admin, deployment_id)
    if not busy.empty:
        ids = ", ".join(f"{i} ({s})" for i, s in zip(busy["id"], busy["status"], strict=True))
        raise DrainError(
            f"deployment {deployment_id} still has {len(busy)} invocation(s) in flight: {ids}. "
            "Let them finish (resolve their approvals), or kill them, then remove it again"
        )
    admin.remove_deployment(deployment_id, force=True)


def object_state(admin: Admin, service: str, key: str) -> dict[str, Any]:
    """Return a virtual object's state with each JSON value decoded (text that is not JSON stays text)."""
    decoded: dict[str, Any] = {}
    for name, text in admin.state(service, key).items():
        try:
            decoded[name] = json.loads(text)
        except (TypeError, ValueError):
            decoded[name] = text
    return decoded


def _serving_here() -> bool:
    """Return True if this thread's event loop serves an agent (a hypercorn task, as `serve_in_kernel` starts)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    hypercorn = sys.modules.get("hypercorn.asyncio")
    serve = getattr(getattr(hypercorn, "serve", None), "__code__", None)
    if serve is None:
        return False
    return any(
        getattr(task.get_coro(), "cr_code", None) is serve and not task.done() for task in asyncio.all_tasks(loop)
    )


class BlockingWaitError(RuntimeError):
    """A blocking wait was called on the event loop that serves an agent in this kernel: it would stop that agent."""


def _refuse_blocking(call: str, awaitable: str) -> None:
    if _serving_here():
        raise BlockingWaitError(
            f"observe.{call}(...) blocks this kernel's event loop, and that loop serves an agent in this kernel "
            "(serve_in_kernel): while it waits, that agent cannot answer, so the wait would only run out. Wait "
            f"without blocking: `await observe.{awaitable}(...)` (or `await asyncio.to_thread(observe.{call}, ...)`)"
        )


def _why_not(row: Mapping[str, Any] | None) -> str:
    """Say why an invocation has not got where a wait expected: its status, its failure, its deployment."""
    if row is None:
        return "the server has no such invocation"
    return f"it is {row.get('status')!r}" + _detail(row)


def _detail(row: Mapping[str, Any] | None) -> str:
    """Return "; its last failure: ..." and "; it has not started on any deployment ..." as they apply."""
    if row is None:
        return ""
    text = ""
    if row.get("last_failure"):
        text += f"; its last failure: {first_line(row.get('last_failure'))}"
    if not row.get("pinned_deployment_id") and row.get("status") not in ("completed", "pending", None):
        text += (
            "; it has not started on any deployment yet (no pinned_deployment_id): is the latest deployment of "
            f"{row.get('target_service_name')} served? A deployment served in this kernel and stopped is not: "
            "register a running one again (admin.register(process.url))"
        )
    return text


def wait_for_status(
    admin: Admin, invocation_id: str, statuses: str | Sequence[str], *, timeout: float = 60.0, poll: float = 0.2
) -> dict[str, Any]:
    """Wait until an invocation's status is one of `statuses`; return its sys_invocation row."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)
    deadline = time.monotonic() + timeout
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        row = admin.invocation(invocation_id)
        if row is not None and row.get("status") in wanted:
            return row
        _refuse_blocking("wait_for_status", "await_status")
        time.sleep(poll)
    seen = None if row is None else row.get("status")
    raise TimeoutError(
        f"invocation {invocation_id} is {seen!r}, not {sorted(wanted)}, after {timeout:.0f}s{_detail(row)}: "
        f"look at its last failure with admin.invocation({invocation_id!r})"
    )


def wait_for_retries(
    admin: Admin, invocation_id: str, attempts: int, *, timeout: float = 60.0, poll: float = 0.2
) -> dict[str, Any]:
    """Wait until an unfinished invocation has made at least `attempts` attempts; return its row."""
    deadline = time.monotonic() + timeout
    row: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        row = admin.invocation(invocation_id)
        if row is not None and row.get("status") == "completed":
            raise RuntimeError(f"invocation {invocation_id} completed ({row.get('completion_failure') or 'success'})")
        if row is not None and int(row.get("retry_count") or 0) >= attempts:
            return row
        _refuse_blocking("wait_for_retries", "await_retries")
        time.sleep(poll)
    seen = None if row is None else row.get("retry_count")
    raise TimeoutError(
        f"invocation {invocation_id} made {seen} attempts, not {attempts}, within {timeout:.0f}s{_detail(row)}"
    )


async def await_status(
    admin: Admin, invocation_id: str, statuses: str | Sequence[str], *, timeout: float = 60.0
) -> dict[str, Any]:
    """Like `wait_for_status`, without blocking the event loop (live widgets keep updating)."""
    return await asyncio.to_thread(wait_for_status, admin, invocation_id, statuses, timeout=timeout)


async def await_retries(admin: Admin, invocation_id: str, attempts: int, *, timeout: float = 60.0) -> dict[str, Any]:
    """Like `wait_for_retries`, without blocking the event loop (live widgets keep updating)."""
    return await asyncio.to_thread(wait_for_retries, admin, invocation_id, attempts, timeout=timeout)


def wait_for_state(admin: Admin, service: str, key: str, name: str, *, timeout: float = 60.0, poll: float = 0.2) -> Any:
    """Wait until a virtual object's state has `name`; return its decoded value.

    It blocks: from a notebook that serves an agent in its own kernel, use `await await_state(...)` (lesson 07).
    """
    deadline = time.monotonic() + timeout
    polls = 0
    while time.monotonic() < deadline:
        state = object_state(admin, service, key)
        if name in state:
            return state[name]
        _refuse_blocking("wait_for_state", "await_state")
        polls += 1
        if polls % 5 == 0 and (row := _in_flight_on_key(admin, service, key)) is not None:
            if not row.get("pinned_deployment_id") and int(row.get("retry_count") or 0) >= 2:
                raise RuntimeError(f"{service}/{key} will not get a state value {name!r}: {_why_not(row)}")
        time.sleep(poll)
    row = _in_flight_on_key(admin, service, key)
    why = _why_not(row) if row is not None else "no invocation of that key is in flight"
    raise TimeoutError(f"{service}/{key} has no state value {name!r} after {timeout:.0f}s: {why}")


def _in_flight_on_key(admin: Admin, service: str, key: str) -> dict[str, Any] | None:
    rows = admin.query(
        f"SELECT * FROM sys_invocation WHERE target_service_name = {sql_literal(service)} "
        f"AND target_service_key = {sql_literal(key)} "
        f"AND {_OPEN} ORDER BY created_at DESC LIMIT 1"
    )
    return rows[0] if rows else None


async def await_state(admin: Admin, service: str, key: str, name: str, *, timeout: float = 60.0) -> Any:
    """Like `wait_for_state`, without blocking the event loop (an agent served in this kernel keeps answering)."""
    return await asyncio.to_thread(wait_for_state, admin, service, key, name, timeout=timeout)
