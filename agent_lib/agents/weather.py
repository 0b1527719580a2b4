"""The seed's weather agent, made durable: lessons 01 and later.

A plain Restate app. It knows nothing of how it is hosted: a notebook, a separate
process, a test or `python -m agent_lib up` serves it.

    curl localhost:8080/WeatherAgent/session-1/run --json '"What is the weather in New York?"'
"""

from __future__ import annotations

import os
import re

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message

__all__ = ["agent", "app", "get_weather", "runner", "weather_report", "weather_script", "weather_service"]

_CITY = re.compile(r"\b(?:in|for|about) ((?:[A-Z][\w'-]*)(?: [A-Z][\w'-]*)*)")


def weather_script(turn: Turn) -> Reply:
    """The offline model's rules for the weather agent. Change them and see the agent change."""
    if turn.results:
        return " ".join(r.text for r in turn.results)
    if "weather" in turn.text.lower():
        cities = _CITY.findall(turn.text)
        if cities:
            return [Call("get_weather", {"city": city}) for city in cities]
        return "Which city would you like the weather for?"
    if re.search(r"which cit(y|ies)", turn.text, re.IGNORECASE):
        asked = [r.text.split(" is ")[0].removeprefix("The weather in ") for r in turn.past_results]
        if asked:
            return "You asked about " + " and ".join(dict.fromkeys(asked)) + "."
        return "You have not asked me about any city yet."
    return "I am a weather assistant: ask me about the weather in a city."


def weather_report(city: str) -> str:
    """Return the weather in `city`: the course's stand-in for a weather API."""
    return f"The weather in {city} is sunny, 72°F"


async def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The name of the city, e.g. "New York".
    """

    async def fetch_weather() -> str:
        return weather_report(city)

    return await restate_object_context().run_typed("Get weather", fetch_weather)


agent = Agent(
    model=default_model(weather_script, name="weather_agent"),
    name="weather_agent",
    instruction="You are a helpful weather assistant.",
    tools=[get_weather],
)

app = App(name="agents", root_agent=agent, plugins=[RestatePlugin()])
runner = Runner(app=app, session_service=RestateSessionService())

SERVICE_NAME_ENV = "WEATHER_SERVICE_NAME"
"""Serve this agent under another name (lesson 02 runs a copy on the Gemini stub beside the finished one)."""


def _service_name() -> str:
    name = os.environ.get(SERVICE_NAME_ENV, "WeatherAgent")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"{SERVICE_NAME_ENV}={name!r} is not a service name: use letters and digits, e.g. MyWeather")
    return name


weather_service = restate.VirtualObject(_service_name())


@weather_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message in the session named by this object's key."""
    text = require_message(message)
    final_response = None
    async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
        final_response = final_text(event) or final_response
    return final_response
