"""Lesson 01's checks against answers a learner is likely to give: the right one passes, each wrong one fails and
says what is wrong.

The answers are small agents served in a process of their own, registered after `check.lesson_01.begin(admin)`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from agent_lib import check
from agent_lib.agents._common import final_text, user_message
from agent_lib.agents.weather import weather_report, weather_script
from agent_lib.check import _core
from agent_lib.clients import Admin, Ingress
from agent_lib.models import Call, Reply, Turn, default_model
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin_again, failed

pytestmark = pytest.mark.slow

REMEMBER = ["What is the weather in Rome?", "What is the weather in Oslo?", "Which city did I ask about?"]


async def get_weather(city: str) -> str:
    """Get the current weather for a city."""

    async def fetch() -> str:
        return weather_report(city)

    return await restate_object_context().run_typed("Get weather", fetch)


def _weather_not_durable() -> Any:
    async def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return weather_report(city)

    return get_weather


async def get_forecast(city: str, days: int) -> str:
    """Get the weather forecast for a city.

    Args:
        city: The name of the city, e.g. "Paris".
        days: How many days ahead, e.g. 3.
    """

    async def fetch() -> str:
        return f"The forecast for {city}: sunny for the next {days} days."

    return await restate_object_context().run_typed("Get forecast", fetch)


def _forecast_without_days() -> Any:
    async def get_forecast(city: str) -> str:
        """Get the weather forecast for a city.

        Args:
            city: The name of the city, e.g. "Paris".
        """

        async def fetch() -> str:
            return f"The forecast for {city}: sunny."

        return await restate_object_context().run_typed("Get forecast", fetch)

    return get_forecast


def _forecast_not_durable() -> Any:
    async def get_forecast(city: str, days: int) -> str:
        """Get the weather forecast for a city.

        Args:
            city: The name of the city, e.g. "Paris".
            days: How many days ahead, e.g. 3.
        """
        return f"The forecast for {city}: sunny for the next {days} days."

    return get_forecast


async def forecast(city: str, days: int) -> str:
    """Get the weather forecast for a city (named `forecast`, while the script calls `get_forecast`).

    Args:
        city: The name of the city, e.g. "Paris".
        days: How many days ahead, e.g. 3.
    """
    return await get_forecast(city, days)


def _script(with_days: bool) -> Any:
    def script(turn: Turn) -> Reply:
        if not turn.results and "forecast" in turn.text.lower():
            city = re.search(r"\bfor ([A-Z][\w'-]*)", turn.text)
            args: dict[str, Any] = {"city": city.group(1) if city else "Paris"}
            if with_days:
                days = re.search(r"(\d+) days?", turn.text)
                args["days"] = int(days.group(1)) if days else 3
            return [Call("get_forecast", args)]
        return weather_script(turn)

    return script


def _agent(name: str, tools: list[Any], *, plugin: bool = True, with_days: bool = True) -> restate.VirtualObject:
    agent = Agent(
        model=default_model(_script(with_days), name=name),
        name="weather_agent",
        instruction="You are a helpful weather assistant.",
        tools=tools,
    )
    plugins = [RestatePlugin()] if plugin else []
    runner = Runner(app=App(name="agents", root_agent=agent, plugins=plugins), session_service=RestateSessionService())
    service = restate.VirtualObject(name)

    @service.handler()
    async def run(ctx: restate.ObjectContext, message: str) -> str | None:
        final = None
        async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(message)):
            final = final_text(event) or final
        return final

    return service


forecast_agent = _agent("T01Forecast", [get_weather, get_forecast])
"""Exercise 1 done right (and exercise 3's wrong answer: the plugin is still there)."""
forecast_no_days = _agent("T01ForecastNoDays", [get_weather, _forecast_without_days()], with_days=False)
forecast_no_step = _agent("T01ForecastNoStep", [get_weather, _forecast_not_durable()])
forecast_misnamed = _agent("T01ForecastMisnamed", [get_weather, forecast])
no_plugin = _agent("T01NoPlugin", [get_weather], plugin=False)
"""Exercise 3 done right."""
no_plugin_no_step = _agent("T01NoPluginNoStep", [_weather_not_durable()], plugin=False)
stopped = _agent("T01Stopped", [get_weather, get_forecast])

SERVICES = [
    "forecast_agent",
    "forecast_no_days",
    "forecast_no_step",
    "forecast_misnamed",
    "no_plugin",
    "no_plugin_no_step",
]


@pytest.fixture(scope="module")
def answers(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """Begin lesson 01's exercises, then serve the answers: their deployments are new."""
    admin = Admin(restate_server.admin_url)
    saved = dict(_core._began)
    _core.begin(1, admin)
    proc = AgentProcess([f"tests.test_check_lesson01:{s}" for s in SERVICES], admin=admin, name="check-lesson01")
    with proc:
        yield proc
    _core._began.clear()
    _core._began.update(saved)


@pytest.fixture
def began_later(answers: AgentProcess, admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    """Begin the exercises again now, for this test only: everything made so far is the lesson's."""
    monkeypatch.setitem(_core._began, 1, _core._began[1])
    begin_again(1, admin)


def _remember(ingress: Ingress, service: str, key: str, messages: list[str] = REMEMBER) -> None:
    for message in messages:
        ingress.call(service, "run", message, key=key)


# --- exercise 1: a forecast tool ---


def test_exercise_1_passes_a_durable_forecast_tool_with_days(
    answers: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01Forecast")
    assert result.ok, result
    assert "Get forecast" in result.message and "'days': 3" in result.message


def test_exercise_1_fails_a_forecast_tool_without_days(answers: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01ForecastNoDays")
    failed(result, "get_forecast was called with", "no `days`")
    assert "days: int" in result.hint


def test_exercise_1_fails_a_forecast_tool_that_is_not_durable(
    answers: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01ForecastNoStep")
    failed(result, "none of them is a forecast step")
    assert "run_typed" in result.hint


def test_exercise_1_fails_fast_on_a_tool_the_model_cannot_find(
    answers: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    started = time.monotonic()
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01ForecastMisnamed")
    failed(result, "keeps failing", "get_forecast", "killed 1 invocation")
    assert time.monotonic() - started < 30


def test_exercise_1_fails_the_lessons_agent_registered_before_begin(
    answers: AgentProcess, began_later: None, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01Forecast")
    failed(result, "T01Forecast is served by a deployment registered at", "before you began the exercises")


def test_exercise_1_fails_a_name_nobody_serves(answers: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_01.exercise_1.sync(ingress, admin, service="MyForcastAgent"), "does not list", "MyForcast")


def test_exercise_1_fails_fast_on_a_stopped_agent(
    answers: AgentProcess, restate_server: RestateServer, ingress: Ingress, admin: Admin
) -> None:
    proc = AgentProcess("tests.test_check_lesson01:stopped", admin=admin, name="check-lesson01-stopped")
    with proc:
        pass
    result = check.lesson_01.exercise_1.sync(ingress, admin, service="T01Stopped")
    failed(result, "T01Stopped is registered, but nothing listens at", "stopped")
    assert "killed" not in result.message, "the check started nothing"


# --- exercise 2: a session that remembers ---


def test_exercise_2_passes_a_session_that_remembers_two_cities(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    _remember(ingress, "T01Forecast", key)
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast")
    assert result.ok, result
    assert "Rome, Oslo" in result.message


def test_exercise_2_fails_when_only_one_city_was_asked(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    _remember(ingress, "T01Forecast", key, [REMEMBER[0], REMEMBER[2]])
    failed(check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast"), "two different cities")


def test_exercise_2_fails_when_the_question_went_to_another_key(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    _remember(ingress, "T01Forecast", key, REMEMBER[:2])
    ingress.call("T01Forecast", "run", REMEMBER[2], key=key + "-other")
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast")
    failed(result, "the last message stored under", "What is the weather in Oslo?")


def test_exercise_2_fails_a_key_filled_before_begin(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _remember(ingress, "T01Forecast", key)
    monkeypatch.setitem(_core._began, 1, _core._began[1])
    begin_again(1, admin)
    admin.register(answers.url)  # the agent is served again after begin: only the key is old
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast")
    failed(result, f"the key {key!r}: its turn", "before you began the exercises")
    assert "new key" in result.hint


def test_exercise_2_fails_exercise_1s_key_reused(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    """The text asks for a new key: exercise 1's key also holds the forecast, and the agent answers from it too."""
    ingress.call("T01Forecast", "run", "What is the forecast for Paris for 3 days?", key=key)
    _remember(ingress, "T01Forecast", key)
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast")
    failed(result, "holds more than your weather questions", "What is the forecast for Paris", "exercise 1's key")
    assert "new key" in result.hint


def test_exercise_2_says_begin_was_run_again(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work came after a begin(), then the begin() cell was run again: say that, not 'the lesson's own'."""
    monkeypatch.setitem(_core._began, 1, _core._began[1])
    monkeypatch.setitem(_core._begun, 1, [_core._began[1].at])
    _remember(ingress, "T01Forecast", key)
    begin_again(1, admin)
    admin.register(answers.url)  # the agent is served again after begin: only the key is old
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01Forecast")
    failed(result, "before you began the exercises", "you ran check.lesson_01.begin(admin) again", "2 times")
    assert "lesson's own" not in result.message and "leave the check.lesson_01.begin(admin) cell alone" in result.hint


def test_exercise_2_fails_the_lessons_weather_agent_and_its_key(
    answers: AgentProcess, ingress: Ingress, admin: Admin, key: str, began_later: None
) -> None:
    _remember(ingress, "T01NoPlugin", key)
    result = check.lesson_01.exercise_2.sync(ingress, admin, key, service="T01NoPlugin")
    failed(result, "registered at", "before you began the exercises")


def test_exercise_2_defaults_to_the_forecast_agent(answers: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_01.exercise_2.sync(ingress, admin, "learner-123"), "MyForecastAgent")


# --- exercise 3: without the plugin ---


def test_exercise_3_passes_an_agent_without_the_plugin(answers: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_01.exercise_3.sync(ingress, admin, service="T01NoPlugin")
    assert result.ok, result
    assert "Get weather" in result.message


def test_exercise_3_fails_an_agent_that_kept_the_plugin(answers: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_01.exercise_3.sync(ingress, admin, service="T01Forecast")
    failed(result, "the journal still has model calls")
    assert "RestatePlugin" in result.hint


def test_exercise_3_fails_an_agent_whose_tool_is_not_durable(
    answers: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_3.sync(ingress, admin, service="T01NoPluginNoStep")
    failed(result, "the journal has no tool step")
    assert "run_typed" in result.hint


def test_exercise_3_fails_a_deployment_from_before_begin(
    answers: AgentProcess, began_later: None, ingress: Ingress, admin: Admin
) -> None:
    failed(check.lesson_01.exercise_3.sync(ingress, admin, service="T01NoPlugin"), "before you began the exercises")
