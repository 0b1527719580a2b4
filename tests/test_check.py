"""The exercise checks: each one fails on a blank or wrong answer, says why, and passes on a right one.

The solutions notebooks (notebooks/solutions/) prove every check passable; these tests prove they can fail.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestateSessionService

from agent_lib import check
from agent_lib.agents._common import final_text, user_message
from agent_lib.agents.capstone import DESK, TARGETS
from agent_lib.agents.weather import get_weather, weather_script
from agent_lib.check import CheckResult
from agent_lib.clients import Admin, Ingress
from agent_lib.models import default_model
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

_runner = Runner(
    app=App(
        name="agents",
        root_agent=Agent(
            model=default_model(weather_script, name="no_plugin"), name="weather_agent", tools=[get_weather]
        ),
        plugins=[],
    ),
    session_service=RestateSessionService(),
)
no_plugin_weather = restate.VirtualObject("CheckTestNoPluginWeather")


@no_plugin_weather.handler()
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """The weather agent without RestatePlugin: lesson 01's exercise 3, done right."""
    reply = None
    async for event in _runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(message)):
        reply = final_text(event) or reply
    return reply


@pytest.fixture(scope="module")
def no_plugin(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess("tests.test_check:no_plugin_weather", admin=Admin(restate_server.admin_url), name="no-plugin")
    with proc:
        yield proc


@pytest.fixture(scope="module")
def capstone(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="check-capstone")
    with proc:
        yield proc


def _failed(result: CheckResult, *words: str) -> None:
    assert not result.ok and not result, result
    assert all(w in result.message for w in words), result.message
    with pytest.raises(AssertionError, match="FAIL Lesson"):
        result.assert_ok()


def test_a_result_renders_pass_and_fail_with_its_hint() -> None:
    good = CheckResult("Lesson 01 · exercise 1", True, "well done")
    bad = CheckResult("Lesson 01 · exercise 1", False, "no forecast step", "use run_typed")
    assert good.assert_ok() is good and "passed" in good._repr_markdown_()
    assert "not yet" in bad._repr_markdown_() and "use run_typed" in bad._repr_markdown_()
    assert "Hint: use run_typed" in str(bad) and "use run_typed" in bad._repr_html_()


def test_a_check_is_awaitable_and_names_its_exercise(ingress: Ingress, admin: Admin) -> None:
    result = asyncio.run(check.lesson_01.exercise_1(ingress, admin, service="NoSuchAgent"))
    assert result.exercise == "Lesson 01 · exercise 1"
    _failed(result, "NoSuchAgent")
    assert "register" in result.hint


def test_lesson_01_forecast_fails_without_a_forecast_step(
    weather: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    _failed(check.lesson_01.exercise_1.sync(ingress, admin, service="WeatherAgent"), "no", "forecast step")


def test_lesson_01_memory_fails_on_a_blank_session(weather: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    _failed(check.lesson_01.exercise_2.sync(ingress, admin, key=f"blank-{uuid.uuid4().hex}", service="WeatherAgent"))


def test_lesson_01_memory_fails_when_only_one_city_was_asked(
    weather: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    ingress.call("WeatherAgent", "run", "What is the weather in Rome?", key=key)
    ingress.call("WeatherAgent", "run", "Which city did I ask about?", key=key)
    _failed(check.lesson_01.exercise_2.sync(ingress, admin, key=key, service="WeatherAgent"), "two different")


def test_lesson_01_no_plugin_fails_on_the_agent_with_the_plugin(
    weather: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_3.sync(ingress, admin, service="WeatherAgent")
    _failed(result, "model calls")
    assert "RestatePlugin" in result.hint


def test_lesson_01_no_plugin_passes_on_an_agent_without_it(
    no_plugin: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_01.exercise_3.sync(ingress, admin, service="CheckTestNoPluginWeather")
    assert result.ok, result


def test_lesson_02_terminal_error_fails_on_an_order_that_never_paid(
    weather: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    sent = ingress.send("WeatherAgent", "run", "What is the weather in Oslo?", key=key)
    ingress.attach(sent.invocation_id)
    _failed(check.lesson_02.exercise_2.sync(ingress, admin, sent.invocation_id), "never tried to pay")


def test_lesson_02_crash_fails_on_an_unknown_invocation(admin: Admin) -> None:
    _failed(check.lesson_02.exercise_1.sync(admin, "inv_1nosuchinvocation0000000000000000"), "not a valid")


def test_lesson_03_forget_fails_on_an_agent_without_that_handler(
    weather: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="WeatherAgent")
    _failed(result, "not both 'run' and 'forget'")


def test_lesson_03_queue_fails_on_a_key_with_one_message(
    weather: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    check.lesson_03.begin(admin)
    asyncio.run(asyncio.sleep(0.02))  # the server may stamp a call made at once 1 ms before begin's clock
    ingress.call("WeatherAgent", "run", "What is the weather in Oslo?", key=key)
    _failed(check.lesson_03.exercise_1.sync(admin, key, ["running"], service="WeatherAgent"), "not 3")


def test_lesson_06_recipe_fails_on_an_unknown_invocation(ingress: Ingress, admin: Admin) -> None:
    check.lesson_06.begin(admin)
    sql = "SELECT id FROM sys_invocation WHERE last_failure LIKE '%no such failure%'"
    result = check.lesson_06.exercise_1.sync(ingress, admin, sql, "inv_1nosuchinvocation0000000000000000")
    _failed(result, "not a valid invocation id")


def test_lesson_09_checks_fail_on_a_conversation_with_one_paid_claim(
    capstone: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    conversation = f"check-{uuid.uuid4().hex[:6]}"
    check.lesson_09.begin(admin)
    _failed(check.lesson_09.exercise_1.sync(ingress, admin, conversation), "no claims filed")
    ingress.call(DESK, "run", "Hi, I am cust-ana, my policy is POL-1001.", key=conversation)
    reply = ingress.call(DESK, "run", "A storm damaged the roof of my home on 2025-11-02: 650 EUR.", key=conversation)
    assert "paid at once" in reply
    _failed(check.lesson_09.exercise_1.sync(ingress, admin, conversation), "only the home claim")
    _failed(check.lesson_09.exercise_2.sync(ingress, admin, conversation), "was denied")
    _failed(check.lesson_09.exercise_3.sync(ingress, admin, conversation, f"{conversation}-1", "why"), "not rejected")
