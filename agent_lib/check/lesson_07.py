"""Checks for lesson 07's exercises: a third deployment beside the second, a kill instead of a fix, a resume on v3.

Run `check.lesson_07.begin(admin)` before the exercises: the checks then judge only the refunds made after it, and
refuse the lesson's own.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from .._sql import sql_literal
from ..agents.versioned import SERVICE_NAME
from ..clients import Admin, Ingress, RestateError
from . import _core
from ._core import (
    Began,
    Fail,
    completed,
    created_at,
    deployment_of,
    exercise,
    listening,
    output,
    remaining,
    require,
    require_new,
)

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]


def begin(admin: Admin) -> Began:
    """Begin lesson 07's exercises now (server time): the checks then judge only the refunds made after it."""
    return _core.begin(7, admin)


def _refund(admin: Admin, invocation_id: str, what: str) -> dict[str, Any]:
    row = require_new(admin, invocation_id, what)
    require(
        row["target_service_name"] == SERVICE_NAME,
        f"{what} {invocation_id} is a {row['target_service_name']} invocation, not a {SERVICE_NAME} refund",
        f'send refunds with ingress.send("{SERVICE_NAME}", "run", "Refund 40 GBP for order 1", key=...)',
    )
    return row


_LAND = 10.0
"""Seconds a check waits for a resume the learner has just sent to take effect, before it judges."""


def _require_started(admin: Admin, row: dict[str, Any], what: str) -> None:
    """Fail if the refund never started on any deployment, and say why (the latest one is not served)."""
    if row.get("pinned_deployment_id"):
        return
    if row.get("status") == "completed" and not row.get("last_failure"):
        return
    try:
        latest = deployment_of(admin, SERVICE_NAME)
    except RestateError:
        latest = {}
    served = listening(str(latest.get("uri", "")))
    where = f"{SERVICE_NAME}'s latest deployment, {latest.get('id')} at {latest.get('uri')}"
    raise Fail(
        f"{what} {row['id']} never started on a deployment (its row has no pinned_deployment_id; it is "
        f"{row.get('status')!r}): it was sent to {where}"
        + (", and nothing listens there (a v3 served in this kernel and stopped?)" if served is False else ""),
        "make v2 the latest deployment again, `admin.register(v2.url)` (exercise 1's last step), then kill this "
        "refund (admin.kill(id)) and send a new one",
    )


def _require_done(admin: Admin, row: dict[str, Any], what: str) -> dict[str, Any]:
    """Fail unless the refund has finished, saying what it waits on (never a hint that blocks)."""
    if row.get("status") == "completed":
        return row
    _require_started(admin, row, what)
    key = str(row.get("target_service_key"))
    waiting = admin.query(
        f"SELECT key FROM state WHERE service_name = {sql_literal(SERVICE_NAME)} AND service_key = {sql_literal(key)} "
        "AND key = 'approval'"
    )
    if waiting:
        raise Fail(
            f"{what} {row['id']} still waits for its approval",
            f'approve it: ingress.resolve_awakeable(await observe.await_state(admin, SERVICE_NAME, "{key}", '
            '"approval"), True), then run the check again once it has finished',
        )
    failure = f", its last failure: {_first_line(row.get('last_failure'))}" if row.get("last_failure") else ""
    raise Fail(
        f"{what} {row['id']} is {row.get('status')!r}, not finished yet{failure}",
        "read admin.invocation(id) (status, last_failure) to see why; run the check again once it has finished",
    )


def _deployment_created(admin: Admin, deployment_id: str) -> datetime:
    try:
        dep = deployment_of(admin, deployment_id=deployment_id)
    except RestateError:
        dep = {}
    require(
        dep.get("created_at"),
        f"the server has no deployment {deployment_id!r} (was it removed, or stopped and removed?)",
        "pass the deployment_id of the deployment you started for this exercise, while it is still registered",
    )
    return created_at(str(dep["created_at"]))


def _failures(admin: Admin, invocation_id: str) -> list[dict[str, Any]]:
    rows = admin.query(
        "SELECT event_type, appended_at, event_json FROM sys_journal_events "
        f"WHERE id = {sql_literal(invocation_id)} ORDER BY appended_at"
    )
    events = []
    for row in rows:
        try:
            event = json.loads(row.get("event_json") or "{}")
        except ValueError:
            event = {}
        events.append({**event, "event_type": row["event_type"], "appended_at": row["appended_at"]})
    return events


def _first_line(text: Any) -> str:
    return (str(text or "").strip().splitlines() or ["no failure recorded"])[0]


def _stuck_on_gbp(events: list[dict[str, Any]]) -> bool:
    return any(
        e["event_type"] == "TransientError"
        and e.get("related_command_name") == "Issue refund"
        and "GBP" in str(e.get("error_message", ""))
        for e in events
    )


@exercise(7, 1)
def exercise_1(
    ingress: Ingress, admin: Admin, old_invocation_id: str, new_invocation_id: str, new_deployment_id: str
) -> str:
    """A refund started before your v3 deployment finished where it started; a new one ran on v3."""
    _require_done(admin, _refund(admin, old_invocation_id, "the old refund"), "the old refund")
    _require_done(admin, _refund(admin, new_invocation_id, "the new refund"), "the new refund")
    old = completed(admin, old_invocation_id, success=True)
    new = completed(admin, new_invocation_id, success=True)
    deployed = _deployment_created(admin, new_deployment_id)
    require(
        new.get("pinned_deployment_id") == new_deployment_id,
        f"the new refund ran on {new.get('pinned_deployment_id')}, not on {new_deployment_id}",
        "register the new deployment first (serve_in_kernel registers it), then send the new request",
    )
    new_out = output(ingress, new_invocation_id)
    require(
        isinstance(new_out, dict) and str(new_out.get("version", "")).startswith("v3"),
        f"the new refund finished with {new_out!r}: not v3's code",
        'serve v3 in the kernel: v3 = await serve_in_kernel([make_service("v3")], admin=admin)',
    )
    require(
        old.get("pinned_deployment_id") != new_deployment_id,
        "the old refund is pinned to your new deployment too: it started after you deployed v3",
        "send the old refund first and let it wait for its approval; deploy v3 only then",
    )
    require(
        created_at(old["created_at"]) < deployed,
        "the old refund was created after your new deployment was registered",
        "send the old refund first, deploy v3 while it waits for its approval",
    )
    require(
        created_at(old["completed_at"]) > deployed,
        "the old refund had finished before your new deployment was registered: it was not in flight during the "
        "deployment",
        "approve the old refund only after v3 is up",
    )
    old_out = output(ingress, old_invocation_id)
    require(
        isinstance(old_out, dict) and old_out.get("version") != new_out.get("version"),
        f"both finished with the same code: {old_out!r} and {new_out!r}",
        'serve v3 with its own version (make_service("v3")), and leave the old refund on the deployment it started on',
    )
    return (
        f"the old refund, in flight while v3 was deployed, finished on {old['pinned_deployment_id']} "
        f"({old_out['version']}); the new one on {new_deployment_id} ({new_out['version']})"
    )


@exercise(7, 2)
def exercise_2(admin: Admin, invocation_id: str) -> str:
    """A GBP refund stuck on v2 that you killed instead of fixing: it ended at once, with an error for its caller."""
    row = _refund(admin, invocation_id, "the refund")
    _require_started(admin, row, "the refund")
    require(
        row["status"] == "completed",
        f"it is {row['status']!r}, not ended",
        "kill it: admin.kill(invocation_id), then wait until it is completed",
    )
    failure = str(row.get("completion_failure") or "")
    require(
        row.get("completion_result") == "failure",
        "it finished with success: it was never stuck",
        "send a GBP refund to v2 and approve it: v2 has no GBP rate, so 'Issue refund' fails on every attempt",
    )
    require(
        "killed" in failure.lower(),
        f"it ended with {failure!r}, not by a kill",
        "kill it (admin.kill), do not cancel it",
    )
    require(
        _stuck_on_gbp(_failures(admin, invocation_id)),
        "it never failed in 'Issue refund' on GBP: you killed it before it was stuck (did you approve it? was it a "
        "GBP refund on v2?)",
        "approve it, wait until 'Issue refund' has failed a few times (observe.wait_for_retries), then kill it",
    )
    return f"it failed in 'Issue refund' on GBP, then was killed: its caller gets {failure!r}"


@exercise(7, 3)
def exercise_3(ingress: Ingress, admin: Admin, invocation_id: str, deployment_id: str) -> str:
    """The stuck refund, paused, then resumed on the v3 deployment you put beside v2: it finished there, with v3."""
    row = _refund(admin, invocation_id, "the refund")
    _require_started(admin, row, "the refund")
    deadline = time.monotonic() + _LAND
    while row["status"] != "completed" and time.monotonic() < deadline:
        if row["status"] != "paused" and row.get("pinned_deployment_id") != deployment_id:
            break
        remaining("the refund to finish after your resume")
        time.sleep(0.2)
        row = admin.invocation(invocation_id) or row
    events = _failures(admin, invocation_id)
    if row["status"] != "completed":
        require(
            row["status"] != "paused",
            "it is still paused",
            "resume it on your v3 deployment: admin.resume(invocation_id, deployment_id=v3.deployment_id)",
        )
        require(
            False,
            f"it is {row['status']!r}, still failing ({_first_line(row.get('last_failure'))}): it runs on "
            f"{row.get('pinned_deployment_id')}, not on {deployment_id}",
            "pause it again, then resume it *on v3*: admin.resume(invocation_id, deployment_id=v3.deployment_id)",
        )
    row = completed(admin, invocation_id, success=True)
    deployed = _deployment_created(admin, deployment_id)
    require(
        created_at(row["created_at"]) < deployed,
        "this refund started after the deployment you pass was registered: it ran there from the start, it was "
        "not moved",
        "start a GBP refund on v2, let it get stuck, pause it, deploy v3, then resume it on v3",
    )
    require(
        _stuck_on_gbp(events),
        "it never failed in 'Issue refund' on GBP: it was not stuck on v2",
        "send a GBP refund to v2 and approve it, wait until it fails, then pause it",
    )
    require(
        any(e["event_type"] == "Paused" for e in events),
        "it was never paused",
        "pause it first (admin.pause), then resume it on v3 (admin.resume(id, deployment_id=...))",
    )
    require(
        row.get("pinned_deployment_id") == deployment_id,
        f"it finished on {row.get('pinned_deployment_id')}, not on {deployment_id}",
        "admin.resume(invocation_id, deployment_id=...) resumes it on the deployment you name",
    )
    result = output(ingress, invocation_id)
    require(
        isinstance(result, dict) and str(result.get("version", "")).startswith("v3"),
        f"it answered {result!r}, not with v3's code",
        "deploy v3 (agent_lib.agents.versioned:service_v3) and resume on that deployment",
    )
    return (
        f"stuck on v2, paused, then resumed on {deployment_id}: it finished with {result['version']}: "
        f"{result.get('answer')!r}"
    )
