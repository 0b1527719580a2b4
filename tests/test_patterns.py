"""Lesson 10's agents: routing with sub_agents, an agent as a tool, workflows as handlers; each killed mid-pattern."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.agents import FINISHED
from agent_lib.agents.patterns import (
    MAX_ROUNDS,
    PASS_SCORE,
    REFUND_KIND,
    billing_script,
    desk_script,
    lookups,
    model_call_audit,
    reviewer_script,
    score_of,
    writer_script,
)
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.gates import Gate
from agent_lib.ledger import Ledger
from agent_lib.models import Call, ToolResult, Turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

pytestmark = [pytest.mark.agent, pytest.mark.slow]  # a finished agent's tests: `make test-replay` runs them too

TARGETS = [
    f"agent_lib.agents.patterns:{name}"
    for name in (
        "desk_service",
        "agent_tool_service",
        "research_service",
        "writer_service",
        "review_service",
        "pipeline_service",
        "loop_service",
        "workflow_agents_service",
    )
]
REFUND = "I was charged twice for order AB-1001: refund it, please"


def _turn(text: str, *results: ToolResult) -> Turn:
    return Turn(text=text, results=results, tools=(), history=(), past_results=())


def test_the_coordinator_routes_by_topic() -> None:
    assert desk_script(_turn(REFUND)) == [Call("transfer_to_agent", {"agent_name": "billing_agent"})]
    assert desk_script(_turn("Where is my parcel AB-1002?")) == [
        Call("transfer_to_agent", {"agent_name": "shipping_agent"})
    ]
    assert isinstance(desk_script(_turn("Hello")), str)


def test_the_billing_agent_refunds_the_order_it_is_told() -> None:
    assert billing_script(_turn(REFUND)) == [Call("refund_order", {"order_id": "AB-1001"})]
    assert "Which order" in str(billing_script(_turn("refund me")))
    assert "refunded" in str(billing_script(_turn(REFUND, ToolResult("refund_order", {"result": "$40 refunded"}))))


def test_each_draft_is_better_and_the_third_passes() -> None:
    drafts = [
        writer_script(_turn("Task: our returns policy" + "".join(f"\nFeedback {i}: x" for i in range(n))))
        for n in range(3)
    ]
    assert [str(d).split(":")[0] for d in drafts] == ["Draft 1", "Draft 2", "Draft 3"]
    scores = [score_of(str(reviewer_script(_turn(str(d))))) for d in drafts]
    assert scores == [50, 70, 90] and scores[-1] >= PASS_SCORE > scores[1]
    assert score_of("Here is what I found. SCORE 70: add an example. Anything else?") == 70
    assert score_of("no score here") == 0


def test_the_finished_agents_name_the_patterns() -> None:
    assert {"agent_lib.agents.patterns:desk_service", "agent_lib.agents.patterns:loop_service"} <= set(FINISHED)


@pytest.fixture(scope="module")
def patterns(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The patterns' services in a process these tests kill and restart."""
    proc = AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="test-patterns")
    with proc:
        yield proc


def _kill_at(gate: Gate, patterns: AgentProcess, invocation_id: str) -> int:
    """Wait until the gate holds the pattern, SIGKILL its process, start it again; return the killed pid."""
    gate.wait_reached(timeout=120, alive=lambda: patterns.running)
    killed = patterns.pid
    assert killed is not None
    patterns.kill()
    patterns.start()
    return killed


def _no_model_call_repeated(admin: Admin, invocation_id: str) -> list[dict[str, object]]:
    audit = model_call_audit(admin, invocation_id)
    assert all(row["paid"] == row["journaled"] for row in audit), audit
    return audit


def test_the_coordinator_transfers_and_the_specialist_answers(
    patterns: AgentProcess, ingress: Ingress, admin: Admin, ledger: Ledger, key: str
) -> None:
    sent = ingress.send("HelpDesk", "ask", REFUND, key=key)
    answer = ingress.attach(sent.invocation_id)
    assert answer["agent"] == "billing_agent" and "$40.00 refunded" in answer["answer"]
    assert admin.steps(sent.invocation_id) == ["call LLM", "call LLM", "refund order", "call LLM", "store session"]
    assert [e.detail["agent"] for e in ledger.effects("model_call", invocation_id=sent.invocation_id)] == [
        "desk_agent",
        "billing_agent",
        "billing_agent",
    ]
    shipped = ingress.call("HelpDesk", "ask", "Where is my parcel for order AB-1002?", key=f"{key}-2")
    assert shipped["agent"] == "shipping_agent" and "AB-1002" in shipped["answer"]


def test_a_kill_between_the_transfer_and_the_tool_refunds_once(
    patterns: AgentProcess, ingress: Ingress, admin: Admin, ledger: Ledger, key: str
) -> None:
    gate = Gate("patterns.billing.refund").arm()
    sent = ingress.send("HelpDesk", "ask", REFUND, key=key)
    killed = _kill_at(gate, patterns, sent.invocation_id)
    answer = ingress.attach(sent.invocation_id)
    assert answer["agent"] == "billing_agent"
    assert ledger.count(REFUND_KIND, invocation_id=sent.invocation_id) == 1
    calls = ledger.effects("model_call", invocation_id=sent.invocation_id)
    assert [c.pid == killed for c in calls] == [True, True, False], "the transfer and billing's first call: once"
    _no_model_call_repeated(admin, sent.invocation_id)


def test_an_agent_tool_runs_inside_the_callers_journal_and_survives_a_kill(
    patterns: AgentProcess, ingress: Ingress, admin: Admin, ledger: Ledger, key: str
) -> None:
    gate = Gate("patterns.billing.refund").arm()
    sent = ingress.send("ToolDesk", "ask", "Please refund order AB-1002", key=key)
    killed = _kill_at(gate, patterns, sent.invocation_id)
    answer = ingress.attach(sent.invocation_id)
    assert answer["agent"] == "tool_desk_agent" and "$120.00 refunded" in answer["answer"]
    assert admin.steps(sent.invocation_id) == [
        "call LLM",
        "call LLM",
        "refund order",
        "call LLM",
        "call LLM",
        "store session",
    ]
    assert ledger.count(REFUND_KIND, invocation_id=sent.invocation_id) == 1
    calls = ledger.effects("model_call", invocation_id=sent.invocation_id)
    assert [(c.detail["agent"], c.pid == killed) for c in calls] == [
        ("tool_desk_agent", True),
        ("tool_billing_agent", True),
        ("tool_billing_agent", False),
        ("tool_desk_agent", False),
    ]


@pytest.mark.parametrize("kind", ["sequential", "parallel", "loop"])
def test_the_plugin_refuses_adks_workflow_agents(patterns: AgentProcess, ingress: Ingress, kind: str) -> None:
    with pytest.raises(RestateError) as err:
        ingress.call("WorkflowAgents", "run", kind)
    assert err.value.status == 500
    assert err.value.message == "RestatePlugin only supports LlmAgent agents."


def test_a_sequential_pipeline_killed_before_review_resumes_there(
    patterns: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    gate = Gate("patterns.pipeline.review").arm()
    sent = ingress.send("ContentPipeline", "sequential", "returns")
    killed = _kill_at(gate, patterns, sent.invocation_id)
    result = ingress.attach(sent.invocation_id)
    assert result["facts"].count("returns are free within 30 days") == 1 and result["score"] == 50
    audit = _no_model_call_repeated(admin, sent.invocation_id)
    assert [(r["service"], r["paid"]) for r in audit] == [
        ("ContentPipeline", 0),
        ("Researcher", 2),
        ("Writer", 1),
        ("Reviewer", 1),
    ]
    assert [r["pids"] == [killed] for r in audit[1:]] == [True, True, False], "research and write ran once, before"
    researcher = audit[1]["id"]
    assert [x["invocation_id"] for x in lookups("returns")].count(researcher) == 1


def test_a_parallel_fan_out_overlaps(patterns: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    topic = f"topic-{uuid.uuid4().hex[:6]}"
    topics = [f"{topic}-a", f"{topic}-b", f"{topic}-c"]
    sent = ingress.send("ContentPipeline", "parallel", topics)
    result = ingress.attach(sent.invocation_id)
    assert list(result) == topics
    done = [x for t in topics for x in lookups(t)]
    assert len(done) == 3
    assert max(x["started"] for x in done) < min(x["finished"] for x in done), "the three look-ups overlapped"
    _no_model_call_repeated(admin, sent.invocation_id)


def test_the_loop_keeps_its_rounds_and_resumes_mid_loop(
    patterns: AgentProcess, ingress: Ingress, admin: Admin, key: str
) -> None:
    gate = Gate("patterns.loop.round3").arm()
    sent = ingress.send("DraftLoop", "improve", "our returns policy", key=key)
    gate.wait_reached(timeout=120, alive=lambda: patterns.running)
    killed = patterns.pid
    patterns.kill()
    state = {k: json.loads(v) for k, v in admin.state("DraftLoop", key).items()}
    assert [r["round"] for r in state["rounds"]] == [1, 2] and state["best"]["score"] == 70
    patterns.start()
    result = ingress.attach(sent.invocation_id)
    assert result["rounds"] == 3 and result["passed"] and result["best"]["score"] == 90
    state = {k: json.loads(v) for k, v in admin.state("DraftLoop", key).items()}
    assert [r["score"] for r in state["rounds"]] == [50, 70, 90]
    audit = _no_model_call_repeated(admin, sent.invocation_id)
    agents = [r for r in audit if r["service"] in ("Writer", "Reviewer")]
    assert len(agents) == 6, "two agent calls a round, three rounds: none made twice"
    assert [r["pids"] == [killed] for r in agents] == [True] * 4 + [False] * 2
    assert MAX_ROUNDS > 3


@pytest.mark.parametrize(
    ("service", "handler", "body", "key", "message"),
    [
        ("HelpDesk", "ask", 42, "k", "must be a JSON string"),
        ("ContentPipeline", "sequential", "", None, "the topic must be a non-empty JSON string"),
        ("ContentPipeline", "parallel", "returns", None, "must be a JSON list of strings"),
        ("DraftLoop", "improve", ["x"], "k", "the task must be a non-empty JSON string"),
        ("Writer", "write", {"facts": "x"}, None, "the brief is not valid"),
    ],
)
def test_bad_input_is_a_400_that_says_what_to_send(
    patterns: AgentProcess, ingress: Ingress, service: str, handler: str, body: object, key: str | None, message: str
) -> None:
    with pytest.raises(RestateError) as err:
        ingress.call(service, handler, body, key=key)
    assert err.value.status == 400 and message in err.value.message
