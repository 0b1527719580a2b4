"""The bench's own agents: the seed's weather agent without Restate, and a crashable durable twin.

`plain_runner()` is plain ADK: the same offline model and script as
agent_lib.agents.weather, a plain tool, an `InMemoryRunner`, nothing journaled.
`recovery_service` is the durable weather agent under its own name, "BenchRecoveryAgent",
with gate hook points (agent_lib.gates) so the bench can SIGKILL it mid-turn
(BENCH_RECOVERY_SUFFIX, if set, is appended to its name, so two processes can serve twins).
"""

from __future__ import annotations

import os
from datetime import timedelta

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.runners import InMemoryRunner
from restate.ext.adk import RestatePlugin, RestateSessionService

from agent_lib.agents._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message
from agent_lib.agents.weather import get_weather, weather_report, weather_script
from agent_lib.gates import GatePlugin
from agent_lib.models import OfflineModel

__all__ = [
    "FAST_RETRY_POLICY",
    "GATE_PREFIX",
    "fast_recovery_service",
    "plain_runner",
    "plain_turn",
    "recovery_service",
]

GATE_PREFIX = "bench"


async def _plain_get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city, e.g. "New York".
    """
    return weather_report(city)


_plain_get_weather.__name__ = "get_weather"


def plain_runner() -> InMemoryRunner:
    """Return the seed's weather agent as plain ADK: in memory, in this process."""
    agent = Agent(
        model=OfflineModel(script=weather_script, name="weather_agent"),
        name="weather_agent",
        instruction="You are a helpful weather assistant.",
        tools=[_plain_get_weather],
    )
    return InMemoryRunner(app=App(name="agents", root_agent=agent))


async def plain_turn(runner: InMemoryRunner, user_id: str, text: str) -> str | None:
    """Run one turn of a plain ADK session (created on first use) and return the final text."""
    service = runner.session_service
    if await service.get_session(app_name=runner.app_name, user_id=user_id, session_id="session") is None:
        await service.create_session(app_name=runner.app_name, user_id=user_id, session_id="session")
    reply = None
    async for event in runner.run_async(user_id=user_id, session_id="session", new_message=user_message(text)):
        reply = final_text(event) or reply
    return reply


def _invocation_id() -> str | None:
    from restate.extensions import current_context

    ctx = current_context()
    return ctx.request().id if ctx is not None else None


_recovery_agent = Agent(
    model=OfflineModel(script=weather_script, name="bench_recovery"),
    name="weather_agent",
    instruction="You are a helpful weather assistant.",
    tools=[get_weather],
)
_recovery_runner = Runner(
    app=App(
        name="agents",
        root_agent=_recovery_agent,
        plugins=[GatePlugin(GATE_PREFIX, invocation_id=_invocation_id), RestatePlugin()],
    ),
    session_service=RestateSessionService(),
)

recovery_service = restate.VirtualObject("BenchRecoveryAgent" + os.environ.get("BENCH_RECOVERY_SUFFIX", ""))


@recovery_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message, like WeatherAgent, with gates the bench can stop it at."""
    text = require_message(message)
    reply = None
    async for event in _recovery_runner.run_async(
        user_id=ctx.key(), session_id="session", new_message=user_message(text)
    ):
        reply = final_text(event) or reply
    return reply


FAST_RETRY_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    exponentiation_factor=1.5,
    max_interval=timedelta(milliseconds=250),
    max_attempts=120,
    on_max_attempts="pause",
)
"""A retry policy for the recovery comparison: the retry timer never waits more than 250 ms."""

fast_recovery_service = restate.VirtualObject("BenchFastRecoveryAgent" + os.environ.get("BENCH_RECOVERY_SUFFIX", ""))


@fast_recovery_service.handler("run", input_serde=JSON_INPUT, invocation_retry_policy=FAST_RETRY_POLICY)
async def run_fast(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer like BenchRecoveryAgent, retried on a quicker timer after a crash."""
    return await run(ctx, message)
