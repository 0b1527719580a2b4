"""Checks for lesson 03's exercises: the per-key queue, a memory kept by compaction, forgetting on request.

Run `check.lesson_03.begin(admin)` before the exercises: the checks then judge only the keys and deployments made after
it, and refuse the lesson's own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from .._sql import sql_literal
from ..clients import Admin, Ingress
from ..sessions import session_events, state_key, stored_session, user_messages
from . import _core
from ._core import (
    Began,
    began,
    call,
    created_at,
    exercise,
    fresh_key,
    require,
    require_new_deployment,
    require_not_stuck,
    require_service,
    rerun_hint,
    rerun_of_begin,
)

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]

_QUEUED = {"pending", "inboxed", "scheduled", "ready"}
_RUNNING = {"running", "backing-off", "suspended", "paused"}
_STATUSES = _QUEUED | _RUNNING | {"completed"}
_CHAT_SERVICES = ("ChatAgent", "SummarizingChatAgent", "CompactChatAgent")
_LESSON_NAME = "Ada"
TURNS = 30
"""The turns exercise 2 asks for: conversation(30, name=...)."""


def begin(admin: Admin) -> Began:
    """Begin lesson 03's exercises now (server time): the checks then judge only keys and deployments made after."""
    return _core.begin(3, admin)


def _before_began(value: str | None) -> bool:
    return value is not None and created_at(value) < began().at


def _old_key(key: str, made: str, what: str) -> tuple[str, str]:
    """Say why a key's work from before begin() is refused: begin() run again, or a key of the lesson's own."""
    rerun = rerun_of_begin(3, created_at(made))
    if rerun:
        return f"{what} under {key!r} began before the exercises did, because {rerun}", rerun_hint(3)
    return f"{what} under {key!r} began before the exercises did: is it a key of the lesson's own cells?", ""


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _ms(value: str) -> str:
    return f"{_time(value):%H:%M:%S.%f}"[:-3]


def _services_with_key(admin: Admin, key: str) -> list[str]:
    rows = admin.query(
        f"SELECT DISTINCT target_service_name AS s FROM sys_invocation WHERE target_service_key = {sql_literal(key)}"
    )
    return sorted(str(r["s"]) for r in rows)


@exercise(3, 1)
def exercise_1(admin: Admin, key: str, statuses: Sequence[str], *, service: str = "ChatAgent") -> str:
    """Three messages sent at once to one new key: one at work, the others queued; they ran one by one."""
    rows = admin.query(
        "SELECT id, status, created_at, running_at, completed_at FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} AND target_service_key = {sql_literal(key)} "
        "ORDER BY created_at"
    )
    if not rows:
        elsewhere = _services_with_key(admin, key)
        require(
            not elsewhere,
            f"the key {key!r} has messages on {', '.join(elsewhere)}, not on {service}",
            f'send the three messages to {service}: ingress.send("{service}", "run", "Plan a trip to ...", key=key)',
        )
    require(
        rows,
        f"{service} has no message under the key {key!r}",
        "send three messages with ingress.send(...) to one new key, one right after the other, and pass that key",
    )
    old = [r for r in rows if _before_began(r["created_at"])]
    if old:
        why, hint = _old_key(key, old[-1]["created_at"], f"{len(old)} of the {len(rows)} messages")
        require(
            False,
            f"the key {key!r} was used before the exercises began: {why}",
            hint or 'send your three messages to a new key, e.g. key = f"queue-{uuid.uuid4().hex[:6]}"',
        )
    require(
        len(rows) >= 3,
        f"{service} has {len(rows)} message(s) under the key {key!r}, not 3",
        "send three messages with ingress.send(...) to that one key, one right after the other",
    )
    for row in rows:
        require_not_stuck(admin, row["id"], f"your message {row['id']}")
    require(
        all(r["status"] == "completed" for r in rows),
        f"not all of them have finished: {[r['status'] for r in rows]}",
        "wait for each of them with ingress.attach(id) before you check (each takes about a second)",
    )
    late = [
        (n + 2, b, a)
        for n, (a, b) in enumerate(zip(rows, rows[1:], strict=False))
        if _time(b["created_at"]) >= _time(a["completed_at"])
    ]
    if late:
        n, b, a = late[0]
        require(
            False,
            f"the server saw no queue: message {n} of {key!r} arrived at {_ms(b['created_at'])}, after message "
            f"{n - 1} had finished (at {_ms(a['completed_at'])}), so it never waited ({len(late)} of the "
            f"{len(rows) - 1} later messages arrived after the one before them had finished)",
            "send all three with ingress.send(...), one right after the other, before you wait for any of them "
            "(ingress.call waits for each answer, so its messages never queue)",
        )
    runs = sorted(rows, key=lambda r: _time(r["running_at"]))
    overlaps = [
        (a["id"], b["id"])
        for a, b in zip(runs, runs[1:], strict=False)
        if _time(b["running_at"]) < _time(a["completed_at"])
    ]
    require(
        not overlaps,
        f"two messages of one key ran at the same time: {overlaps}",
        "serve the chat as a restate.VirtualObject (not a Service): Restate then runs one message of a key at a time",
    )
    seen = [str(s).strip().lower() for s in statuses]
    require(
        len(seen) == len(rows),
        f"you passed {len(seen)} status(es) for the {len(rows)} messages of {key!r}: pass one per message, "
        "in the order you sent them",
        "statuses = [admin.status(s.invocation_id) for s in sent], right after the sends",
    )
    unknown = [s for s in seen if s not in _STATUSES]
    require(
        not unknown,
        f"{unknown} is not a status Restate reports (it says e.g. 'running', 'pending', 'completed')",
        "pass what admin.status(id) returned, as it returned it",
    )
    require(
        not all(s == "completed" for s in seen),
        f"you saw {seen}: all of them had already finished, so you did not see the queue",
        "read the statuses right after the sends, before ingress.attach (each trip plan takes a second)",
    )
    running = [s for s in seen if s in _RUNNING]
    queued = [s for s in seen if s in _QUEUED]
    require(
        len(running) <= 1,
        f"you passed {seen}: {len(running)} messages of one key running at once, which Restate never does",
        "pass the statuses admin.status(id) returned right after the sends, one per message",
    )
    require(
        queued,
        f"you saw {seen}: none of them queued",
        "read the statuses right after the sends, before the first one finishes (each trip plan takes a second)",
    )
    first_queued = next(i for i, s in enumerate(seen) if s in _QUEUED)
    ahead = seen[:first_queued]
    require(
        all(s in _QUEUED for s in seen[first_queued:]) and all(s == "completed" for s in ahead[:-1]),
        f"in the order you sent them, {seen} has a message that ran after one still queued ahead of it: the "
        "key's queue is first in, first out",
        "pass the statuses in the order of your sends: [admin.status(s.invocation_id) for s in sent]",
    )
    at_work = f"{len(running)} at work" if running else "none started yet"
    return (
        f"right after sending you saw {seen}: {at_work}, {len(queued)} queued behind it; "
        f"the {len(rows)} messages to {key!r} then ran one after another"
    )


@exercise(3, 2)
def exercise_2(ingress: Ingress, admin: Admin, key: str, name: str, *, service: str = "CompactChatAgent") -> str:
    """A long conversation of yours on the compacting agent: the name lives on only in the summary, and is recalled."""
    name = str(name).strip()
    require(name, "you passed no name", "pass the name you gave conversation(30, name=...)")
    require(
        name != _LESSON_NAME,
        f"{_LESSON_NAME} is the lesson's own name (its conversations all start with it)",
        'run conversation(30, name="<a name of your own>") against CompactChatAgent on a new key, and pass both',
    )
    session = stored_session(admin, service, key)
    if session is None:
        elsewhere = [s for s in _CHAT_SERVICES if s != service and stored_session(admin, s, key) is not None]
        require(
            not elsewhere,
            f"the key {key!r} holds a conversation on {', '.join(elsewhere)}, not on {service}",
            f"run it against {service}, the agent that compacts and drops what the summary replaces",
        )
    require(
        session is not None,
        f"{service} has no stored session under the key {key!r}",
        f'for message in conversation(30, name="{name}"): ingress.call("{service}", "run", message, key=key)',
    )
    assert session is not None
    turns = admin.query(
        "SELECT created_at FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} AND target_service_key = {sql_literal(key)} "
        "AND target_handler_name = 'run' ORDER BY created_at"
    )
    if turns and _before_began(turns[0]["created_at"]):
        why, hint = _old_key(key, turns[0]["created_at"], "the conversation")
        require(False, why, hint or f'run conversation({TURNS}, name="{name}") on a new key')
    require(
        len(turns) >= TURNS,
        f"{service} had {len(turns)} turn(s) under {key!r}, not the {TURNS} the exercise asks for "
        f"({TURNS - len(turns)} missing)",
        f'for message in conversation({TURNS}, name="{name}"): ingress.call("{service}", "run", message, key=key) '
        "(on a new key, so that the first message is the one with your name)",
    )
    events = session_events(session)
    summaries = [s for s in events["summary"] if s]
    require(
        summaries,
        f"the stored session of {key!r} has {len(events)} events and no summary yet",
        "send more turns (30 or so): compaction starts once the prompt passes the token threshold",
    )
    word = re.compile(rf"\b{re.escape(name)}\b")
    require(
        word.search(summaries[-1]),
        f"the latest summary does not name {name!r}: {summaries[-1][:200]!r}",
        "pass the exact name you gave conversation(30, name=...): it starts with a capital letter",
    )
    require(
        not any(name in m and "name is" in m for m in user_messages(session)),
        "your first message, with your name, is still stored as it was",
        "use the compacting agent (CompactChatAgent), which drops what a summary replaces",
    )
    _, reply = call(ingress, service, "run", "What is my name?", key=key)
    require(
        isinstance(reply, str) and word.search(reply),
        f"asked 'What is my name?', the agent answered {reply!r}",
        "the name must survive in the summary: run the whole conversation on this key",
    )
    return (
        f"{len(events)} events are stored, your first message is gone, the summary names {name}, "
        f"and asked for your name the agent answered {reply!r}"
    )


@exercise(3, 3)
def exercise_3(ingress: Ingress, admin: Admin, *, service: str = "MyChatAgent", handler: str = "forget") -> str:
    """Your chat service forgets on request: after `forget`, the session's state is gone and so is the name."""
    require_service(admin, service)
    info = admin.service(service)
    handlers = sorted(h.get("name", "") for h in info.get("handlers", []))
    require(
        "VirtualObject" in str(info.get("ty", "")),
        f"{service} is a {info.get('ty')}, not a virtual object: it has no state to keep a session in",
        f'declare it with restate.VirtualObject("{service}")',
    )
    require(
        "run" in handlers and handler in handlers,
        f"{service} has the handlers {handlers}, not both 'run' and {handler!r}",
        f"give your chat service a `run` handler (the chat agent) and a `{handler}` handler that clears the session",
    )
    require_new_deployment(admin, service, "serve your own chat service now, with serve_in_kernel([...], admin=admin)")
    key = fresh_key("forget")
    told, _ = call(ingress, service, "run", "Hi, my name is Zoe.", key=key)
    steps = admin.steps(told)
    require(
        "call LLM" in steps,
        f"{service}/run journaled no model call (its steps: {steps or 'none'}): its App has no RestatePlugin()",
        "build the App with plugins=[RestatePlugin()] (from restate.ext.adk), as the exercise says, and serve it again",
    )
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
