"""Lesson 10's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from agent_lib import check
from agent_lib.agents import patterns
from agent_lib.agents._common import user_message
from agent_lib.check import _core
from agent_lib.check._core import Began
from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.models import Call, Reply, Turn, default_model
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed

pytestmark = pytest.mark.slow


# --- exercise 1: desks, right and wrong ---------------------------------------------------------------


def _returns_script(turn: Turn) -> Reply:
    if turn.results:
        return f"Done: {turn.results[-1].text}."
    found = re.search(r"\b([A-Z]{2}-\d{4})\b", turn.text)
    return [Call("book_return", {"order_id": found.group(1)})] if found else "Which order?"


def _router(returns_to: str) -> Callable[[Turn], Reply]:
    def script(turn: Turn) -> Reply:
        text = turn.text.lower()
        if "return" in text:
            return [Call("transfer_to_agent", {"agent_name": returns_to})]
        if "refund" in text or "charged" in text:
            return [Call("transfer_to_agent", {"agent_name": "billing_agent"})]
        return "Billing or returns?"

    return script


def _desk(service: str, *, durable: bool, returns_to: str = "returns_agent") -> restate.VirtualObject:
    async def book_return(order_id: str) -> str:
        """Book the return of an order.

        Args:
            order_id: The order's number, e.g. "AB-1003".
        """

        async def work() -> str:
            return f"return of {order_id} booked"

        return await (restate_object_context().run_typed("book return", work) if durable else work())

    returns = Agent(
        model=default_model(_returns_script, name="returns_agent"),
        name="returns_agent",
        description="Books returns of orders.",
        instruction="Book the return with book_return.",
        tools=[book_return],
    )
    coordinator_name = f"{service.lower()}_coordinator"
    coordinator = Agent(
        model=default_model(_router(returns_to), name=coordinator_name),
        name=coordinator_name,
        instruction="Transfer returns to returns_agent and refunds to billing_agent.",
        sub_agents=[patterns.billing_agent(), returns],
    )
    runner = Runner(
        app=App(name=service.lower(), root_agent=coordinator, plugins=[RestatePlugin()]),
        session_service=RestateSessionService(),
    )
    desk = restate.VirtualObject(service)

    @desk.handler()
    async def ask(ctx: restate.ObjectContext, message: str) -> dict[str, str]:
        author, answer = "", ""
        async for event in runner.run_async(user_id=ctx.key(), session_id="desk", new_message=user_message(message)):
            if event.is_final_response() and event.content and event.content.parts and event.content.parts[0].text:
                author, answer = event.author, event.content.parts[0].text
        return {"agent": author, "answer": answer}

    return desk


returns_desk = _desk("L10ReturnsDesk", durable=True)
undurable_desk = _desk("L10UndurableDesk", durable=False)
misrouting_desk = _desk("L10MisroutingDesk", durable=True, returns_to="billing_agent")


# --- exercise 3: brief writers, right and wrong ------------------------------------------------------


def _writer(service: str, *, together: bool, writes: bool) -> restate.Service:
    writer = restate.Service(service)

    @writer.handler()
    async def brief(ctx: restate.Context, topics: list[str]) -> str:
        if together:
            calls = [ctx.service_call(patterns.research, arg=t) for t in topics]
            await restate.gather(*calls)
            facts = [await c for c in calls]
        else:
            facts = [await ctx.service_call(patterns.research, arg=t) for t in topics]
        if not writes:
            return " ".join(facts)
        return await ctx.service_call(patterns.write, arg={"task": "our policies", "facts": " ".join(facts)})

    return writer


brief_writer = _writer("L10BriefWriter", together=True, writes=True)
one_by_one_writer = _writer("L10OneByOneWriter", together=False, writes=True)
no_write_writer = _writer("L10NoWriteWriter", together=True, writes=False)

PATTERN_TARGETS = [
    f"agent_lib.agents.patterns:{n}"
    for n in ("desk_service", "research_service", "writer_service", "review_service", "loop_service")
]
MINE = [
    f"tests.test_check_lesson10:{n}"
    for n in (
        "returns_desk",
        "undurable_desk",
        "misrouting_desk",
        "brief_writer",
        "one_by_one_writer",
        "no_write_writer",
    )
]


@pytest.fixture(scope="module")
def began(restate_server: RestateServer) -> Began:
    return begin(10, Admin(restate_server.admin_url))


@pytest.fixture(scope="module")
def agents(restate_server: RestateServer, _kit_data: Path, began: Began) -> Iterator[AgentProcess]:
    """The lesson's pattern services and the right and wrong answers, in one process the tests kill."""
    proc = AgentProcess([*PATTERN_TARGETS, *MINE], admin=Admin(restate_server.admin_url), name="l10-check-agents")
    with proc:
        yield proc


@pytest.fixture
def since(agents: AgentProcess, began: Began, monkeypatch: pytest.MonkeyPatch) -> Began:
    """Count the exercises as begun before the agents' process registered."""
    monkeypatch.setitem(_core._began, 10, began)
    return began


def test_a_desk_with_a_returns_specialist_passes(since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_1.sync(ingress, admin, "L10ReturnsDesk")
    assert result.ok, result
    assert "returns_agent" in result.message and "one refund" in result.message


def test_a_returns_tool_with_no_durable_step_fails(since: Began, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_10.exercise_1.sync(ingress, admin, "L10UndurableDesk"), "no durable step named 'book return'")


def test_a_desk_that_sends_returns_to_billing_fails(since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_1.sync(ingress, admin, "L10MisroutingDesk")
    failed(result, "not a transfer_to_agent to returns_agent", "billing_agent")


def test_the_lessons_own_desk_fails(since: Began, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_10.exercise_1.sync(ingress, admin, "HelpDesk"), "not a transfer_to_agent to returns_agent")


def test_a_desk_served_before_the_exercises_is_refused(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    begin(10, admin)
    failed(check.lesson_10.exercise_1.sync(ingress, admin, "L10ReturnsDesk"), "before you began the exercises")


def test_the_brief_writer_that_gathers_passes(since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_3.sync(ingress, admin, "L10BriefWriter")
    assert result.ok, result


def test_research_one_after_the_other_fails(since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_3.sync(ingress, admin, "L10OneByOneWriter")
    failed(result, "the second research call started only after the first had answered")


def test_no_write_call_fails(since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_3.sync(ingress, admin, "L10NoWriteWriter")
    failed(result, "not Researcher twice and Writer once")


def _loop(agents: AgentProcess, ingress: Ingress, gate: str | None) -> str:
    """Run DraftLoop on a new key; kill and restart the process at `gate` (if any); return the invocation id."""
    held = Gate(gate).arm() if gate else None
    sent = ingress.send("DraftLoop", "improve", "our shipping policy", key=f"job-{uuid.uuid4().hex[:8]}")
    if held is not None:
        held.wait_reached(timeout=120, alive=lambda: agents.running)
        agents.kill()
        agents.start()
    ingress.attach(sent.invocation_id)
    return sent.invocation_id


def test_the_loop_killed_in_round_2_passes(agents: AgentProcess, since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_2.sync(ingress, admin, _loop(agents, ingress, "patterns.loop.round2"))
    assert result.ok, result
    assert "3 rounds in all" in result.message


def test_the_loop_killed_in_round_3_fails(agents: AgentProcess, since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_2.sync(ingress, admin, _loop(agents, ingress, "patterns.loop.round3"))
    failed(result, "round(s) [1, 2]", "later than round 2's start")


def test_the_loop_never_killed_fails(agents: AgentProcess, since: Began, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_10.exercise_2.sync(ingress, admin, _loop(agents, ingress, None))
    failed(result, "made by one process: no kill fell between them")


def test_another_services_invocation_is_refused(since: Began, ingress: Ingress, admin: Admin) -> None:
    sent = ingress.send("HelpDesk", "ask", "Where is my parcel for order AB-1002?", key=f"k-{uuid.uuid4().hex[:6]}")
    ingress.attach(sent.invocation_id)
    failed(check.lesson_10.exercise_2.sync(ingress, admin, sent.invocation_id), "not DraftLoop/improve")


def test_a_loop_from_before_the_exercises_is_refused(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    invocation_id = _loop(agents, ingress, None)
    begin(10, admin)
    failed(check.lesson_10.exercise_2.sync(ingress, admin, invocation_id), "before you began the exercises")


def test_checks_never_raise_on_nonsense(since: Began, ingress: Ingress, admin: Admin) -> None:
    for result in (
        check.lesson_10.exercise_1.sync(ingress, admin, "NoSuchDesk"),
        check.lesson_10.exercise_2.sync(ingress, admin, "not-an-id"),
        check.lesson_10.exercise_3.sync(ingress, admin, "NoSuchWriter"),
    ):
        failed(result)
