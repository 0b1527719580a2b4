"""The exercise checks: each one fails on a blank or wrong answer, says why, and passes on a right one.

The solutions notebooks (notebooks/solutions/) prove every check passable; these tests prove they can fail.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import restate

from agent_lib import check
from agent_lib.agents.capstone import DESK, TARGETS
from agent_lib.check import CheckResult, _core
from agent_lib.check._core import Fail, call, exercise, send
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed

stoppable = restate.Service("CheckTestStoppable")


@stoppable.handler()
async def say(ctx: restate.Context, text: str) -> str:
    """Answer at once: a service whose process the tests stop."""
    return text


@pytest.fixture(scope="module")
def capstone(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="check-capstone")
    with proc:
        yield proc


def test_a_result_renders_pass_and_fail_with_its_hint() -> None:
    good = CheckResult("Lesson 01 · exercise 1", True, "well done")
    bad = CheckResult("Lesson 01 · exercise 1", False, "no forecast step", "use run_typed")
    assert good.assert_ok() is good and "passed" in good._repr_markdown_()
    assert "not yet" in bad._repr_markdown_() and "use run_typed" in bad._repr_markdown_()
    assert "Hint: use run_typed" in str(bad) and "use run_typed" in bad._repr_html_()


def test_a_failed_result_is_shown_loudly_in_red() -> None:
    bad = CheckResult("Lesson 01 · exercise 1", False, "no <forecast> step", "use run_typed")
    shown = bad._repr_html_()
    assert "FAILED" in shown and "#b91c1c" in shown and "&lt;forecast&gt;" in shown
    assert "FAILED" in bad._repr_markdown_() and "FAILED" not in CheckResult("x", True, "ok")._repr_html_()


def _probe(body: object, deadline: float = 10.0) -> _core.Check[...]:
    return exercise(99, 1, deadline=deadline)(body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [ValueError("bad value"), KeyError("status"), httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("eof")],
    ids=lambda e: type(e).__name__,
)
def test_a_check_never_raises_whatever_its_body_raises(error: Exception) -> None:
    def body() -> str:
        raise error

    result = _probe(body).sync()
    failed(result)
    assert type(error).__name__ in result.message or "no answer in time" in result.message, result.message


def test_a_check_that_hangs_gives_up_within_its_deadline() -> None:
    started = time.monotonic()
    result = _probe(lambda: time.sleep(30) or "never", deadline=1).sync()
    assert time.monotonic() - started < 1 + _core._GRACE + 1
    failed(result, "gave up after 1 s")


def test_a_failed_check_kills_the_invocations_it_started(
    test_services: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    started: list[str] = []

    def body(admin: Admin) -> str:
        started.append(send(ingress, "TestWaiter", "wait", "parked", key=key))
        raise Fail("the learner's answer is wrong", "fix the answer")

    result = _probe(body).sync(admin)
    failed(result, "the learner's answer is wrong", "killed 1 invocation", started[0])
    assert admin.status(started[0]) == "completed"


def test_a_check_waiting_past_its_deadline_fails_and_kills_what_it_waits_for(
    test_services: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    def body(admin: Admin) -> str:
        call(ingress, "TestWaiter", "wait", "parked", key=key)
        return "never"

    started = time.monotonic()
    result = _probe(body, deadline=3).sync(admin)
    assert time.monotonic() - started < 3 + _core._GRACE + 5
    failed(result, "gave up after 3 s", "an answer from TestWaiter/wait", "killed 1 invocation")


def test_a_check_calling_a_stopped_process_fails_fast_and_cleans_up(
    restate_server: RestateServer, _kit_data: Path, ingress: Ingress, admin: Admin
) -> None:
    proc = AgentProcess("tests.test_check:stoppable", admin=admin, name="check-stoppable")
    with proc:
        assert ingress.call("CheckTestStoppable", "say", "up") == "up"
    assert not proc.running

    def body(admin: Admin) -> str:
        return str(call(ingress, "CheckTestStoppable", "say", "hello"))

    started = time.monotonic()
    result = _probe(body, deadline=60).sync(admin)
    assert time.monotonic() - started < 20
    failed(result, "the process that serves CheckTestStoppable is stopped", "killed 1 invocation")
    assert "start it again" in result.hint
    assert _core.listening(proc.url) is False


def test_begin_refuses_an_invocation_and_a_deployment_from_before_it(
    weather: AgentProcess, ingress: Ingress, admin: Admin, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_core, "_began", {})
    old = ingress.send("WeatherAgent", "run", "What is the weather in Oslo?", key=key).invocation_id

    def body(admin: Admin, invocation_id: str) -> str:
        _core.require_new(admin, invocation_id, "the order")
        _core.require_new_deployment(admin, "WeatherAgent")
        return "new"

    failed(_probe(body).sync(admin, old), "not recorded")
    began = _core.begin(99, admin)
    assert "exercises begun" in repr(began)
    failed(_probe(body).sync(admin, old), "the order", "before you began the exercises")
    new = ingress.send("WeatherAgent", "run", "What is the weather in Rome?", key=key).invocation_id
    failed(_probe(body).sync(admin, new), "WeatherAgent is served by a deployment registered at")
    admin.register(weather.url)  # registered again after begin: the check sees it as new
    assert _probe(body).sync(admin, new).ok


def test_a_check_is_awaitable_and_names_its_exercise(ingress: Ingress, admin: Admin) -> None:
    result = asyncio.run(check.lesson_01.exercise_1(ingress, admin, service="NoSuchAgent"))
    assert (result.title, result.lesson, result.exercise) == ("Lesson 01 · exercise 1", 1, 1)
    failed(result, "NoSuchAgent")
    assert "register" in result.hint


def test_lesson_03_forget_fails_on_an_agent_without_that_handler(
    weather: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_03.exercise_3.sync(ingress, admin, service="WeatherAgent")
    failed(result, "not both 'run' and 'forget'")


def test_lesson_03_queue_fails_on_a_key_with_one_message(
    weather: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    begin(3, admin)
    ingress.call("WeatherAgent", "run", "What is the weather in Oslo?", key=key)
    failed(check.lesson_03.exercise_1.sync(admin, key, ["running"], service="WeatherAgent"), "not 3")


def test_lesson_06_recipe_fails_on_an_unknown_invocation(ingress: Ingress, admin: Admin) -> None:
    check.lesson_06.begin(admin)
    sql = "SELECT id FROM sys_invocation WHERE last_failure LIKE '%no such failure%'"
    result = check.lesson_06.exercise_1.sync(ingress, admin, sql, "inv_1nosuchinvocation0000000000000000")
    failed(result, "not a valid invocation id")


def test_lesson_09_checks_fail_on_a_conversation_with_one_paid_claim(
    capstone: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    conversation = f"check-{uuid.uuid4().hex[:6]}"
    check.lesson_09.begin(admin)
    failed(check.lesson_09.exercise_1.sync(ingress, admin, conversation), "no claims filed")
    ingress.call(DESK, "run", "Hi, I am cust-ana, my policy is POL-1001.", key=conversation)
    reply = ingress.call(DESK, "run", "A storm damaged the roof of my home on 2025-11-02: 650 EUR.", key=conversation)
    assert "paid at once" in reply
    failed(check.lesson_09.exercise_1.sync(ingress, admin, conversation), "only the home claim")
    failed(check.lesson_09.exercise_2.sync(ingress, admin, conversation), "was denied")
    failed(check.lesson_09.exercise_3.sync(ingress, admin, conversation, f"{conversation}-1", "why"), "not rejected")
