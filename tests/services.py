"""Small Restate services used by the tests of the clients and serving modules."""

from __future__ import annotations

import uuid
from datetime import timedelta

import restate

waiter = restate.VirtualObject("TestWaiter")


@waiter.handler(inactivity_timeout=timedelta(seconds=1))
async def wait(ctx: restate.ObjectContext, label: str) -> str:
    """Park on an awakeable whose id is stored in state, and return what resolves it."""
    awakeable_id, promise = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    value = await promise
    return f"{label}: {value}"


failing = restate.Service("TestAlwaysFails")


@failing.handler(
    invocation_retry_policy=restate.InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=200), max_interval=timedelta(milliseconds=500), max_attempts=1000
    )
)
async def attempt(ctx: restate.Context, what: str) -> str:
    """Fail with an ordinary (retryable) error, forever."""
    raise RuntimeError(f"{what} is broken")


echo = restate.Service("TestEcho")


@echo.handler()
async def say(ctx: restate.Context, text: str) -> str:
    """Return the text, with a journaled step in between."""
    return await ctx.run_typed("shout", lambda: text.upper())


drawer = restate.Service("TestDrawsOutsideRun")


@drawer.handler()
async def draw(ctx: restate.Context, label: str) -> str:
    """Draw a ticket with uuid4() outside ctx.run, the mistake lesson 07 warns about, and name a step after it.

    A replay draws another ticket, so the step's name no longer matches the journal.
    """
    ticket = uuid.uuid4().hex[:8]
    return await ctx.run_typed(f"ticket {ticket}", lambda: f"{label}: {ticket}")
