"""A hotel-booking agent whose first prompt quotes the wrong price: lesson 06, restart as new from a step.

The tool `book_room` books a room inside a durable step named "Book room": a real effect, recorded in the
ledger as kind "room_booking", with a confirmation code drawn inside the step (so the journal keeps it).
The tool answers with the nightly rate and the total. The model then confirms the booking to the guest.

- `service_v1`: its prompt says to quote the nightly rate, so a guest who books 3 nights reads "120 EUR" and
  not the 360 EUR they pay: the answer is wrong, and the prompt is at fault.
- `service_v2`: the fix, the prompt says to quote the total for the whole stay.

Both are deployments of one VirtualObject, "HotelAgent". The offline model's script follows the prompt it is
given (it reads the instruction), as a real model would.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import LESSON_RETRY_POLICY, final_text, require_message, user_message

__all__ = [
    "BOOKING_KIND",
    "INSTRUCTIONS",
    "NIGHTLY_EUR",
    "RETENTION",
    "SERVICE_NAME",
    "hotel_script",
    "make_service",
    "service_v1",
    "service_v2",
]

SERVICE_NAME = "HotelAgent"
BOOKING_KIND = "room_booking"
NIGHTLY_EUR = 120
"""Every room costs this much a night."""

RETENTION = timedelta(days=1)
"""How long the server keeps a finished turn's journal: restart as new from a step copies it, so it must be kept."""

INSTRUCTIONS = {
    "v1": "You book hotel rooms. Call book_room, then confirm the booking and quote the nightly rate.",
    "v2": "You book hotel rooms. Call book_room, then confirm the booking and quote the total for the whole stay.",
}

_AGENT = "hotel_agent"
_BOOK = re.compile(r"(?P<nights>\d+)\s+nights?\s+in\s+(?P<city>[A-Z][\w'-]*(?: [A-Z][\w'-]*)*)")


def _quote(booking: dict[str, Any], total: bool) -> str:
    nights = f"{booking['nights']} night" + ("s" if booking["nights"] != 1 else "")
    price = f"{booking['total_eur']} EUR for {nights}" if total else f"{booking['nightly_eur']} EUR"
    return f"Booked a room in {booking['city']} ({booking['confirmation']}): {price}."


def hotel_script(turn: Turn) -> Reply:
    """The offline model's rules: book each stay the guest asks for, then quote the price the prompt asks for."""
    if turn.results:
        return " ".join(_quote(r.response, "total" in turn.instruction) for r in turn.results)
    calls = [Call("book_room", {"city": m["city"], "nights": int(m["nights"])}) for m in _BOOK.finditer(turn.text)]
    return calls or "I book hotel rooms: ask me to book, e.g. 'Book 3 nights in Lisbon'."


async def book_room(city: str, nights: int) -> dict[str, Any]:
    """Book a hotel room, and return the booking with its nightly rate and its total.

    Args:
        city: The city of the hotel, e.g. "Lisbon".
        nights: How many nights, e.g. 3.
    """
    ctx = restate_object_context()
    invocation_id = ctx.request().id

    async def book() -> dict[str, Any]:
        confirmation = f"R-{uuid.uuid4().hex[:6].upper()}"
        booking = {"city": city, "nights": nights, "confirmation": confirmation}
        default_ledger().record(BOOKING_KIND, booking, invocation_id=invocation_id)
        return {**booking, "nightly_eur": NIGHTLY_EUR, "total_eur": NIGHTLY_EUR * nights}

    return await ctx.run_typed("Book room", book)


def make_service(version: str) -> restate.VirtualObject:
    """Build the "HotelAgent" service of one version: "v1" (the wrong prompt) or "v2" (the fix)."""
    if version not in INSTRUCTIONS:
        raise ValueError(f"unknown version {version!r}: choose v1 or v2")
    agent = Agent(
        model=default_model(hotel_script, name=_AGENT),
        name=_AGENT,
        instruction=INSTRUCTIONS[version],
        tools=[book_room],
    )
    runner = Runner(
        app=App(name="hotel", root_agent=agent, plugins=[RestatePlugin()]),
        session_service=RestateSessionService(),
    )
    service = restate.VirtualObject(SERVICE_NAME, journal_retention=RETENTION)

    @service.handler(invocation_retry_policy=LESSON_RETRY_POLICY)
    async def run(ctx: restate.ObjectContext, message: str) -> dict[str, Any]:
        """Book what the message asks for; answer with the reply and the version that gave it."""
        text = require_message(message)
        answer = None
        async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
            answer = final_text(event) or answer
        return {"answer": answer, "version": version}

    return service


service_v1 = make_service("v1")
service_v2 = make_service("v2")
