"""The weather agent, traced: lesson 12.

The same agent and tool as lesson 01's, served as `TracedWeather`, with hook points (lesson 02's gates) so a lesson
can kill it between two steps: `traced.tool.after` once the tool's step "Get weather" is journaled, and GatePlugin's
`traced.model.before`, `traced.model.after` and `traced.store_session.before`. A replay passes a hook point again, so
arm these gates without `skip` when the server replays at every step (always-replay mode). A process that
serves it with AGENT_TRACES_ENDPOINT set exports its spans there (agent_lib.tracing.install_from_env): ADK's
agent run, each model call and each tool, parented under the server's span of the invocation.
"""

from __future__ import annotations

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService

from ..gates import GatePlugin, hit
from ..models import default_model
from ..tracing import install_from_env, trace_model
from . import weather
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message
from .weather import weather_script

__all__ = ["get_weather", "traced_agent", "traced_service"]

install_from_env("agents")


async def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city, e.g. "New York".
    """
    report = await weather.get_weather(city)
    await hit("traced.tool.after")
    return report


traced_agent = Agent(
    model=trace_model(default_model(weather_script, name="traced_weather_agent")),
    name="traced_weather_agent",
    instruction="You are a helpful weather assistant.",
    tools=[get_weather],
)

_app = App(name="traced", root_agent=traced_agent, plugins=[GatePlugin("traced"), RestatePlugin()])
_runner = Runner(app=_app, session_service=RestateSessionService())

traced_service = restate.VirtualObject("TracedWeather")


@traced_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message in the session named by this object's key."""
    text = require_message(message)
    final_response = None
    async for event in _runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
        final_response = final_text(event) or final_response
    return final_response
