"""Checks for lesson 06's exercises: a SQL recipe of your own, cancel in a queue, resume without a fix, regenerate.

Run `check.lesson_06.begin(admin)` before the exercises: the checks then judge only the invocations made after it,
and refuse the lesson's own.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from .._sql import sql_literal
from ..agents import hotel
from ..agents.flaky import ATTEMPT_KIND, SERVICE_NAME, set_booking_api
from ..clients import Admin, Ingress, RestateError
from ..models import uses_gemini
from . import _core
from ._core import (
    Began,
    Fail,
    created_at,
    deployment_of,
    effects_of,
    exercise,
    fresh_key,
    listening,
    output,
    remaining,
    require,
    require_new,
    require_served,
    send,
)

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3", "exercise_4"]

_BOOKING = "booking API"


def begin(admin: Admin) -> Began:
    """Begin lesson 06's exercises now (server time): the checks then judge only the invocations made after it."""
    return _core.begin(6, admin)


_WEATHER = "WeatherAgent"
"""Another service of the lab with a stored session, for the decoy of another service (used when it is served)."""


def _failed_on(admin: Admin, invocation_id: str, text: str, what: str) -> None:
    """Wait until an invocation has failed at least once with `text` in its last failure."""
    while True:
        row = admin.invocation(invocation_id)
        if row is not None and row.get("retry_count") and text in str(row.get("last_failure") or ""):
            return
        remaining(what)
        time.sleep(0.2)


def _set_session(admin: Admin, service: str, key: str, text: str | None) -> None:
    """Store `text` as the object's ADK session (not a valid one), or clear the object's state (None)."""
    state = {} if text is None else {"session_store::session": list(text.encode())}
    admin._request("POST", f"/services/{service}/state", json={"object_key": key, "new_state": state})


@dataclass
class _Decoys:
    """Invocations the check plants before it runs a recipe: one it must find, and ones it must not."""

    stuck: str = ""
    """A FlakyAgent booking stuck on the booking API, like the learner's: the recipe must find it."""
    wrong: dict[str, str] = field(default_factory=dict)
    """id -> what it is, for each invocation the recipe must not return."""
    keys: list[tuple[str, str]] = field(default_factory=list)
    """(service, key) whose state the check wrote, cleared afterwards."""


def _plant(ingress: Ingress, admin: Admin) -> _Decoys:
    """Plant the decoys: a stuck booking, a queued one, one stuck for another reason, another service's, a done one."""
    decoys = _Decoys()
    key = fresh_key("check-recipe")
    set_booking_api(key, up=False)
    decoys.stuck = send(ingress, SERVICE_NAME, "run", "Book a flight to Quito.", key=key)
    queued = send(ingress, SERVICE_NAME, "run", "Book a flight to Lima.", key=key)
    decoys.wrong[queued] = f"a {SERVICE_NAME} message that waits in its key's queue ('pending') and never failed"
    other_reason = fresh_key("check-other-failure")
    set_booking_api(other_reason, up=True)
    _set_session(admin, SERVICE_NAME, other_reason, "not a session")
    decoys.keys.append((SERVICE_NAME, other_reason))
    broken = send(ingress, SERVICE_NAME, "run", "Book a flight to Cusco.", key=other_reason)
    decoys.wrong[broken] = f"a {SERVICE_NAME} booking stuck for another reason (its session is broken, not the API)"
    weather = None
    if _WEATHER in admin.services() and listening(str(deployment_of(admin, _WEATHER).get("uri", ""))):
        other_service = fresh_key("check-other-service")
        _set_session(admin, _WEATHER, other_service, "the booking API is down")
        decoys.keys.append((_WEATHER, other_service))
        weather = send(ingress, _WEATHER, "run", "What is the weather in Quito?", key=other_service)
        decoys.wrong[weather] = f"a {_WEATHER} invocation (another service) whose last failure mentions '{_BOOKING}'"
    done_key = fresh_key("check-done")
    set_booking_api(done_key, up=False)
    done = send(ingress, SERVICE_NAME, "run", "Book a flight to Bogota.", key=done_key)
    decoys.wrong[done] = f"a {SERVICE_NAME} booking that failed on the {_BOOKING}, then completed"
    _failed_on(admin, decoys.stuck, _BOOKING, "a booking of the check's own to fail on the booking API")
    _failed_on(admin, done, _BOOKING, "a booking of the check's own to fail on the booking API")
    set_booking_api(done_key, up=True)
    _failed_on(admin, broken, "Session", "a booking of the check's own to fail on its broken session")
    if weather is not None:
        _failed_on(admin, weather, _BOOKING, f"a {_WEATHER} invocation of the check's own to fail")
    while admin.status(done) != "completed":
        remaining("a booking of the check's own to complete")
        time.sleep(0.2)
    return decoys


def _clear(admin: Admin, decoys: _Decoys) -> None:
    """Kill the decoys that are left, and clear the state the check wrote."""
    for invocation_id in [decoys.stuck, *decoys.wrong]:
        if invocation_id:
            _end(admin, invocation_id)
    for service, key in decoys.keys:
        with contextlib.suppress(RestateError):
            _set_session(admin, service, key, None)


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


def _run_recipe(
    admin: Admin, sql: str, stuck_invocation_id: str, decoys: _Decoys
) -> tuple[list[str], list[dict[str, Any]]]:
    """Run the learner's query while the check's decoys are planted; return the ids and their rows."""
    try:
        rows = admin.query(sql)
    except RestateError as err:
        raise Fail(f"your query fails: {err.message}", "try it with admin.query_df(sql) first") from None
    require(rows, "your query returned no rows", f"query sys_invocation WHERE last_failure LIKE '%{_BOOKING}%'")
    require(
        "id" in rows[0],
        f"your query's columns are {sorted(rows[0])}: select the invocation's id as `id`",
        "start it with SELECT id, ... FROM sys_invocation (or name the column: ... AS id)",
    )
    ids = [str(r["id"]) for r in rows]
    planted = [f"{invocation_id} ({what})" for invocation_id, what in decoys.wrong.items() if invocation_id in ids]
    require(
        not planted,
        "your query also returns invocations the check planted that are not stuck bookings: " + "; ".join(planted),
        f"a stuck booking is one of {SERVICE_NAME} (target_service_name), not completed (status), whose last "
        f"failure mentions '{_BOOKING}' (last_failure LIKE '%{_BOOKING}%'): filter on all three",
    )
    require(
        stuck_invocation_id in ids,
        f"your query found {len(ids)} invocation(s), not the stuck one ({stuck_invocation_id})",
        "does your WHERE match its last_failure, and its status?",
    )
    require(
        decoys.stuck in ids,
        f"your query found your stuck booking, but not the one the check left stuck just before running it "
        f"({decoys.stuck}): it must find every stuck booking, not one id",
        f"select by what a stuck booking has in common: the service, an unfinished status, '{_BOOKING}' in "
        "last_failure (no id, no LIMIT)",
    )
    details = admin.query(
        "SELECT id, target_service_name, status, last_failure FROM sys_invocation "
        f"WHERE id IN ({', '.join(sql_literal(i) for i in ids)})"
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
    decoys = _Decoys()
    try:
        decoys = _plant(ingress, admin)
        ids, details = _run_recipe(admin, sql, stuck_invocation_id, decoys)
    finally:
        _clear(admin, decoys)
    others = [d["id"] for d in details if d["target_service_name"] != service]
    require(not others, f"your query also returns other services' invocations: {others}", "add a WHERE on the service")
    done = [d["id"] for d in details if d["status"] == "completed"]
    require(not done, f"your query also returns finished invocations: {done}", "add a WHERE on the status")
    unrelated = [d["id"] for d in details if _BOOKING not in str(d.get("last_failure") or "")]
    require(
        not unrelated,
        f"your query also returns invocations that did not fail on the {_BOOKING}: {unrelated}",
        f"add a WHERE on the last failure: last_failure LIKE '%{_BOOKING}%'",
    )
    return (
        f"your recipe found {len(ids)} stuck booking(s), among them yours and one the check left stuck just before, "
        f"and none of the {len(decoys.wrong)} decoys it planted: " + "; ".join(decoys.wrong.values()) + " (now killed)"
    )


_LAND = 10.0
"""Seconds a check waits for a cancel (or a resume) the learner has just sent to take effect, before it judges."""


def _cancel_requested(admin: Admin, invocation_id: str) -> bool:
    """Return True if the server has a cancel signal for the invocation (in its journal), not yet acted on."""
    rows = admin.query(
        f"SELECT entry_type FROM sys_journal WHERE id = {sql_literal(invocation_id)} "
        "AND entry_type = 'Notification: Signal'"
    )
    return bool(rows)


def _settled(admin: Admin, row: dict[str, Any]) -> dict[str, Any]:
    """Return the invocation's row once a cancel or kill just sent has landed (it ended), or after a short wait.

    A cancel takes effect at the invocation's next attempt: a stuck booking retries about once a second, so the check
    gives it `_LAND` seconds (within its deadline) before it judges.
    """
    deadline = time.monotonic() + _LAND
    while row["status"] != "completed" and time.monotonic() < deadline:
        remaining("the first message to end after your cancel")
        time.sleep(0.2)
        row = admin.invocation(row["id"]) or row
    return row


def _left_queue(admin: Admin, row: dict[str, Any]) -> dict[str, Any]:
    """Return the row of a message queued behind one that just ended, once it has started (or after a short wait)."""
    deadline = time.monotonic() + _LAND
    while row["status"] == "pending" and time.monotonic() < deadline:
        remaining("the second message to leave the queue")
        time.sleep(0.2)
        row = admin.invocation(row["id"]) or row
    return row


@exercise(6, 2)
def exercise_2(admin: Admin, first_id: str, second_id: str) -> str:
    """Two messages to one stuck session; you cancelled the first, and the second, queued behind it, took the key."""
    require(
        first_id != second_id, "you passed the same invocation twice", "pass the first message's id, then the second's"
    )
    first = _settled(admin, require_new(admin, first_id, "the first message"))
    require(
        admin.invocation(second_id) is not None or first["status"] == "completed",
        f"the server has no second message {second_id}, and the first still holds the key ({first['status']!r}): "
        "did you cancel the second one? A message cancelled while it waits in the queue is removed",
        "cancel the *first* one, the one that holds the key: admin.cancel(first_id)",
    )
    second = require_new(admin, second_id, "the second message")
    if first["status"] == "completed" and second["status"] == "pending":
        second = _left_queue(admin, second)
    require(
        first["target_service_name"] == second["target_service_name"] == SERVICE_NAME,
        f"the two messages went to {first['target_service_name']} and {second['target_service_name']}, "
        f"not both to {SERVICE_NAME}",
        f"send both to one stuck {SERVICE_NAME} session",
    )
    require(
        first["target_service_key"] == second["target_service_key"],
        "the two messages went to different keys",
        "send both to the same stuck session (the same key=...), the second while the first retries",
    )
    require(
        created_at(first["created_at"]) <= created_at(second["created_at"]),
        "you passed them in the wrong order: the second id was sent before the first",
        "pass the message you sent first (the one that holds the key) first",
    )
    failure = str(first.get("completion_failure") or "")
    require(
        first["status"] == "completed",
        f"the first message is {first['status']!r} {_LAND:g} s after the check started: it still holds the key"
        + (
            " (the server has your cancel, but the invocation has not acted on it yet)"
            if _cancel_requested(admin, first_id)
            else ", and the server has no cancel for it"
        ),
        "cancel it: admin.cancel(first_id), then run the check again",
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
        f"WHERE id = {sql_literal(invocation_id)} ORDER BY appended_at"
    )
    for row in rows:
        try:
            row["event"] = json.loads(row.get("event_json") or "{}")
        except ValueError:
            row["event"] = {}
    return rows


def _epoch(stamp: str) -> float:
    return created_at(stamp).replace(tzinfo=UTC).timestamp()


@exercise(6, 3)
def exercise_3(admin: Admin, invocation_id: str, retry_count_at_pause: int) -> str:
    """A stuck invocation you paused and resumed without a fix: it retries (and fails) again, the count goes on."""
    row = require_new(admin, invocation_id, "the invocation")
    require(
        isinstance(retry_count_at_pause, int) and retry_count_at_pause >= 1,
        f"you passed a retry count of {retry_count_at_pause!r} at the pause: a stuck invocation has retried at least "
        "once by then",
        "read it just before you pause: admin.invocation(id)['retry_count']. Once paused, its row shows no retry "
        "count (the server counts retries only while it retries); the ledger's booking attempts count them too",
    )
    if row["status"] == "paused":
        row = _settled_resume(admin, row)
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
    paused_at = _epoch(paused[0]["appended_at"])
    row = _went_on(admin, row, retry_count_at_pause, paused_at)
    attempts = effects_of(ATTEMPT_KIND, invocation_id=invocation_id)
    before = sum(1 for a in attempts if a.at <= paused_at)
    after = sum(1 for a in attempts if a.at > paused_at)
    if attempts:
        require(
            retry_count_at_pause <= before,
            f"you passed a retry count of {retry_count_at_pause} at the pause, but the ledger has only {before} "
            "booking attempt(s) of it before it was paused",
            "pass the retry_count you read just before you paused it",
        )
        require(
            after >= 1,
            "it has not tried the booking API again since you paused it (no booking attempt in the ledger after the "
            "pause)",
            "admin.resume(invocation_id), then wait a few seconds: it retries about once a second",
        )
    count = int(row.get("retry_count") or 0)
    require(
        count > retry_count_at_pause,
        f"its retry count is {count}, not more than the {retry_count_at_pause} it had when you paused it",
        "wait a few seconds after resume: it retries about once a second",
    )
    seen = f" (the ledger: {before} booking attempts before the pause, {after} after)" if attempts else ""
    return (
        f"paused, then resumed without a fix, it is {row['status']!r} again: {count} attempts, up from "
        f"{retry_count_at_pause}{seen}"
    )


def _went_on(admin: Admin, row: dict[str, Any], noted: int, paused_at: float) -> dict[str, Any]:
    """Return the row once it has retried after the pause (count past `noted`, a ledger attempt), or after a while.

    The server counts an attempt when it starts, and the agent records it in the ledger a moment later.
    """
    deadline = time.monotonic() + _LAND

    def went_on() -> bool:
        if int(row.get("retry_count") or 0) <= noted:
            return False
        attempts = effects_of(ATTEMPT_KIND, invocation_id=row["id"])
        return not attempts or any(a.at > paused_at for a in attempts)

    while row["status"] != "completed" and not went_on() and time.monotonic() < deadline:
        remaining("the invocation to retry again after your resume")
        time.sleep(0.2)
        row = admin.invocation(row["id"]) or row
    return row


def _settled_resume(admin: Admin, row: dict[str, Any]) -> dict[str, Any]:
    """Return the row once a resume just sent has landed (it is no longer paused), or after a short wait."""
    deadline = time.monotonic() + _LAND
    while row["status"] == "paused" and time.monotonic() < deadline:
        remaining("the invocation to leave 'paused' after your resume")
        time.sleep(0.2)
        row = admin.invocation(row["id"]) or row
    return row


_MODEL_CALL = "model_call"
"""The ledger's kind for a model call (agent_lib.models counts every one, offline or Gemini)."""

_KEEP_HINT = (
    "keep the journal up to the last booking's result: from_entry = the index of the entry just before the "
    "'call LLM' that follows the last 'Book room' (observe.journal_entries(admin, turn_id) lists them)"
)


def _finished(admin: Admin, invocation_id: str, what: str) -> dict[str, Any]:
    """Return the row of an invocation once it has completed (waiting briefly for one just restarted)."""
    row = admin.invocation(invocation_id)
    require(row is not None, f"the server has no invocation {invocation_id!r}", "pass the id you were given")
    assert row is not None
    deadline = time.monotonic() + _LAND
    while row["status"] != "completed" and time.monotonic() < deadline:
        remaining(f"{what} to finish")
        time.sleep(0.2)
        row = admin.invocation(invocation_id) or row
    require(
        row["status"] == "completed",
        f"{what} {invocation_id} is {row['status']!r}, not finished {_LAND:g} s after the check started",
        "wait for it (await ingress.aattach(id)); is the HotelAgent deployment it runs on still served?",
    )
    require(
        row.get("completion_result") == "success",
        f"{what} {invocation_id} failed: {row.get('completion_failure')}",
        "read the failure, fix the cause, and do the exercise again with a new guest",
    )
    return row


def _stays(bookings: list[Any]) -> str:
    return ", ".join(f"{b.detail.get('nights')} nights in {b.detail.get('city')}" for b in bookings)


@exercise(6, 4)
def exercise_4(ingress: Ingress, admin: Admin, turn_id: str, restarted_id: str) -> str:
    """A turn v1 answered wrongly, restarted as new on the fix after its bookings: none ran again, the model did."""
    require(
        turn_id != restarted_id,
        "you passed the same invocation twice",
        "pass the trip's turn first, then the id that admin.restart_as_new(turn_id, from_entry=...) returned",
    )
    turn = require_new(admin, turn_id, "the trip's turn")
    require(
        turn["target_service_name"] == hotel.SERVICE_NAME,
        f"{turn_id} is a {turn['target_service_name']} invocation, not a {hotel.SERVICE_NAME} one",
        "book the trip with ingress.send(hotel.SERVICE_NAME, 'run', 'Book 2 nights in Porto and 3 nights in Faro', "
        "key=<a new guest>), and pass its id",
    )
    require(
        turn.get("invoked_by") != "restart_as_new",
        f"{turn_id} is itself a restart (of {turn.get('restarted_from')}): pass the turn the guest sent first",
        "pass the id that ingress.send(...) gave you for the trip, then the restart's id",
    )
    _finished(admin, turn_id, "the trip's turn")
    bookings = effects_of(hotel.BOOKING_KIND, invocation_id=turn_id)
    require(
        len(bookings) >= 2,
        f"the trip's turn booked {len(bookings)} room(s) ({_stays(bookings) or 'none'}): the exercise's trip has two "
        "stays",
        "send 'Book 2 nights in Porto and 3 nights in Faro' to a new guest, with v1 served",
    )
    first = output(ingress, turn_id) or {}
    require(
        first.get("version") == "v1",
        f"the trip's turn was answered by {first.get('version')!r}, not by v1: its answer was right the first time, "
        "so there is nothing to regenerate",
        "serve hotel.service_v1 (and only it: v2 must not be the latest deployment yet), then send the trip again",
    )
    redo = _invocation_of(admin, restarted_id)
    require(
        redo.get("restarted_from") == turn_id,
        f"{restarted_id} is not a restart of the trip's turn: "
        + (
            f"it restarts {redo['restarted_from']}"
            if redo.get("restarted_from")
            else f"it was sent by {redo.get('invoked_by') or 'someone'}, as a new message"
        ),
        "restart the turn: new_id = admin.restart_as_new(turn_id, from_entry=...), and pass new_id",
    )
    _finished(admin, restarted_id, "the restart")
    again = effects_of(hotel.BOOKING_KIND, invocation_id=restarted_id)
    require(
        not again,
        f"the restart booked {len(again)} room(s) again ({_stays(again)}): it ran 'Book room' again, so the guest now "
        "has two bookings of it; you restarted from before the last booking's result"
        + (" (from the start)" if len(again) >= len(bookings) else ""),
        _KEEP_HINT,
    )
    result = output(ingress, restarted_id) or {}
    require(
        result.get("version") == "v2",
        f"the restart was answered by {result.get('version')!r}, not by the fix: you restarted the turn before v2 was "
        "the latest deployment, so the same prompt answered again",
        "serve the fix first (await serve_in_kernel([hotel.service_v2], admin=admin) registers it as the latest), "
        "then restart the turn again",
    )
    calls = effects_of(_MODEL_CALL, invocation_id=restarted_id)
    require(
        calls,
        "the model was not called again: your from_entry kept the model's answer too, so the old, wrong answer came "
        "back from the journal (even on v2)",
        _KEEP_HINT,
    )
    answer = str(result.get("answer") or "")
    if not uses_gemini():
        totals = [f"{hotel.NIGHTLY_EUR * int(b.detail.get('nights', 0))} EUR" for b in bookings]
        missing = [t for t in totals if t not in answer]
        require(
            not missing,
            f"the new answer does not quote the totals {missing}: {answer!r}",
            "restart on v2, whose prompt asks for the total of each stay",
        )
    return (
        f"restarted on v2: the {len(bookings)} bookings ({_stays(bookings)}) came from the journal, none ran again, "
        f"and the model answered again ({len(calls)} call(s)): {answer!r}"
    )


def _invocation_of(admin: Admin, invocation_id: str) -> dict[str, Any]:
    """Return an invocation's row, or fail saying the server has none."""
    require(
        isinstance(invocation_id, str) and invocation_id.startswith("inv_"),
        f"{invocation_id!r} is not an invocation id",
        "pass the id that admin.restart_as_new(...) returned",
    )
    row = admin.invocation(invocation_id)
    require(row is not None, f"the server has no invocation {invocation_id!r}", "pass the id restart_as_new returned")
    assert row is not None
    return row
