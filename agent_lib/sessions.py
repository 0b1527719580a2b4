"""Look at durable sessions from outside: stored state, queueing, growth. Lesson 03.

`RestateSessionService` keeps each ADK session as one state value of the agent's virtual
object, `session_store::<session id>`, and stores it whole after every turn. These helpers
read that value through the admin API's `state` table, time messages sent at once, and
measure how the stored session and the turn latency grow with a conversation (the growth
measurement is also what the benchmark reuses).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import cycle, islice
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._sql import sql_literal
from .clients import Admin, Ingress

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CITIES",
    "compare_growth",
    "DEFAULT_SESSION_ID",
    "conversation",
    "measure_growth",
    "plot_growth",
    "plot_timeline",
    "run_concurrently",
    "session_events",
    "session_size",
    "state_key",
    "stored_session",
    "user_messages",
]

DEFAULT_SESSION_ID = "session"
"""The session id the course's agents use for every object key."""

CITIES = ("Lisbon", "Porto", "Seville", "Kyoto", "Oslo", "Lima", "Quebec", "Hanoi", "Dakar", "Tbilisi")


def state_key(session_id: str = DEFAULT_SESSION_ID) -> str:
    """Return the state key RestateSessionService stores a session under."""
    return f"session_store::{session_id}"


def session_size(admin: Admin, service: str, key: str, session_id: str = DEFAULT_SESSION_ID) -> int:
    """Return the stored session's size in bytes (0 if there is none yet)."""
    rows = admin.query(
        "SELECT length(value) AS bytes FROM state "
        f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)} "
        f"AND key = {sql_literal(state_key(session_id))}"
    )
    return int(rows[0]["bytes"]) if rows else 0


def stored_session(admin: Admin, service: str, key: str, session_id: str = DEFAULT_SESSION_ID) -> dict[str, Any] | None:
    """Return the stored ADK session (as JSON) of one object key, or None if it has none."""
    value = admin.state(service, key).get(state_key(session_id))
    return None if value is None else dict(json.loads(value))


def session_events(session: dict[str, Any]) -> pd.DataFrame:
    """Return a stored session's events, one row each: author, text, tool calls, summary."""
    rows = []
    for event in session.get("events", []):
        parts = (event.get("content") or {}).get("parts") or []
        compaction = (event.get("actions") or {}).get("compaction")
        summary = compaction and (compaction.get("compacted_content") or {}).get("parts") or []
        rows.append(
            {
                "author": event.get("author"),
                "text": " ".join(p["text"] for p in parts if p.get("text")),
                "tool_calls": [p["function_call"]["name"] for p in parts if p.get("function_call")],
                "summary": " ".join(p["text"] for p in summary if p.get("text")),
                "bytes": len(json.dumps(event)),
            }
        )
    return pd.DataFrame(rows, columns=["author", "text", "tool_calls", "summary", "bytes"])


def user_messages(session: dict[str, Any]) -> list[str]:
    """Return the user's messages stored in a session, in stored order."""
    events = session_events(session)
    return [t for t in events[events["author"] == "user"]["text"] if t]


def conversation(turns: int, name: str = "Ada") -> list[str]:
    """Return a conversation of `turns` messages: the user's name, then cities to visit."""
    if turns < 1:
        raise ValueError(f"a conversation needs at least one turn, not {turns}")
    visits = (f"I would like to visit {city}." for city in cycle(CITIES))
    return [f"Hi, my name is {name}.", *islice(visits, turns - 1)]


def _turn(
    ingress: Ingress, admin: Admin, service: str, key: str, message: str, handler: str, session_id: str
) -> tuple[float, int, Any]:
    start = time.perf_counter()
    reply = ingress.call(service, handler, message, key=key)
    seconds = time.perf_counter() - start
    return seconds, session_size(admin, service, key, session_id), reply


_GROWTH_COLUMNS = ["turn", "seconds", "stored_bytes", "reply"]


def measure_growth(
    ingress: Ingress,
    admin: Admin,
    service: str,
    key: str,
    messages: Sequence[str],
    *,
    handler: str = "run",
    session_id: str = DEFAULT_SESSION_ID,
) -> pd.DataFrame:
    """Send `messages` one by one to one session; return each turn's latency and stored size.

    Columns: turn (1-based), seconds (the call's wall time), stored_bytes (the session's
    size after the turn), reply.
    """
    rows = [
        (turn, *_turn(ingress, admin, service, key, message, handler, session_id))
        for turn, message in enumerate(messages, start=1)
    ]
    return pd.DataFrame(rows, columns=_GROWTH_COLUMNS)


def compare_growth(
    ingress: Ingress,
    admin: Admin,
    keys: dict[str, str],
    messages: Sequence[str],
    *,
    handler: str = "run",
    session_id: str = DEFAULT_SESSION_ID,
) -> dict[str, pd.DataFrame]:
    """Measure growth like `measure_growth` for several {service: key}, taking turns between them.

    Turn 1 goes to every service, then turn 2, and so on, so a busy moment on the machine
    slows all of them alike and their latencies stay comparable.
    """
    rows: dict[str, list[tuple[Any, ...]]] = {service: [] for service in keys}
    for turn, message in enumerate(messages, start=1):
        for service, key in keys.items():
            rows[service].append((turn, *_turn(ingress, admin, service, key, message, handler, session_id)))
    return {service: pd.DataFrame(r, columns=_GROWTH_COLUMNS) for service, r in rows.items()}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_concurrently(
    ingress: Ingress,
    admin: Admin,
    service: str,
    jobs: Sequence[tuple[str, str]],
    *,
    handler: str = "run",
) -> pd.DataFrame:
    """Send every (key, message) job at once, in order, wait for all; return the server's timings.

    Columns: key, message, reply, invocation_id, and seconds since the first job was
    accepted: created (accepted), started (began running) and finished.
    """
    if not jobs:
        raise ValueError("give at least one (key, message) job")
    sent = [ingress.send(service, handler, message, key=key) for key, message in jobs]
    with ThreadPoolExecutor(max_workers=len(sent)) as pool:
        replies = list(pool.map(lambda s: ingress.attach(s.invocation_id), sent))
    rows = []
    for (key, message), send, reply in zip(jobs, sent, replies, strict=True):
        row = admin.invocation(send.invocation_id)
        if row is None:
            raise RuntimeError(f"the server has no record of invocation {send.invocation_id}: was it purged?")
        rows.append(
            {
                "key": key,
                "message": message,
                "reply": reply,
                "invocation_id": send.invocation_id,
                "created": _time(row["created_at"]),
                "started": _time(row["running_at"]),
                "finished": _time(row["completed_at"]),
            }
        )
    frame = pd.DataFrame(rows)
    origin = frame["created"].min()
    for column in ("created", "started", "finished"):
        frame[column] = (frame[column] - origin).dt.total_seconds()
    return frame


def plot_timeline(runs: dict[str, pd.DataFrame]) -> Figure:
    """Draw each run of `run_concurrently` as bars from start to finish, one row per message."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 2.6), sharex=True, squeeze=False)
    for ax, (title, frame) in zip(axes[0], runs.items(), strict=True):
        labels = [f"{i}. {m[:30]}" for i, m in enumerate(frame["message"], start=1)]
        ax.barh(labels, frame["finished"] - frame["started"], left=frame["started"], color="tab:blue")
        ax.barh(labels, frame["started"] - frame["created"], left=frame["created"], color="tab:gray", alpha=0.4)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.set_xlabel("seconds (grey: waiting in the queue, blue: running)")
    fig.tight_layout()
    return fig


def plot_growth(growth: dict[str, pd.DataFrame]) -> Figure:
    """Plot stored size and turn latency (a rolling median of 5 turns) against the turn, one line per agent."""
    import matplotlib.pyplot as plt

    fig, (size_ax, time_ax) = plt.subplots(1, 2, figsize=(11, 3.4))
    for label, frame in growth.items():
        size_ax.plot(frame["turn"], frame["stored_bytes"] / 1024, label=label)
        latency = frame["seconds"].rolling(5, min_periods=1).median() * 1000
        time_ax.plot(frame["turn"], latency, label=label)
    size_ax.set(title="stored session", xlabel="turn", ylabel="KiB")
    time_ax.set(title="turn latency (median of 5 turns)", xlabel="turn", ylabel="ms")
    time_ax.set_ylim(bottom=0)
    size_ax.legend()
    fig.tight_layout()
    return fig
