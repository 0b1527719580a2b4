"""The weather agent, traced: lesson 12.

The same agent and tool as lesson 01's, served as `TracedWeather`, with hook points (lesson 02's gates) so a lesson
can kill it between two steps: GatePlugin's `traced.model.before`, `traced.model.after` and
`traced.store_session.before`, and `traced.model.new` before each model call that is really made. A replay passes
GatePlugin's hook points again (at every step, in always-replay mode), so count calls with `traced.model.new`:
`Gate("traced.model.new").arm(skip=1)` stops the turn before its second model call in every mode. A process that
serves it with AGENT_TRACES_ENDPOINT set exports its spans there (agent_lib.tracing.install_from_env): ADK's
agent run, each model call and each tool, parented under the server's span of the invocation.
"""

from __future__ import annotations

import restate
from google.adk import Runner
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins import BasePlugin
from restate.ext.adk import RestatePlugin, RestateSessionService
from restate.server_context import restate_context_is_replaying

from ..gates import GatePlugin, hit
from ..models import default_model
from ..tracing import install_from_env, trace_model
from . import weather
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message
from .weather import weather_script

__all__ = ["NewModelCalls", "traced_agent", "traced_service"]

install_from_env("agents")


class NewModelCalls(BasePlugin):
    """Hook point `traced.model.new` before each model call that is made, not replayed from the journal."""

    def __init__(self) -> None:
        super().__init__(name="traced_new_model_calls")

    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        """Hit `traced.model.new` unless this call is replayed."""
        if not restate_context_is_replaying.get():
            await hit("traced.model.new")
        return None


traced_agent = Agent(
    model=trace_model(default_model(weather_script, name="traced_weather_agent")),
    name="traced_weather_agent",
    instruction="You are a helpful weather assistant.",
    tools=[weather.get_weather],
)

_app = App(name="traced", root_agent=traced_agent, plugins=[GatePlugin("traced"), NewModelCalls(), RestatePlugin()])
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
