"""Checks for lesson 06's exercises: a SQL recipe of your own, cancel in a queue, resume without a fix.

Run `check.lesson_06.begin(admin)` before the exercises: the checks then judge only the invocations made after it,
and refuse the lesson's own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..agents.flaky import SERVICE_NAME, set_booking_api
from ..clients import Admin, Ingress, RestateError
from . import _core
from ._core import Began, Fail, created_at, exercise, fresh_key, remaining, require, require_new, require_served, send

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]

_BOOKING = "booking API"


def begin(admin: Admin) -> Began:
    """Begin lesson 06's exercises now (server time): the checks then judge only the invocations made after it."""
    return _core.begin(6, admin)


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _stuck_decoy(ingress: Ingress, admin: Admin) -> str:
    """Leave a booking of the check's own stuck on the booking API; return its id once it has failed."""
    key = fresh_key("check-recipe")
    set_booking_api(key, up=False)
    decoy = send(ingress, SERVICE_NAME, "run", "Book a flight to Quito.", key=key)
    while True:
        row = admin.invocation(decoy)
        if row is not None and row.get("retry_count") and _BOOKING in str(row.get("last_failure") or ""):
            return decoy
        remaining("a booking of the check's own to fail on the booking API")
        time.sleep(0.2)


def _failed_once(admin: Admin, row: dict[str, Any], wait: float = 10.0) -> dict[str, Any]:
    """Return the invocation's row once it has failed on the booking API (or ended, or `wait` seconds passed)."""
    deadline = time.monotonic() + wait
    while row["status"] != "completed" and _BOOKING not in str(row.get("last_failure") or ""):
        if time.monotonic() > deadline:
            break
        remaining("the booking you passed to fail on the booking API")
        time.sleep(0.2)
        row = admin.invocation(row["id"]) or row
    return row


def _end(admin: Admin, invocation_id: str) -> None:
    """Kill an invocation the check started, and wait (briefly) until it is gone."""
    try:
        admin.kill(invocation_id)
    except RestateError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and admin.status(invocation_id) != "completed":
        time.sleep(0.1)


def _run_recipe(admin: Admin, sql: str, stuck_invocation_id: str, decoy: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Run the learner's query while the check's own booking is stuck; return the ids and their rows."""
    try:
        rows = admin.query(sql)
    except RestateError as err:
        raise Fail(f"your query fails: {err.message}", "try it with admin.query_df(sql) first") from None
    require(rows, "your query returned no rows", f"query sys_invocation WHERE last_failure LIKE '%{_BOOKING}%'")
    require("id" in rows[0], f"your query's columns are {sorted(rows[0])}: select the invocation's id as `id`")
    ids = [str(r["id"]) for r in rows]
    require(
        stuck_invocation_id in ids,
        f"your query found {len(ids)} invocation(s), not the stuck one ({stuck_invocation_id})",
        "does your WHERE match its last_failure, and its status?",
    )
    require(
        decoy in ids,
        f"your query found your stuck booking, but not the one the check left stuck just before running it "
        f"({decoy}): it must find every stuck booking, not one id",
        f"select by what a stuck booking has in common: the service, an unfinished status, '{_BOOKING}' in "
        "last_failure (no id, no LIMIT)",
    )
    details = admin.query(
        "SELECT id, target_service_name, status, last_failure FROM sys_invocation "
        f"WHERE id IN ({', '.join(_sql(i) for i in ids)})"
    )
    return ids, details


@exercise(6, 1)
def exercise_1(
    ingress: Ingress, admin: Admin, sql: str, stuck_invocation_id: str, *, service: str = SERVICE_NAME
) -> str:
    """Your SQL finds every stuck booking (yours, and one the check leaves stuck), and nothing else."""
    stuck = require_new(admin, stuck_invocation_id, "the stuck booking")
    require(
        stuck["target_service_name"] == service,
        f"{stuck_invocation_id} is a {stuck['target_service_name']} invocation, not a {service} one",
        f"leave a {service} booking stuck (set_booking_api(key, up=False), then send it) and pass its id",
    )
    stuck = _failed_once(admin, stuck)
    require(
        stuck["status"] != "completed",
        f"the booking you passed is not stuck any more: it ended ({stuck.get('completion_failure') or 'success'})",
        "leave it stuck (booking API down) until the check has run; kill it after",
    )
    require(
        _BOOKING in str(stuck.get("last_failure") or ""),
        f"the booking you passed has not failed on the booking API (it is {stuck['status']!r}, last failure: "
        f"{stuck.get('last_failure')!r})",
        "bring the booking API down for its key before you send it (set_booking_api(key, up=False)), and wait for "
        "its first retry",
    )
    require_served(admin, service)
    decoy = _stuck_decoy(ingress, admin)
    try:
        ids, details = _run_recipe(admin, sql, stuck_invocation_id, decoy)
    finally:
        _end(admin, decoy)
    others = [d["id"] for d in details if d["target_service_name"] != service]
    require(not others, f"your query also returns other services' invocations: {others}", "add a WHERE on the service")
    done = [d["id"] for d in details if d["status"] == "completed"]
    require(not done, f"your query also returns finished invocations: {done}", "add a WHERE on the status")
    unrelated = [d["id"] for d in details if _BOOKING not in str(d.get("last_failure") or "")]
    require(not unrelated, f"your query also returns invocations that did not fail on the {_BOOKING}: {unrelated}")
    return (
        f"your recipe found {len(ids)} stuck booking(s), among them yours and one the check left stuck just before "
        "(now killed), and nothing else"
    )


@exercise(6, 2)
def exercise_2(admin: Admin, first_id: str, second_id: str) -> str:
    """Two messages to one stuck session; you cancelled the first, and the second, queued behind it, took the key."""
    require(
        first_id != second_id, "you passed the same invocation twice", "pass the first message's id, then the second's"
    )
    first = require_new(admin, first_id, "the first message")
    require(
        admin.invocation(second_id) is not None or first["status"] == "completed",
        f"the server has no second message {second_id}, and the first still holds the key ({first['status']!r}): "
        "did you cancel the second one? A message cancelled while it waits in the queue is removed",
        "cancel the *first* one, the one that holds the key: admin.cancel(first_id)",
    )
    second = require_new(admin, second_id, "the second message")
    require(
        first["target_service_name"] == second["target_service_name"] == SERVICE_NAME,
        f"the two messages went to {first['target_service_name']} and {second['target_service_name']}, "
        f"not both to {SERVICE_NAME}",
        f"send both to one stuck {SERVICE_NAME} session",
    )
    require(
        first["target_service_key"] == second["target_service_key"],
        "the two messages went to different keys: send both to the same stuck session",
    )
    require(
        created_at(first["created_at"]) <= created_at(second["created_at"]),
        "you passed them in the wrong order: the second id was sent before the first",
        "pass the message you sent first (the one that holds the key) first",
    )
    failure = str(first.get("completion_failure") or "")
    require(
        first["status"] == "completed",
        f"the first message is {first['status']!r}: it still holds the key",
        "cancel it: admin.cancel(first_id)",
    )
    require(
        "cancel" in failure,
        f"the first message ended with {failure or first.get('completion_result')!r}, not by a cancel",
        "cancel it (admin.cancel), do not kill it: a cancel lets the handler clean up",
    )
    require(
        second.get("inboxed_at") is not None and created_at(second["created_at"]) < created_at(first["completed_at"]),
        "the second message was sent after the first had ended, so it never waited behind it",
        "send both while the first is stuck, then cancel the first",
    )
    require(
        second["status"] != "pending" and second.get("running_at"),
        "the second message still waits in the queue",
        "cancel the *first* one: it holds the key; the second waits behind it",
    )
    waited = (created_at(second["running_at"]) - created_at(first["completed_at"])).total_seconds()
    return (
        f"the first ended with {failure!r}; the second, queued behind it, started {max(waited, 0):.1f} s later and is "
        f"now {second['status']!r}: it holds the key"
    )


def _events(admin: Admin, invocation_id: str) -> list[dict[str, Any]]:
    rows = admin.query(
        "SELECT event_type, appended_at, event_json FROM sys_journal_events "
        f"WHERE id = {_sql(invocation_id)} ORDER BY appended_at"
    )
    for row in rows:
        try:
            row["event"] = json.loads(row.get("event_json") or "{}")
        except ValueError:
            row["event"] = {}
    return rows


@exercise(6, 3)
def exercise_3(admin: Admin, invocation_id: str, retry_count_at_pause: int) -> str:
    """A stuck invocation you paused and resumed without a fix: it retries (and fails) again, the count goes on."""
    row = require_new(admin, invocation_id, "the invocation")
    require(
        isinstance(retry_count_at_pause, int) and retry_count_at_pause >= 1,
        f"you passed a retry count of {retry_count_at_pause!r} at the pause: a stuck invocation has retried at least "
        "once by then",
        "read it once it is paused: admin.invocation(id)['retry_count']",
    )
    require(
        row["status"] != "completed",
        f"it completed ({row.get('completion_failure') or 'success'}): leave the booking API down for this exercise",
        "resume it without fixing the cause (the switch stays off)",
    )
    require(
        row["status"] != "paused",
        "it is still paused",
        "admin.resume(invocation_id), then wait a few seconds before you check",
    )
    paused = [e for e in _events(admin, invocation_id) if e["event_type"] == "Paused"]
    require(
        paused,
        f"it was never paused: it is {row['status']!r} with {row.get('retry_count')} attempts",
        "admin.pause(invocation_id), note its retry_count, then admin.resume(invocation_id)",
    )
    count = int(row.get("retry_count") or 0)
    require(
        count > retry_count_at_pause,
        f"its retry count is {count}, not more than the {retry_count_at_pause} it had when you paused it",
        "wait a few seconds after resume: it retries about once a second",
    )
    return (
        f"paused, then resumed without a fix, it is {row['status']!r} again: {count} attempts, up from "
        f"{retry_count_at_pause}"
    )
