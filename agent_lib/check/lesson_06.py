"""Checks for lesson 06's exercises: a SQL recipe of your own, cancel in a queue, resume without a fix."""

from __future__ import annotations

from ..clients import Admin
from ._core import exercise, require

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@exercise(6, 1)
def exercise_1(admin: Admin, sql: str, stuck_invocation_id: str, *, service: str = "FlakyAgent") -> str:
    """Your SQL finds the stuck booking, and only invocations of the service that failed on the booking API."""
    rows = admin.query(sql)
    require(rows, "your query returned no rows", "query sys_invocation WHERE last_failure LIKE '%booking API%'")
    require(
        "id" in rows[0],
        f"your query's columns are {sorted(rows[0])}: select the invocation's id as `id`",
    )
    ids = [str(r["id"]) for r in rows]
    require(
        stuck_invocation_id in ids,
        f"your query found {len(ids)} invocation(s), not the stuck one ({stuck_invocation_id})",
        "is the booking still stuck (booking API down), and does your WHERE match its last_failure?",
    )
    details = admin.query(
        "SELECT id, target_service_name, last_failure FROM sys_invocation "
        f"WHERE id IN ({', '.join(_sql(i) for i in ids)})"
    )
    others = [d["id"] for d in details if d["target_service_name"] != service]
    require(not others, f"your query also returns other services' invocations: {others}", "add a WHERE on the service")
    unrelated = [d["id"] for d in details if "booking API" not in str(d.get("last_failure") or "")]
    require(not unrelated, f"your query also returns invocations that did not fail on the booking API: {unrelated}")
    return f"your recipe found {len(ids)} stuck booking(s), the one you left among them"


@exercise(6, 2)
def exercise_2(admin: Admin, first_id: str, second_id: str) -> str:
    """Two messages to one stuck session; you cancelled the first, and the second then took the key."""
    rows = {
        r["id"]: r
        for r in admin.query(
            "SELECT id, status, target_service_key, completion_result, completion_failure FROM sys_invocation "
            f"WHERE id IN ({_sql(first_id)}, {_sql(second_id)})"
        )
    }
    require(first_id in rows and second_id in rows, "the server does not know one of these invocations: pass both ids")
    first, second = rows[first_id], rows[second_id]
    require(
        first["target_service_key"] == second["target_service_key"],
        "the two messages went to different keys: send both to the same stuck session",
    )
    require(
        first["status"] == "completed" and first.get("completion_result") == "failure",
        f"the first message is {first['status']!r} ({first.get('completion_failure')}): cancel it",
        "admin.cancel(first_id), then wait until it is completed",
    )
    require(
        second["status"] != "pending",
        "the second message still waits in the queue",
        "cancel the *first* one: it holds the key; the second waits behind it",
    )
    return (
        f"the first ended ({first.get('completion_failure')}); the second left the queue and is now "
        f"{second['status']!r}: it holds the key"
    )


@exercise(6, 3)
def exercise_3(admin: Admin, invocation_id: str, retry_count_at_pause: int) -> str:
    """A stuck invocation you paused and resumed without a fix: it retries (and fails) again, the count goes on."""
    row = admin.invocation(invocation_id)
    require(row is not None, f"the server has no invocation {invocation_id!r}")
    assert row is not None
    require(
        row["status"] != "paused",
        "it is still paused",
        "admin.resume(invocation_id), then wait a few seconds before you check",
    )
    require(
        row["status"] != "completed",
        f"it completed ({row.get('completion_result')}): leave the booking API down for this exercise",
    )
    count = int(row.get("retry_count") or 0)
    require(
        count > retry_count_at_pause,
        f"its retry count is {count}, not more than the {retry_count_at_pause} it had when you paused it",
        "wait a few seconds after resume: it retries about once a second",
    )
    return (
        f"resumed without a fix, it is {row['status']!r} again: {count} attempts, up from {retry_count_at_pause}. "
        "The monitor (or a query on retry_count) finds it tomorrow"
    )
