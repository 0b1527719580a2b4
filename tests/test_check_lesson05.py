"""Lesson 05's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.tools.tool_context import ToolContext
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from agent_lib import check
from agent_lib.agents._common import final_text, user_message
from agent_lib.agents.specialists import SPECIALISTS, check_gate, evaluate, require_claim, sample_claim, seconds_env
from agent_lib.check import CheckResult, _core
from agent_lib.check._core import Began
from agent_lib.clients import Admin, Ingress
from agent_lib.models import Call, Reply, Turn, default_model
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess, serve_in_kernel
from tests.helpers import begin, failed, pause

pytestmark = pytest.mark.slow


def _consulting(name: str, *, together: bool) -> restate.VirtualObject:
    """A ConsultingAgent: one tool that runs the three checks, together (gather) or one after another."""

    async def consult_specialists(tool_context: ToolContext) -> dict[str, Any]:
        """Run the eligibility, fraud and policy checks of the claim."""
        ctx = restate_object_context()
        claim = require_claim(tool_context.state["claim"])

        def step(name: str) -> Any:
            async def work() -> dict[str, Any]:
                await asyncio.sleep(0.3)
                return evaluate(name, claim).model_dump()

            return ctx.run_typed(f"Check {name}", work)

        if together:
            futures = [step(s) for s in SPECIALISTS]
            await restate.gather(*futures)
            return {s: (await f)["verdict"] for s, f in zip(SPECIALISTS, futures, strict=True)}
        return {s: (await step(s))["verdict"] for s in SPECIALISTS}

    def script(turn: Turn) -> Reply:
        return str(turn.results[0].response) if turn.results else [Call("consult_specialists")]

    runner = Runner(
        app=App(
            name="consult",
            plugins=[RestatePlugin()],
            root_agent=Agent(
                model=default_model(script, name=name), name="consult", instruction="", tools=[consult_specialists]
            ),
        ),
        session_service=RestateSessionService(),
    )
    service = restate.VirtualObject(name)

    @service.handler()
    async def run(ctx: restate.ObjectContext, claim: dict[str, Any]) -> str | None:
        reply = None
        events = runner.run_async(
            user_id=ctx.key(), session_id="claim", state_delta={"claim": claim}, new_message=user_message("Check it.")
        )
        async for event in events:
            reply = final_text(event) or reply
        return reply

    return service


consulting = _consulting("L05ConsultingAgent", together=True)
sequential = _consulting("L05SequentialConsultingAgent", together=False)

SPECIALIST_TARGETS = [f"agent_lib.agents.specialists:{s}_service" for s in SPECIALISTS]
ENV = seconds_env(eligibility=1, fraud=1, policy=3)


@dataclass
class Lab:
    specialists: AgentProcess
    triage: AgentProcess
    began: Began


@pytest.fixture(scope="module")
def lab(restate_server: RestateServer, _kit_data: Path) -> Iterator[Lab]:
    admin = Admin(restate_server.admin_url)
    began = begin(5, admin)
    specialists = AgentProcess(SPECIALIST_TARGETS, admin=admin, env=ENV, name="l05-check-specialists")
    triage = AgentProcess(
        ["agent_lib.agents.triage:triage_service", "agent_lib.agents.triage:tool_call_triage"],
        admin=admin,
        env=ENV,
        name="l05-check-triage",
    )
    with specialists, triage:
        yield Lab(specialists.start(), triage.start(), began)


@pytest.fixture
def since_lab(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """Count the exercises as begun before the lab's processes registered."""
    monkeypatch.setitem(_core._began, 5, lab.began)
    return lab


@dataclass
class Pair:
    parallel: str
    one_by_one: str
    began: Began


@pytest.fixture(scope="module")
def pair(lab: Lab, restate_server: RestateServer) -> Pair:
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    began = begin(5, admin)
    parallel, one_by_one = sample_claim(), sample_claim()
    ingress.call("ClaimTriage", "triage", parallel)
    ingress.call("ClaimTriage", "triage_one_by_one", one_by_one)
    return Pair(parallel["claim_id"], one_by_one["claim_id"], began)


@pytest.fixture
def predict(pair: Pair, admin: Admin, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CheckResult]:
    monkeypatch.setitem(_core._began, 5, pair.began)

    def run(parallel: str, one_by_one: str, p: float, s: float) -> CheckResult:
        return check.lesson_05.exercise_1.sync(admin, parallel, one_by_one, p, s)

    return run


def test_predictions_pass_with_the_slowest_and_the_sum(pair: Pair, predict: Callable[..., CheckResult]) -> None:
    result = predict(pair.parallel, pair.one_by_one, 3, 5)
    assert result.ok, result


def test_predictions_fail_when_the_claims_are_swapped(pair: Pair, predict: Callable[..., CheckResult]) -> None:
    failed(predict(pair.one_by_one, pair.parallel, 3, 5), "you swapped the two claims")


def test_predictions_fail_when_the_predictions_are_swapped(pair: Pair, predict: Callable[..., CheckResult]) -> None:
    failed(predict(pair.parallel, pair.one_by_one, 5, 3), "you predicted 5 s for 'triage'")


def test_predictions_fail_on_the_lessons_numbers(pair: Pair, predict: Callable[..., CheckResult]) -> None:
    failed(predict(pair.parallel, pair.one_by_one, 2, 4.5), "you predicted 2 s for 'triage'")
    failed(predict(pair.parallel, pair.one_by_one, 3, 4.5), "you predicted 4.5 s for 'triage_one_by_one'")


def test_predictions_fail_on_the_same_claim_twice(pair: Pair, predict: Callable[..., CheckResult]) -> None:
    failed(predict(pair.parallel, pair.parallel, 3, 5), "the same claim twice")


def test_predictions_fail_on_the_tool_calling_agent(
    pair: Pair, predict: Callable[..., CheckResult], ingress: Ingress
) -> None:
    claim = sample_claim()
    ingress.call("ToolCallTriage", "run", claim, key=claim["claim_id"])
    result = predict(pair.parallel, claim["claim_id"], 3, 5)
    failed(result, "checked through ['ToolCallTriage/run'], not ClaimTriage/triage_one_by_one")


def test_predictions_refuse_claims_from_before_the_exercises(pair: Pair, admin: Admin) -> None:
    begin(5, admin)
    result = check.lesson_05.exercise_1.sync(admin, pair.parallel, pair.one_by_one, 3, 5)
    failed(result, "before you began the exercises")


@pytest.fixture(scope="module")
def consultants(lab: Lab, restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(
        ["tests.test_check_lesson05:consulting", "tests.test_check_lesson05:sequential"],
        admin=Admin(restate_server.admin_url),
        name="l05-check-consultants",
    )
    with proc:
        yield proc


def test_gathering_tool_passes_when_one_tool_gathers_three_steps(
    consultants: AgentProcess, since_lab: Lab, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_05.exercise_2.sync(ingress, admin, "L05ConsultingAgent")
    assert result.ok, result


def test_gathering_tool_fails_when_the_steps_run_one_after_another(
    consultants: AgentProcess, since_lab: Lab, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_05.exercise_2.sync(ingress, admin, "L05SequentialConsultingAgent")
    failed(result, "the three ran one after another")


def test_gathering_tool_fails_on_three_tools(since_lab: Lab, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_05.exercise_2.sync(ingress, admin, "ToolCallTriage")
    failed(result, "the model called the tools ['check_eligibility', 'check_fraud', 'check_policy']")


def test_gathering_tool_refuses_a_deployment_from_before_the_exercises(
    consultants: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    begin(5, admin)
    result = check.lesson_05.exercise_2.sync(ingress, admin, "L05ConsultingAgent")
    failed(result, "before you began the exercises")


def _held_triage(lab: Lab, ingress: Ingress) -> tuple[dict[str, Any], str]:
    claim = sample_claim()
    gate = check_gate("fraud").arm()
    sent = ingress.send("ClaimTriage", "triage", claim)
    gate.wait_reached(alive=lambda: lab.specialists.running)
    return claim, sent.invocation_id


def test_crash_check_fails_until_the_specialists_restart_then_passes(
    lab: Lab, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 5, begin(5, admin))
    claim, triage = _held_triage(lab, ingress)
    lab.specialists.kill()
    try:
        stopped = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)
    finally:
        lab.specialists.start()
    failed(stopped, "not finished: the specialists' process is stopped")
    assert "start the specialists' process again" in stopped.hint
    ingress.attach(triage)
    result = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)
    assert result.ok, result
    new_process = result.message.split("in the new process: ", 1)[1].split(" (", 1)[0]
    assert "fraud" in new_process, "the fraud check, held at its gate at the kill, finished in the new process"
    assert "none ran twice" in result.message, "the steps of the exercise run no check twice, and the check says so"
    failed(check.lesson_05.exercise_3.sync(ingress, admin, triage, sample_claim()), "not the one this triage checked")
    begin(5, admin)
    failed(check.lesson_05.exercise_3.sync(ingress, admin, triage, claim), "before you began the exercises")


def test_crash_check_fails_when_the_orchestrator_was_killed_instead(
    lab: Lab, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 5, begin(5, admin))
    claim, triage = _held_triage(lab, ingress)
    lab.triage.kill()
    check_gate("fraud").open()
    lab.triage.start()
    ingress.attach(triage)
    result = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)
    failed(result, "model calls all came from one process", "killing the triage's process")


def test_crash_check_names_the_gate_that_still_holds_the_fraud_check(
    lab: Lab, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 5, begin(5, admin))
    claim, triage = _held_triage(lab, ingress)
    started = time.monotonic()
    try:
        result = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)
    finally:
        check_gate("fraud").open()
    assert time.monotonic() - started < 15, "a triage held at a gate is judged at once"
    failed(result, "still held at its gate")
    assert "gate.open()" in result.hint and "attach" not in result.hint
    ingress.attach(triage)


def test_crash_check_names_a_paused_invocation_and_how_to_resume_it(
    lab: Lab, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learner who waits ~30 s between kill() and start() finds the fraud agent paused: the check says so."""
    monkeypatch.setitem(_core._began, 5, begin(5, admin))
    claim, triage = _held_triage(lab, ingress)
    lab.specialists.kill()
    fraud = admin.query(
        f"SELECT id FROM sys_invocation WHERE invoked_by_id = '{triage}' AND target_service_name = 'FraudAgent'"
    )[0]["id"]
    pause(admin, fraud)
    lab.specialists.start()
    result = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)
    failed(result, f"FraudAgent {fraud} is paused")
    assert f"admin.resume({fraud!r})" in result.hint
    admin.resume(fraud)
    result = check.lesson_05.exercise_3.sync(ingress, admin, triage, claim)  # no attach first: the check waits
    assert result.ok, result


def _skeleton(name: str) -> str:
    """The source of lesson 05's ConsultingAgent skeleton cell, serving under another name."""
    lesson = json.loads((Path(__file__).parents[1] / "notebooks" / "05_multi_agent.ipynb").read_text())
    sources = ["".join(c["source"]) for c in lesson["cells"] if c["cell_type"] == "code"]
    cell = next(s for s in sources if 'restate.VirtualObject("ConsultingAgent")' in s)
    return cell.replace('"ConsultingAgent"', repr(name))


_TODO_DONE = """    futures = [step(name) for name in SPECIALISTS]
    await restate.gather(*futures)
    return {name: (await future)["verdict"] for name, future in zip(SPECIALISTS, futures, strict=True)}
"""


@pytest.mark.parametrize("todo_done", [False, True])
def test_the_lessons_skeleton_is_refused_as_given_and_passes_with_its_todo_done(
    todo_done: bool, since_lab: Lab, ingress: Ingress, admin: Admin
) -> None:
    name = f"L05Skeleton{'Done' if todo_done else 'AsGiven'}Agent"
    source = _skeleton(name)
    given = '    return {name: (await step(name))["verdict"] for name in SPECIALISTS}\n'
    assert given in source, "the skeleton's TODO line is where the test expects it"
    if todo_done:
        source = source.replace(given, _TODO_DONE)
    namespace: dict[str, Any] = {}
    exec(compile(source, "lesson 05 skeleton", "exec"), namespace)

    async def serve_and_check() -> CheckResult:
        deployment = await serve_in_kernel([namespace["consulting"]], admin=admin)
        try:
            return await check.lesson_05.exercise_2(ingress, admin, name)
        finally:
            await deployment.stop()

    result = asyncio.run(serve_and_check())
    if todo_done:
        assert result.ok, result
    else:
        failed(result, "the three ran one after another")
