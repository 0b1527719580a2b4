"""The weather agent, traced: lesson 12.

The same agent and tool as lesson 01's, served as `TracedWeather`, with hook points (lesson 02's gates) so a lesson
can kill it between two steps: GatePlugin's `traced.model.before`, `traced.model.after` and
`traced.store_session.before`, and `traced.model.new` before each model call that is really made (HookedModel). A
replay passes GatePlugin's hook points again (at every step, in always-replay mode), so count calls with
`traced.model.new`: `Gate("traced.model.new").arm(skip=1)` stops the turn before its second model call in every
mode. A process that serves it with AGENT_TRACES_ENDPOINT set exports its spans there (tracing.install_from_env):
ADK's agent run, each model call and each tool, parented under the server's span of the invocation.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from restate.ext.adk import RestatePlugin, RestateSessionService

from ..gates import GatePlugin, hit
from ..models import default_model
from ..tracing import install_from_env, trace_model
from . import weather
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message
from .weather import weather_script

__all__ = ["HookedModel", "traced_agent", "traced_service"]

install_from_env("agents")


class HookedModel(BaseLlm):
    """A model that marks the hook point `traced.model.new` before each call it makes.

    Under RestatePlugin the model is called inside the step "call LLM", so a replayed call never reaches it: unlike
    GatePlugin's hook points, which a replay passes again, this one counts the calls really made, in every mode.
    """

    inner: BaseLlm

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        """Mark `traced.model.new`, then answer as the inner model does."""
        await hit("traced.model.new")
        async for response in self.inner.generate_content_async(llm_request, stream):
            yield response


def _model() -> HookedModel:
    traced = trace_model(default_model(weather_script, name="traced_weather_agent"))
    return HookedModel(model=traced.model, inner=traced)


traced_agent = Agent(
    model=_model(),
    name="traced_weather_agent",
    instruction="You are a helpful weather assistant.",
    tools=[weather.get_weather],
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
