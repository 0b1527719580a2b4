"""A booking agent whose booking API is down until you flip a switch: lesson 06.

The tool `book_flight` calls the "booking API" inside a durable step named
"Call booking API". While the API is down the step raises an ordinary exception, so
Restate retries the invocation again and again: a live agent stuck retrying, on which
lesson 06 tries kill, cancel and pause/resume. The switch is a file per session key
(`set_booking_api(key, up=True)`), so a separate agent process sees it too.

Each attempt is recorded in the ledger as kind "booking_attempt", and the handler keeps
a `status` state value ("working", then "booked" or "cancelled"), so a lesson can show
what each control action does to the effects and to the state.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from .._paths import data_dir
from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import final_text, require_message, user_message

__all__ = [
    "ATTEMPT_KIND",
    "FLAKY_RETRY_POLICY",
    "SERVICE_NAME",
    "book_flight",
    "booking_api_up",
    "flaky_script",
    "flaky_service",
    "set_booking_api",
    "switch_path",
]

SERVICE_NAME = "FlakyAgent"
ATTEMPT_KIND = "booking_attempt"

FLAKY_RETRY_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=1),
    max_attempts=300,
    on_max_attempts="pause",
)
"""Retry about once a second, for about five minutes, then pause: long enough to watch it."""

_CITY = re.compile(r"\bto ((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*)*)")


def switch_path(key: str) -> Path:
    """Return the file that, when it exists, means the booking API is up for session `key`."""
    safe = re.sub(r"[^\w.-]", "_", key)
    return data_dir() / "flaky-switches" / f"{safe}.up"


def booking_api_up(key: str) -> bool:
    """Return True if the booking API answers for session `key`."""
    return switch_path(key).exists()


def set_booking_api(key: str, up: bool) -> None:
    """Bring the booking API up (or down) for session `key`."""
    path = switch_path(key)
    if up:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    else:
        path.unlink(missing_ok=True)


def flaky_script(turn: Turn) -> Reply:
    """The offline model's rules: book the flight the user asks for, then confirm it."""
    if turn.results:
        return " ".join(r.text for r in turn.results)
    cities = _CITY.findall(turn.text)
    if cities and "book" in turn.text.lower():
        return [Call("book_flight", {"city": cities[0]})]
    return "I book flights: ask me to book a flight to a city."


async def book_flight(city: str) -> str:
    """Book a flight to a city with the booking API.

    Args:
        city: The destination city, e.g. "Lisbon".
    """
    ctx = restate_object_context()
    key = ctx.key()
    invocation_id = ctx.request().id

    async def call_booking_api() -> str:
        default_ledger().record(ATTEMPT_KIND, {"city": city, "key": key}, invocation_id=invocation_id)
        if not booking_api_up(key):
            raise ConnectionError(f"the booking API is down (no switch file {switch_path(key)})")
        return f"Booked a flight to {city}."

    return await ctx.run_typed("Call booking API", call_booking_api)


agent = Agent(
    model=default_model(flaky_script, name="flaky_agent"),
    name="flaky_agent",
    instruction="You book flights. Always use the book_flight tool, then confirm the booking in one sentence.",
    tools=[book_flight],
)

app = App(name="flaky", root_agent=agent, plugins=[RestatePlugin()])
runner = Runner(app=app, session_service=RestateSessionService())

flaky_service = restate.VirtualObject(SERVICE_NAME)


@flaky_service.handler(invocation_retry_policy=FLAKY_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Book what the message asks for; on cancel, record status "cancelled" and fail."""
    text = require_message(message)
    ctx.set("status", "working")
    final_response = None
    try:
        async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
            final_response = final_text(event) or final_response
    except restate.TerminalError as err:
        if err.status_code == 409:
            ctx.set("status", "cancelled")
        raise
    ctx.set("status", "booked")
    return final_response
