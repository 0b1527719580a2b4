"""Lesson 11's agents: the orchestrator, a workflow as a tool, remote agents, errors, and what the plugin changes.

Each pattern runs on a private server, its journal is read, and it is killed (SIGKILL) mid-pattern: nothing that
finished before the kill runs again, and no journaled model call is paid for twice. The findings about the plugin
(callbacks, max_llm_calls, retries) are asserted here, and lesson 11 shows them.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import restate
from google.adk import Runner
from google.adk.agents.run_config import RunConfig
from google.adk.sessions import InMemorySessionService

from agent_lib import gemini
from agent_lib.agents._common import user_message
from agent_lib.agents.orchestration import (
    BUDGET_LIMIT,
    MAX_TASKS,
    MODEL_RUN_OPTIONS,
    SORRY,
    caught_gate,
    coordinator_script,
    editor_script,
    hook_counts,
    make_watched_agent,
    model_attempts,
    order_desk_script,
    plan_questions,
    plan_research,
    planner_script,
    publish_gate,
    research_gate,
    researcher_script,
    set_model_faults,
    terminal_cause,
    tick_gate,
    watched_script,
    writer_script,
)
from agent_lib.agents.specialists import check_gate, checks_run, sample_claim, seconds_env, wait_for_checks
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.gemini_stub import GeminiStub
from agent_lib.ledger import Ledger
from agent_lib.models import Call, ToolResult, Turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import wait_for

pytestmark = [pytest.mark.agent, pytest.mark.slow]  # a finished agent's tests: `make test-replay` runs them too

TARGETS = [
    "agent_lib.agents.orchestration:orchestrator_service",
    "agent_lib.agents.orchestration:researcher_service",
    "agent_lib.agents.orchestration:editor_service",
    "agent_lib.agents.orchestration:publish_workflow",
    "agent_lib.agents.orchestration:order_desk",
    "agent_lib.agents.orchestration:watched_service",
    "agent_lib.agents.orchestration:budgeted_service",
]
SPECIALISTS = [
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
]


def _turn(text: str, *results: ToolResult, tools: tuple[str, ...] = ()) -> Turn:
    return Turn(text=text, results=results, tools=tools, history=(), past_results=())


# --- the scripts, offline -----------------------------------------------------------------------


def test_the_planner_hands_out_four_questions_in_one_call() -> None:
    assert planner_script(_turn("Write a report on: heat pumps")) == [
        Call("plan_research", {"questions": plan_questions("heat pumps")})
    ]
    assert "Ask me for a report" in str(planner_script(_turn("hello")))


def test_the_researcher_looks_up_then_reports() -> None:
    assert researcher_script(_turn("What is X?")) == [Call("look_up", {"question": "What is X?"})]
    assert researcher_script(_turn("What is X?", ToolResult("look_up", {"result": "notes"}))) == "notes"


def test_the_writer_counts_the_findings() -> None:
    assert writer_script(_turn("Report on X.\n- a 1\n- b 2")) == "Report on X. This report merges 2 findings."


def test_the_editor_publishes_then_says_where() -> None:
    assert editor_script(_turn("Publish 'T': the body")) == [Call("publish", {"title": "T", "body": "the body"})]
    done = _turn("Publish 'T': b", ToolResult("publish", {"url": "https://x", "words": 3}))
    assert editor_script(done) == "Published at https://x (3 words)."


def test_the_coordinator_approves_only_two_passes() -> None:
    assert coordinator_script(_turn("claim")) == [Call("ask_eligibility_agent"), Call("ask_fraud_agent")]
    both = _turn(
        "c",
        ToolResult("ask_eligibility_agent", {"verdict": "pass"}),
        ToolResult("ask_fraud_agent", {"verdict": "review"}),
    )
    assert "refer to a person" in str(coordinator_script(both))


def test_the_help_desk_and_the_watched_scripts() -> None:
    assert order_desk_script(_turn("Where is A-1001?")) == [Call("find_order", {"order_id": "A-1001"})]
    assert order_desk_script(_turn("Track P-9")) == [Call("track_parcel", {"parcel_id": "P-9"})]
    assert "could not find" in str(order_desk_script(_turn("Track P-9", ToolResult("track_parcel", {"error": "no"}))))
    assert watched_script(_turn("tick 2 times")) == [Call("tick", {"n": 1})]
    assert watched_script(_turn("tick 1 time", ToolResult("tick", {"result": "tick 1"}))) == "Ticked 1 times."


def test_the_desk_s_run_options_are_the_gemini_policy_s() -> None:
    assert MODEL_RUN_OPTIONS.max_attempts == 3
    assert MODEL_RUN_OPTIONS.initial_retry_interval == timedelta(seconds=gemini.BACKOFF_FIRST_SECONDS)
    assert MODEL_RUN_OPTIONS.max_retry_interval == timedelta(seconds=gemini.BACKOFF_MAX_SECONDS)
    assert gemini.run_options().max_attempts is None


def test_terminal_cause_reads_through_adk_s_wrapping() -> None:
    terminal = restate.TerminalError("no", status_code=404)
    try:
        try:
            raise terminal
        except restate.TerminalError as err:
            raise RuntimeError("Error in plugin 'restate_plugin'") from err
    except RuntimeError as wrapped:
        assert terminal_cause(wrapped) is terminal
    assert terminal_cause(RuntimeError("plain")) is None


# --- the services, on a private server ----------------------------------------------------------


@pytest.fixture(scope="module")
def agents(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    with AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="test-orchestration") as proc:
        yield proc


@pytest.fixture(scope="module")
def specialists(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    env = seconds_env(eligibility=0.1, fraud=0.1, policy=0.1)
    with AgentProcess(SPECIALISTS, env=env, admin=Admin(restate_server.admin_url), name="test-orch-specialists") as p:
        yield p


@pytest.fixture(scope="module")
def coordinator(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    target = "agent_lib.agents.orchestration:coordinator_service"
    with AgentProcess(target, admin=Admin(restate_server.admin_url), name="test-coordinator") as proc:
        yield proc


def _research(ledger: Ledger, report_id: str) -> dict[int, int]:
    return dict(Counter(e.detail["index"] for e in ledger.effects("research") if e.detail["report_id"] == report_id))


def _calls(admin: Admin, invocation_id: str) -> list[str]:
    return [
        r["entry_type"] for r in admin.journal(invocation_id) if r["entry_type"] in ("Command: Call", "Command: Run")
    ]


def test_the_orchestrator_plans_fans_out_and_merges(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess
) -> None:
    report_id = f"r-{uuid.uuid4().hex[:8]}"
    sent = ingress.send("ReportOrchestrator", "write", {"report_id": report_id, "topic": "heat pumps"})
    report = ingress.attach(sent.invocation_id)
    assert [s["question"] for s in report["sections"]] == plan_questions("heat pumps")
    assert "merges 4 findings" in report["summary"]
    assert admin.steps(sent.invocation_id) == ["call LLM", "call LLM"]
    assert _calls(admin, sent.invocation_id) == ["Command: Run"] + ["Command: Call"] * MAX_TASKS + ["Command: Run"]
    assert _research(ledger, report_id) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2


def test_a_kill_after_half_the_research_runs_only_the_rest(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess
) -> None:
    report_id = f"r-{uuid.uuid4().hex[:8]}"
    gates = [research_gate(report_id, i).arm() for i in (2, 3)]
    sent = ingress.send("ReportOrchestrator", "write", {"report_id": report_id, "topic": "tidal power"})
    for gate in gates:
        gate.wait_reached(timeout=60, alive=lambda: agents.running)
    wait_for("the researchers that are not held", lambda: _research(ledger, report_id) == {0: 1, 1: 1}, 60, every=0.05)
    killed = agents.pid
    agents.kill()
    agents.start()
    report = ingress.attach(sent.invocation_id)
    assert "merges 4 findings" in report["summary"]
    assert _research(ledger, report_id) == {0: 1, 1: 1, 2: 1, 3: 1}
    calls = ledger.effects("model_call", invocation_id=sent.invocation_id)
    assert [e.pid for e in calls][0] == killed and calls[-1].pid == agents.pid and len(calls) == 2
    by_index = {e.detail["index"]: e for e in ledger.effects("research") if e.detail["report_id"] == report_id}
    assert {i for i, e in by_index.items() if e.pid == killed} == {0, 1}


def test_a_workflow_as_a_tool_survives_a_kill_inside_it(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    gate = publish_gate(key).arm()
    sent = ingress.send("EditorAgent", "edit", "Publish 'Tidal power': The sea moves twice a day.", key=key)
    gate.wait_reached(timeout=60, alive=lambda: agents.running)
    agents.kill()
    agents.start()
    answer = ingress.attach(sent.invocation_id)
    assert "Published at https://reports.example/" in answer
    assert admin.steps(sent.invocation_id) == ["call LLM", "call LLM", "store session"]
    assert "Command: Call" in _calls(admin, sent.invocation_id)
    publishes = [e for e in ledger.effects("publish") if e.detail["requested_by"] == key]
    renders = [e for e in ledger.effects("render") if e.detail["key"] == publishes[0].detail["key"]]
    assert len(publishes) == 1 and len(renders) == 1
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2


def test_remote_agents_are_called_durably_across_their_crash(
    ingress: Ingress, admin: Admin, ledger: Ledger, specialists: AgentProcess, coordinator: AgentProcess
) -> None:
    claim = sample_claim()
    gate = check_gate("fraud").arm()
    sent = ingress.send("ClaimCoordinator", "decide", claim, key=claim["claim_id"])
    wait_for_checks(claim["claim_id"], ["eligibility"], timeout=60)
    gate.wait_reached(timeout=60, alive=lambda: specialists.running)
    specialists.kill()
    specialists.start()
    decision = ingress.attach(sent.invocation_id)
    assert decision["verdicts"] == {"eligibility": "pass", "fraud": "pass"}
    assert checks_run(claim["claim_id"], ledger) == {"eligibility": 1, "fraud": 1}
    assert _calls(admin, sent.invocation_id) == [
        "Command: Run",
        "Command: Call",
        "Command: Call",
        "Command: Run",
        "Command: Run",
    ]
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2


# --- errors ---------------------------------------------------------------------------------------


def test_run_options_retry_the_model_call_then_succeed(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    set_model_faults(key, 2)
    sent = ingress.send("OrderDesk", "ask", "Where is A-1001?", key=key)
    assert "shipped on Monday" in ingress.attach(sent.invocation_id)
    assert model_attempts(sent.invocation_id, ledger) == 4
    assert admin.steps(sent.invocation_id) == ["call LLM", "Find order", "call LLM", "store session"]


def test_run_options_max_attempts_ends_the_turn_and_ask_answers_cleanly(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    set_model_faults(key, 5)
    sent = ingress.send("OrderDesk", "ask", "Where is A-1001?", key=key)
    answer = ingress.attach(sent.invocation_id)
    assert answer.startswith(SORRY) and "429" in answer
    time.sleep(1.5)
    assert model_attempts(sent.invocation_id, ledger) == 3


def test_a_tool_s_terminal_error_reaches_the_caller_or_the_model(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    with pytest.raises(RestateError, match="there is no order A-9") as err:
        ingress.call("OrderDesk", "ask_unguarded", "Where is A-9?", key=key)
    assert err.value.status == 404
    assert ingress.call("OrderDesk", "ask", "Where is A-9?", key=key) == f"{SORRY}: there is no order A-9."
    answer = ingress.call("OrderDesk", "ask", "Track P-9", key=key)
    assert "there is no parcel P-9" in answer and not answer.startswith(SORRY)


def test_a_caught_terminal_error_is_journaled_not_run_again_after_a_kill(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    gate = caught_gate(key).arm()
    sent = ingress.send("OrderDesk", "ask", "Where is A-404?", key=key)
    gate.wait_reached(timeout=60, alive=lambda: agents.running)
    agents.kill()
    agents.start()
    assert ingress.attach(sent.invocation_id) == f"{SORRY}: there is no order A-404."
    assert ledger.count("order_lookup", invocation_id=sent.invocation_id) == 1
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 1


# --- what the plugin changes ------------------------------------------------------------------------


def test_under_the_plugin_model_callbacks_are_skipped_and_max_llm_calls_does_not_hold(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("WatchedAgent", "run", "tick 3 times", key=key)
    assert ingress.attach(sent.invocation_id) == "Ticked 3 times."
    calls = ledger.count("model_call", invocation_id=sent.invocation_id)
    assert calls == 4 > BUDGET_LIMIT
    hooks = hook_counts(key, ledger)
    print(hooks)
    assert hooks["agent.before_model"] == hooks["agent.after_model"] == 0
    assert hooks["inner.before_model"] == hooks["inner.after_model"] == hooks["outer.after_model"] == 0
    assert hooks["outer.before_model"] >= calls and hooks["outer.on_event"] >= calls
    assert hooks["agent.before_tool"] >= 3


def test_a_budget_plugin_before_restate_plugin_makes_max_llm_calls_hold(
    ingress: Ingress, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("BudgetedAgent", "run", "tick 3 times", key=key)
    with pytest.raises(RestateError, match="more than 2 times in one turn") as err:
        ingress.attach(sent.invocation_id)
    assert err.value.status == 429
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == BUDGET_LIMIT


def test_plain_adk_fires_the_callbacks_and_holds_max_llm_calls(ledger: Ledger) -> None:
    from google.adk.agents.invocation_context import LlmCallsLimitExceededError

    session = f"plain-{uuid.uuid4().hex[:8]}"
    runner = Runner(
        app_name="plain_watched",
        agent=make_watched_agent(),
        session_service=InMemorySessionService(),  # type: ignore[no-untyped-call]
        auto_create_session=True,
    )

    async def run() -> None:
        async for _ in runner.run_async(
            user_id=session,
            session_id=session,
            new_message=user_message("tick 3 times"),
            run_config=RunConfig(max_llm_calls=BUDGET_LIMIT),
        ):
            pass

    import asyncio

    with pytest.raises(LlmCallsLimitExceededError):
        asyncio.run(run())
    hooks = hook_counts(session, ledger)
    print(hooks)
    assert hooks["agent.before_model"] == 3 and hooks["agent.after_model"] == 2


def test_replay_fires_the_outer_plugin_again_but_not_the_model(
    ingress: Ingress, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    gate = tick_gate(key).arm(skip=1)
    sent = ingress.send("WatchedAgent", "run", "tick 3 times", key=key)
    gate.wait_reached(timeout=60, alive=lambda: agents.running)
    before = hook_counts(key, ledger)["outer.before_model"]
    agents.kill()
    agents.start()
    assert ingress.attach(sent.invocation_id) == "Ticked 3 times."
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 4
    hooks = hook_counts(key, ledger)
    print(before, hooks)
    assert hooks["outer.before_model"] > 4
    assert hooks["agent.before_model"] == 0


def test_run_options_bound_gemini_s_own_retries_on_the_stub(
    ingress: Ingress, admin: Admin, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    """OrderDesk on the Gemini path: 5 faults in a row, max_attempts=3: exactly 3 requests reach Gemini."""
    target = "agent_lib.agents.orchestration:order_desk"
    try:
        with GeminiStub() as stub, AgentProcess(target, env=stub.env(), admin=admin, name="test-desk-gemini"):
            stub.fault("quota", times=5, retry_delay=1)
            since = time.time()
            sent = ingress.send("OrderDesk", "ask", "Where is A-1001?", key=key)
            answer = ingress.attach(sent.invocation_id)
            time.sleep(1.5)
            requests = stub.requests(since)
    finally:
        admin.register(agents.url)  # OrderDesk is served by the lesson's agents again, not by the stopped process
    assert answer.startswith(SORRY) and "429" in answer
    assert len(requests) == 3 and all(r.status == 429 for r in requests)
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 3


def test_plan_research_keeps_at_most_four_questions() -> None:
    class _Actions:
        skip_summarization = False

    class _Ctx:
        actions = _Actions()

    import asyncio

    got: dict[str, Any] = asyncio.run(plan_research([f"q{i}" for i in range(6)], _Ctx()))  # type: ignore[arg-type]
    assert got == {"questions": ["q0", "q1", "q2", "q3"]} and _Ctx.actions.skip_summarization


def test_except_terminal_error_misses_a_model_call_s_failure_adk_wraps_it(
    ingress: Ingress, ledger: Ledger, agents: AgentProcess, key: str
) -> None:
    assert ingress.call("OrderDesk", "ask_tour_style", "Where is A-9?", key=key) == f"{SORRY}: there is no order A-9."
    set_model_faults(key, 5)
    sent = ingress.send("OrderDesk", "ask_tour_style", "Where is A-1001?", key=key)
    with pytest.raises(
        RestateError, match="Error in plugin 'restate_plugin' during 'before_model_callback'|429"
    ) as err:
        ingress.attach(sent.invocation_id)
    assert SORRY not in err.value.message
    assert model_attempts(sent.invocation_id, ledger) == 3
