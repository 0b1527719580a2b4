"""Checks for lesson 03's exercises: the per-key queue, a memory kept by compaction, forgetting on request."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..clients import Admin, Ingress
from ..sessions import session_events, state_key, stored_session, user_messages
from ._core import call, exercise, fresh_key, require, require_service

__all__ = ["exercise_1", "exercise_2", "exercise_3"]

_QUEUED = {"pending", "inboxed", "scheduled", "ready"}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@exercise(3, 1)
def exercise_1(admin: Admin, key: str, statuses: Sequence[str], *, service: str = "ChatAgent") -> str:
    """Three messages sent at once to one key: you saw one running and the others queued; they ran one by one."""
    rows = admin.query(
        "SELECT id, status, running_at, completed_at FROM sys_invocation "
        f"WHERE target_service_name = {_sql(service)} AND target_service_key = {_sql(key)} ORDER BY created_at"
    )
    require(
        len(rows) >= 3,
        f"{service} has {len(rows)} invocation(s) under the key {key!r}, not 3 or more",
        "send three messages with ingress.send(...) to one new key, one right after the other",
    )
    require(
        all(r["status"] == "completed" for r in rows),
        f"not all of them have finished: {[r['status'] for r in rows]}",
        "wait for them with ingress.attach(id) before you check",
    )
    runs = sorted(rows, key=lambda r: _time(r["running_at"]))
    overlaps = [
        (a["id"], b["id"])
        for a, b in zip(runs, runs[1:], strict=False)
        if _time(b["running_at"]) < _time(a["completed_at"])
    ]
    require(not overlaps, f"two messages of one key ran at the same time: {overlaps}")
    seen = [s for s in statuses if s]
    running = [s for s in seen if s in {"running", "backing-off", "suspended"}]
    queued = [s for s in seen if s in _QUEUED]
    require(
        len(seen) >= 3,
        f"you passed {len(seen)} statuses: pass the status of each of the three, queried right after sending",
        "statuses = [admin.status(s.invocation_id) for s in sent]",
    )
    require(
        len(running) <= 1,
        f"you saw {len(running)} of them running at once ({seen})",
        "query again right after the sends: on one key only one message runs at a time",
    )
    require(
        queued,
        f"you saw {seen}: none of them queued",
        "query right after sending, before the first one finishes (each trip plan takes a second)",
    )
    return (
        f"you saw {seen}: one at work, the others '{queued[0]}' in the key's queue; "
        f"the {len(rows)} messages then ran one after another"
    )


@exercise(3, 2)
def exercise_2(ingress: Ingress, admin: Admin, key: str, name: str, *, service: str = "CompactChatAgent") -> str:
    """A long conversation of yours on the compacting agent: the name lives on only in the summary, and is recalled."""
    session = stored_session(admin, service, key)
    require(
        session is not None,
        f"{service} has no stored session under the key {key!r}",
        "run your conversation with conversation(TURNS, name=...) against that key",
    )
    assert session is not None
    events = session_events(session)
    summaries = [s for s in events["summary"] if s]
    require(
        summaries,
        f"the stored session of {key!r} has {len(events)} events and no summary yet",
        "send more turns (30 or so): compaction starts once the prompt passes the token threshold",
    )
    require(
        name in summaries[-1],
        f"the latest summary does not mention {name!r}: {summaries[-1][:200]!r}",
        'start the conversation with "Hi, my name is <name>." and pass that name',
    )
    require(
        not any(name in m and "name is" in m for m in user_messages(session)),
        "your first message, with your name, is still stored as it was",
        "use the compacting agent (CompactChatAgent), which drops what a summary replaces",
    )
    _, reply = call(ingress, service, "run", "What is my name?", key=key)
    require(isinstance(reply, str) and name in reply, f"asked 'What is my name?', the agent answered {reply!r}")
    return f"only {len(events)} events are stored, your name survives in the summary, and the agent answered {reply!r}"


@exercise(3, 3)
def exercise_3(ingress: Ingress, admin: Admin, *, service: str = "MyChatAgent", handler: str = "forget") -> str:
    """Your chat service forgets on request: after `forget`, the session's state is gone and so is the name."""
    require_service(admin, service)
    key = fresh_key("forget")
    call(ingress, service, "run", "Hi, my name is Zoe.", key=key)
    require(
        state_key() in admin.state(service, key),
        f"after one message, {service}/{key} stores no {state_key()!r}",
        "run the agent with RestateSessionService and session_id='session'",
    )
    call(ingress, service, handler, None, key=key)
    left = admin.state(service, key)
    require(
        state_key() not in left,
        f"after {handler}, the state still has {sorted(left)}",
        f'in {handler}, call ctx.clear("{state_key()}") (or ctx.clear_all())',
    )
    _, reply = call(ingress, service, "run", "What is my name?", key=key)
    require(
        not (isinstance(reply, str) and "Zoe" in reply),
        f"after {handler}, the agent still answered {reply!r}",
        "the session must be gone from state, not only from the agent's memory in this process",
    )
    held = sorted(left) or "nothing"
    return f"told its name, then {handler}, the agent answered {reply!r}; its state holds {held}"
