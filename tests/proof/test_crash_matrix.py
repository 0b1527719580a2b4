"""The crash matrix: SIGKILL the weather and the claims agent at every journal boundary, 3 times each.

The agents under test are the real ones (tests/agents/probes.py only adds hook points around the SDK's
`run_typed` and `select`). Each *round* stops one fresh invocation per kill point, each at its own
point (gates are named by object key), SIGKILLs the process once, starts it again on the same port
and attaches to every invocation. Each test case then checks one invocation of one round:

- it completed, under the same invocation id, with the crash-free answer;
- the model was not called again for a step already journaled (ledger "model_call" per invocation);
- exactly one payment, and no journaled step's body ran again;
- the kill really hit it: its process was the one killed, and it was not finished at that moment.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.agents.probe_points import TARGETS, hook_name
from tests.helpers import wait_for, wait_status

from .conftest import Evidence
from .helpers import pending_request

RUNS = (1, 2, 3)
"""Each kill point is hit in 3 rounds; `make test` runs the first (every point once), `make test-all` all three."""
WEATHER, CLAIMS, APPROVALS = "WeatherAgent", "ProofClaimsAgent", "ProofClaimApprovals"
QUESTION = "What is the weather in New York?"
HOTEL = {"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}
DECISION = {"approver": "maria", "approve": True, "reason": "receipts checked"}


@dataclass(frozen=True)
class Point:
    """One kill point: where an invocation is stopped (a hook point, or "suspended") before the SIGKILL."""

    agent: str
    id: str
    label: str
    step: str | None
    phase: str
    skip: int = 0
    decided: bool = False
    """Claims only: approve before the kill (the point lies after the decision)."""
    unjournaled: str | None = None
    """The step killed after its body ran but before its result was journaled: it may run again."""


POINTS = [
    Point("weather", "llm1-before", "before the first model call", "call LLM", "before"),
    Point(
        "weather",
        "llm1-done",
        "inside the first model call: answered, not journaled",
        "call LLM",
        "done",
        unjournaled="call LLM",
    ),
    Point("weather", "llm1-after", "after the first model call is journaled", "call LLM", "after"),
    Point("weather", "tool-start", "inside Get weather, before the lookup", "Get weather", "start"),
    Point(
        "weather",
        "tool-done",
        "inside Get weather: looked up, not journaled",
        "Get weather",
        "done",
        unjournaled="Get weather",
    ),
    Point("weather", "tool-after", "after Get weather is journaled", "Get weather", "after"),
    Point("weather", "llm2-after", "after the second model call is journaled", "call LLM", "after", skip=1),
    Point("weather", "store-before", 'before "store session"', "store session", "before"),
    Point("weather", "store-after", '"store session" journaled, before the reply', "store session", "after"),
    Point("claims", "llm1-before", "before the first model call", "call LLM", "before"),
    Point("claims", "llm1-after", "after the first model call is journaled", "call LLM", "after"),
    Point("claims", "awaiting", "awaiting approval, the process holding the invocation", "select", "before"),
    Point("claims", "suspended", "awaiting approval, the invocation suspended", None, "suspended"),
    Point("claims", "decided", "after the decision arrived, before paying", "select", "after", decided=True),
    Point("claims", "pay-start", "inside Pay claim, before the payment", "Pay claim", "start", decided=True),
    Point(
        "claims",
        "pay-done",
        "inside Pay claim: paid, not journaled",
        "Pay claim",
        "done",
        decided=True,
        unjournaled="Pay claim",
    ),
    Point("claims", "pay-after", "after Pay claim is journaled", "Pay claim", "after", decided=True),
    Point(
        "claims", "llm2-after", "after the second model call is journaled", "call LLM", "after", skip=1, decided=True
    ),
    Point("claims", "store-before", 'before "store session"', "store session", "before", decided=True),
]


@dataclass
class Outcome:
    """What one invocation of a round did."""

    invocation_id: str
    killed_pid: int | None = None
    reached_pid: int | None = None
    status_at_kill: str | None = None
    answer: Any = None
    model_calls: int = 0
    payments: int = 0
    steps: list[str] = field(default_factory=list)
    step_runs: dict[str, int] = field(default_factory=dict)


def _send(ingress: Ingress, agent: str, key: str) -> str:
    if agent == "weather":
        return ingress.send(WEATHER, "run", QUESTION, key=key).invocation_id
    return ingress.send(CLAIMS, "run", HOTEL, key=key).invocation_id


def _decide(ingress: Ingress, admin: Admin, key: str) -> None:
    wait_for(f"the approval request of {key}", lambda: pending_request(admin, APPROVALS, key), 180)
    ingress.call(APPROVALS, "decide", DECISION, key=key)


def _read(outcome: Outcome, admin: Admin, ledger: Ledger) -> None:
    inv = outcome.invocation_id
    outcome.model_calls = ledger.count("model_call", invocation_id=inv)
    outcome.payments = ledger.count("payment", invocation_id=inv)
    outcome.steps = admin.steps(inv)
    outcome.step_runs = dict(Counter(e.detail["step"] for e in ledger.effects("proof_step", invocation_id=inv)))


def _answer(agent: str, answer: Any) -> Any:
    return {k: v for k, v in answer.items() if k != "claim"} if agent == "claims" else answer


class Lab:
    """The private server, the probed agent process and the gates of the crash matrix."""

    def __init__(self, server: RestateServer, agents: AgentProcess, gates: Path, ledger: Ledger) -> None:
        self.server, self.agents, self.gates, self.ledger = server, agents, gates, ledger
        self.admin = Admin(server.admin_url)
        self.ingress = Ingress(server.ingress_url, timeout=300)
        self._rounds: dict[tuple[str, int], dict[str, Outcome] | Exception] = {}

    def crash_free(self, agent: str) -> Outcome:
        """Run one invocation with no gate armed and no kill."""
        outcome = Outcome(_send(self.ingress, agent, f"{agent}-free-{uuid.uuid4().hex[:8]}"))
        if agent == "claims":
            _decide(self.ingress, self.admin, self.admin.invocation(outcome.invocation_id)["target_service_key"])
        outcome.answer = _answer(agent, self.ingress.attach(outcome.invocation_id))
        _read(outcome, self.admin, self.ledger)
        return outcome

    def round(self, agent: str, run: int) -> dict[str, Outcome]:
        """Run (once) the round that kills every point of `agent` in repetition `run`; return its outcomes."""
        if (agent, run) not in self._rounds:
            try:
                self._rounds[(agent, run)] = self._round(agent, run)
            except Exception as err:  # noqa: BLE001 - every case of the round reports it
                self._rounds[(agent, run)] = err
        result = self._rounds[(agent, run)]
        if isinstance(result, Exception):
            raise AssertionError(f"the {agent} round {run} failed before its checks: {result}") from result
        return result

    def _round(self, agent: str, run: int) -> dict[str, Outcome]:
        points = [p for p in POINTS if p.agent == agent]
        tag = uuid.uuid4().hex[:6]
        keys = {p.id: f"{agent[0]}{run}-{p.id}-{tag}" for p in points}
        gates = {
            p.id: Gate(hook_name(keys[p.id], p.step, p.phase), self.gates).arm(skip=p.skip)
            for p in points
            if p.step is not None
        }
        outcomes = {p.id: Outcome(_send(self.ingress, agent, keys[p.id])) for p in points}
        for p in points:
            if p.decided:
                _decide(self.ingress, self.admin, keys[p.id])
        for p in points:
            if p.id in gates:
                report = gates[p.id].wait_reached(timeout=240, alive=lambda: self.agents.running)
                outcomes[p.id].reached_pid = int(report["pid"])
            else:
                wait_for(f"the request of {keys[p.id]}", lambda k=keys[p.id]: pending_request(self.admin, APPROVALS, k))
                wait_status(self.admin, outcomes[p.id].invocation_id, "suspended", 180)
        killed = self.agents.pid
        for outcome in outcomes.values():
            outcome.status_at_kill = self.admin.status(outcome.invocation_id)
            outcome.killed_pid = killed
        self.agents.kill()
        self.agents.start(timeout=180)
        for p in points:
            if p.agent == "claims" and not p.decided:
                _decide(self.ingress, self.admin, keys[p.id])
        for outcome in outcomes.values():
            outcome.answer = _answer(agent, self.ingress.attach(outcome.invocation_id))
            _read(outcome, self.admin, self.ledger)
        return outcomes


@pytest.fixture(scope="module")
def plain_runs(proof_server: RestateServer, _kit_data: Path) -> dict[str, tuple[Any, list[str]]]:
    """Crash-free runs of the finished agents served plainly (before the probed process takes their names)."""
    plain = AgentProcess(
        [
            "agent_lib.agents.weather:weather_service",
            "agent_lib.agents.claims:claims_service",
            "agent_lib.agents.claims:approvals_service",
        ],
        admin=Admin(proof_server.admin_url),
        env={"CLAIMS_SERVICE_PREFIX": "Plain", "CLAIMS_APPROVAL_TIMEOUT": "1h"},
        name="proof-plain",
    )
    ingress, admin = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url)
    with plain.start(timeout=180):
        weather = ingress.send(WEATHER, "run", QUESTION, key=f"plain-{uuid.uuid4().hex[:8]}").invocation_id
        weather_answer = ingress.attach(weather)
        key = f"plain-{uuid.uuid4().hex[:8]}"
        claim = ingress.send("PlainClaimsAgent", "run", HOTEL, key=key).invocation_id
        wait_for("the plain request", lambda: pending_request(admin, "PlainClaimApprovals", key))
        ingress.call("PlainClaimApprovals", "decide", DECISION, key=key)
        claim_answer = _answer("claims", ingress.attach(claim))
    return {"weather": (weather_answer, admin.steps(weather)), "claims": (claim_answer, admin.steps(claim))}


@pytest.fixture(scope="module")
def lab(
    plain_runs: dict[str, tuple[Any, list[str]]], proof_server: RestateServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    """The probed agents in one process, registered after the plain ones so that they own the names."""
    gates = tmp_path_factory.mktemp("proof-gates")
    agents = AgentProcess(
        TARGETS,
        admin=Admin(proof_server.admin_url),
        env={"AGENT_GATE_DIR": str(gates), "CLAIMS_APPROVERS": "maria,sam"},
        name="proof-agents",
    )
    agents.start(timeout=180)
    try:
        yield Lab(proof_server, agents, gates, Ledger(os.environ["AGENT_LEDGER"]))
    finally:
        agents.stop()


@pytest.fixture(scope="module")
def crash_free(lab: Lab) -> dict[str, Outcome]:
    return {agent: lab.crash_free(agent) for agent in ("weather", "claims")}


def test_the_probes_change_nothing(
    plain_runs: dict[str, tuple[Any, list[str]]], crash_free: dict[str, Outcome]
) -> None:
    """The probed agents answer and journal exactly like the finished agents served plainly."""
    for agent in ("weather", "claims"):
        assert plain_runs[agent] == (crash_free[agent].answer, crash_free[agent].steps)


def test_crash_free_runs_are_what_the_agents_promise(crash_free: dict[str, Outcome]) -> None:
    weather, claims = crash_free["weather"], crash_free["claims"]
    assert weather.answer == "The weather in New York is sunny, 72°F"
    assert weather.steps == ["call LLM", "Get weather", "call LLM", "store session"]
    assert claims.answer["status"] == "approved" and claims.payments == 1
    assert claims.steps == ["call LLM", "Pay claim", "call LLM", "store session"]
    assert weather.model_calls == claims.model_calls == 2


def _run_id(run: int) -> str:
    return f"run{run}"


def _case_id(point: Point) -> str:
    return f"{point.agent}-{point.id}"


@pytest.mark.slow
@pytest.mark.parametrize("run", [pytest.param(r, marks=[pytest.mark.full] if r > 1 else []) for r in RUNS], ids=_run_id)
@pytest.mark.parametrize("point", POINTS, ids=_case_id)
def test_crash_at_boundary(
    point: Point,
    run: int,
    lab: Lab,
    crash_free: dict[str, Outcome],
    evidence: Evidence,
    request: pytest.FixtureRequest,
) -> None:
    base = crash_free[point.agent]
    record = evidence.add(
        "crash",
        request,
        agent=point.agent,
        point=point.label,
        run=run,
        recovered=False,
        duplicate_effects=0,
        repeated_model_calls=0,
        step_reruns=0,
        model_calls=None,
        invocation_id=None,
        killed_pid=None,
        step_runs={},
    )
    outcome = lab.round(point.agent, run)[point.id]
    expected_calls = base.model_calls + (1 if point.unjournaled == "call LLM" else 0)
    reruns = {
        step: n - base.step_runs.get(step, 0)
        for step, n in outcome.step_runs.items()
        if n > base.step_runs.get(step, 0)
    }
    record.update(
        recovered=outcome.answer == base.answer,
        model_calls=outcome.model_calls,
        payments=outcome.payments if point.agent == "claims" else "-",
        repeated_model_calls=max(0, outcome.model_calls - expected_calls),
        duplicate_effects=max(0, outcome.payments - base.payments) + max(0, outcome.model_calls - expected_calls),
        step_reruns=sum(reruns.values()),
        step_runs=outcome.step_runs,
        invocation_id=outcome.invocation_id,
        killed_pid=outcome.killed_pid,
    )
    assert outcome.reached_pid in (None, outcome.killed_pid), "the gate was reached by another process"
    assert outcome.status_at_kill not in (None, "completed"), f"the kill came too late: {outcome.status_at_kill}"
    assert outcome.answer == base.answer
    assert outcome.model_calls == expected_calls, "the model was called again for a journaled step"
    assert outcome.payments == base.payments, "a payment was booked twice (or not at all)"
    assert outcome.steps == base.steps, "the journal differs from a crash-free run's"
    allowed = {point.unjournaled: 1} if point.unjournaled else {}
    assert reruns == allowed, f"steps ran again after the crash: {reruns}"


# --- lesson 10's patterns: kill points inside routing, an agent tool, the pipeline and the loop ------------------

PATTERN_TARGETS = [
    f"agent_lib.agents.patterns:{name}"
    for name in (
        "desk_service",
        "agent_tool_service",
        "research_service",
        "writer_service",
        "review_service",
        "pipeline_service",
        "loop_service",
    )
]


@dataclass(frozen=True)
class PatternPoint:
    """A kill point inside one of lesson 10's patterns: a gate of agent_lib.agents.patterns (`GATES`)."""

    id: str
    label: str
    service: str
    handler: str
    body: Any
    gate: str
    keyed: bool = True


PATTERN_POINTS = [
    PatternPoint(
        "desk-transfer",
        "routing: transferred to billing_agent, before its refund step",
        "HelpDesk",
        "ask",
        "I was charged twice for order AB-1001: refund it, please",
        "patterns.billing.refund",
    ),
    PatternPoint(
        "agent-tool",
        "AgentTool: inside the inner billing agent, before its refund step",
        "ToolDesk",
        "ask",
        "Please refund order AB-1002",
        "patterns.billing.refund",
    ),
    PatternPoint(
        "pipeline-review",
        "sequential: research and write done, before the review call",
        "ContentPipeline",
        "sequential",
        "returns",
        "patterns.pipeline.review",
        keyed=False,
    ),
    PatternPoint(
        "loop-round2",
        "evaluator-optimizer: round 1 done, round 2's writer starting",
        "DraftLoop",
        "improve",
        "our returns policy",
        "patterns.loop.round2",
    ),
    PatternPoint(
        "loop-round3",
        "evaluator-optimizer: rounds 1-2 done, round 3's writer starting",
        "DraftLoop",
        "improve",
        "our returns policy",
        "patterns.loop.round3",
    ),
]


@dataclass
class PatternRun:
    """What one run of a pattern did: its answer (without invocation ids), model calls and refunds over its tree."""

    invocation_id: str
    answer: Any
    model_calls: int
    journaled_calls: int
    refunds: int
    killed_pid: int | None = None
    status_at_kill: str | None = None


def _comparable(answer: Any) -> Any:
    """Drop the agent invocation ids a loop's answer names: they differ from run to run."""
    if isinstance(answer, dict) and isinstance(answer.get("best"), dict):
        return {**answer, "best": {k: v for k, v in answer["best"].items() if k not in ("writer", "reviewer")}}
    return answer


class PatternLab:
    """lesson 10's patterns in one process on the proof server, killed one invocation at a time."""

    def __init__(self, server: RestateServer, agents: AgentProcess, gates: Path, ledger: Ledger) -> None:
        self.agents, self.gates, self.ledger = agents, gates, ledger
        self.admin = Admin(server.admin_url)
        self.ingress = Ingress(server.ingress_url, timeout=300)

    def run(self, point: PatternPoint, *, kill: bool) -> PatternRun:
        """Send the pattern's request; with `kill`, SIGKILL the process at the point's gate and start it again."""
        from agent_lib.agents.patterns import REFUND_KIND, model_call_audit

        gate = Gate(point.gate, self.gates).arm() if kill else None
        key = f"{point.id}-{uuid.uuid4().hex[:8]}" if point.keyed else None
        sent = self.ingress.send(point.service, point.handler, point.body, key=key)
        killed, status = None, None
        if gate is not None:
            gate.wait_reached(timeout=240, alive=lambda: self.agents.running)
            killed, status = self.agents.pid, self.admin.status(sent.invocation_id)
            self.agents.kill()
            self.agents.start(timeout=180)
        answer = self.ingress.attach(sent.invocation_id)
        audit = model_call_audit(self.admin, sent.invocation_id)
        return PatternRun(
            sent.invocation_id,
            _comparable(answer),
            sum(r["paid"] for r in audit),
            sum(r["journaled"] for r in audit),
            sum(self.ledger.count(REFUND_KIND, invocation_id=r["id"]) for r in audit),
            killed,
            status,
        )


@pytest.fixture(scope="module")
def pattern_lab(proof_server: RestateServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatternLab]:
    gates = tmp_path_factory.mktemp("pattern-gates")
    agents = AgentProcess(
        PATTERN_TARGETS, admin=Admin(proof_server.admin_url), env={"AGENT_GATE_DIR": str(gates)}, name="proof-patterns"
    )
    agents.start(timeout=180)
    try:
        yield PatternLab(proof_server, agents, gates, Ledger(os.environ["AGENT_LEDGER"]))
    finally:
        agents.stop()


@pytest.fixture(scope="module")
def pattern_baselines(pattern_lab: PatternLab) -> dict[str, PatternRun]:
    return {p.id: pattern_lab.run(p, kill=False) for p in PATTERN_POINTS}


@pytest.mark.slow
@pytest.mark.parametrize(
    "run", [pytest.param(r, marks=[pytest.mark.full] if r > 1 else []) for r in RUNS], ids=[f"run{r}" for r in RUNS]
)
@pytest.mark.parametrize("point", PATTERN_POINTS, ids=[f"patterns-{p.id}" for p in PATTERN_POINTS])
def test_crash_inside_a_pattern(
    point: PatternPoint,
    run: int,
    pattern_lab: PatternLab,
    pattern_baselines: dict[str, PatternRun],
    evidence: Evidence,
    request: pytest.FixtureRequest,
) -> None:
    base = pattern_baselines[point.id]
    record = evidence.add(
        "crash",
        request,
        agent=f"patterns ({point.service})",
        point=point.label,
        run=run,
        recovered=False,
        duplicate_effects=0,
        repeated_model_calls=0,
        step_reruns=0,
        model_calls=None,
        invocation_id=None,
        killed_pid=None,
        step_runs={},
    )
    outcome = pattern_lab.run(point, kill=True)
    record.update(
        recovered=outcome.answer == base.answer,
        model_calls=outcome.model_calls,
        payments=outcome.refunds if base.refunds else "-",
        repeated_model_calls=max(0, outcome.model_calls - outcome.journaled_calls),
        duplicate_effects=max(0, outcome.refunds - base.refunds) + max(0, outcome.model_calls - base.model_calls),
        invocation_id=outcome.invocation_id,
        killed_pid=outcome.killed_pid,
    )
    assert outcome.status_at_kill not in (None, "completed"), f"the kill came too late: {outcome.status_at_kill}"
    assert outcome.answer == base.answer
    assert outcome.model_calls == outcome.journaled_calls == base.model_calls, "a model call was made twice"
    assert outcome.refunds == base.refunds, "a refund was booked twice (or not at all)"


# --- lesson 11's patterns: the orchestrator, a workflow as a tool, a caught error, a replayed plugin ---------------

ORCHESTRATION_TARGETS = [
    f"agent_lib.agents.orchestration:{name}"
    for name in (
        "orchestrator_service",
        "researcher_service",
        "editor_service",
        "publish_workflow",
        "order_desk",
        "watched_service",
    )
]


@dataclass(frozen=True)
class OrchestrationPoint:
    """A kill point inside one of lesson 11's patterns: the gates to arm (by kind), the request to send."""

    id: str
    label: str
    kind: str
    """"report" (ReportOrchestrator), "publish" (EditorAgent), "caught" (OrderDesk) or "tick" (WatchedAgent)."""
    held: tuple[int, ...] = ()
    """"report": the questions held at their gates; "tick": skip this many ticks before the held one."""


ORCHESTRATION_POINTS = [
    OrchestrationPoint(
        "report-half", "orchestrator: 2 of 4 researchers done, 2 inside their Look up", "report", (2, 3)
    ),
    OrchestrationPoint(
        "report-none", "orchestrator: planned, all 4 researchers inside their Look up", "report", (0, 1, 2, 3)
    ),
    OrchestrationPoint("publish-upload", "workflow as a tool: Render done, inside Upload", "publish"),
    OrchestrationPoint(
        "desk-caught", "errors: a tool's TerminalError caught in the handler, not yet answered", "caught"
    ),
    OrchestrationPoint("watched-tick2", "plugin callbacks: 2 model calls journaled, inside tick 2", "tick", (1,)),
]

_REQUESTS: dict[str, tuple[str, str, Any, bool]] = {
    "report": ("ReportOrchestrator", "write", None, False),
    "publish": ("EditorAgent", "edit", "Publish 'Tidal power': The sea rises and falls twice a day.", True),
    "caught": ("OrderDesk", "ask", "Where is order A-404?", True),
    "tick": ("WatchedAgent", "run", "tick 3 times", True),
}


@dataclass
class OrchestrationRun:
    """What one run of a lesson 11 pattern did, over its invocation and the ones it called."""

    invocation_id: str
    answer: Any
    effects: dict[str, int]
    model_calls: int
    journaled_calls: int
    killed_pid: int | None = None
    status_at_kill: str | None = None


class OrchestrationLab:
    """lesson 11's patterns in one process on the proof server, killed one invocation at a time."""

    def __init__(self, server: RestateServer, agents: AgentProcess, gates: Path, ledger: Ledger) -> None:
        self.agents, self.gates, self.ledger = agents, gates, ledger
        self.admin = Admin(server.admin_url)
        self.ingress = Ingress(server.ingress_url, timeout=300)

    def _gates(self, point: OrchestrationPoint, key: str) -> list[Gate]:
        from agent_lib.agents import orchestration as o

        names = {
            "report": [o.research_gate(key, i).name for i in point.held],
            "publish": [o.publish_gate(key).name],
            "caught": [o.caught_gate(key).name],
            "tick": [o.tick_gate(key).name],
        }[point.kind]
        skip = point.held[0] if point.kind == "tick" else 0
        return [Gate(name, self.gates).arm(skip=skip) for name in names]

    def _tree(self, invocation_id: str) -> list[str]:
        rows = self.admin.query(f"SELECT id FROM sys_invocation WHERE invoked_by_id = '{invocation_id}'")
        return [invocation_id, *(str(r["id"]) for r in rows)]

    def _effects(self, point: OrchestrationPoint, key: str, tree: list[str]) -> dict[str, int]:
        ledger = self.ledger
        if point.kind == "report":
            runs = Counter(e.detail["index"] for e in ledger.effects("research") if e.detail["report_id"] == key)
            return {f"research {i}": n for i, n in sorted(runs.items())}
        if point.kind == "publish":
            uploads = [e for e in ledger.effects("publish") if e.detail["requested_by"] == key]
            renders = [e for e in ledger.effects("render") if e.detail["key"] in {u.detail["key"] for u in uploads}]
            return {"publish": len(uploads), "render": len(renders)}
        if point.kind == "caught":
            return {"order_lookup": sum(ledger.count("order_lookup", invocation_id=i) for i in tree)}
        ticks = Counter(e.detail["n"] for e in ledger.effects("tick") if e.detail["session"] == key)
        return {f"tick {n}": c for n, c in sorted(ticks.items())}

    def run(self, point: OrchestrationPoint, *, kill: bool) -> OrchestrationRun:
        """Send the pattern's request; with `kill`, SIGKILL the process once its gates are reached, and restart it."""
        import re

        service, handler, body, keyed = _REQUESTS[point.kind]
        key = f"{point.id}-{uuid.uuid4().hex[:8]}"
        gates = self._gates(point, key) if kill else []
        if point.kind == "report":
            body = {"report_id": key, "topic": "tidal power"}
        sent = self.ingress.send(service, handler, body, key=key if keyed else None)
        killed, status = None, None
        if gates:
            for gate in gates:
                gate.wait_reached(timeout=240, alive=lambda: self.agents.running)
            if point.kind == "report":
                done = 4 - len(point.held)
                finished = (
                    f"SELECT id FROM sys_invocation WHERE invoked_by_id = '{sent.invocation_id}' "
                    "AND status = 'completed'"
                )
                wait_for("the researchers that are not held", lambda: len(self.admin.query(finished)) >= done, 120)
            killed, status = self.agents.pid, self.admin.status(sent.invocation_id)
            self.agents.kill()
            self.agents.start(timeout=180)
        answer = self.ingress.attach(sent.invocation_id)
        if point.kind == "report":
            answer = ([s["question"] for s in answer["sections"]], answer["summary"])
        elif point.kind == "publish":
            answer = re.sub(r"https://reports\.example/\S+", "<url>", answer)
        tree = self._tree(sent.invocation_id)
        return OrchestrationRun(
            sent.invocation_id,
            answer,
            self._effects(point, key, tree),
            sum(self.ledger.count("model_call", invocation_id=i) for i in tree),
            sum(self.admin.steps(i).count("call LLM") for i in tree),
            killed,
            status,
        )


@pytest.fixture(scope="module")
def orchestration_lab(
    proof_server: RestateServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrchestrationLab]:
    gates = tmp_path_factory.mktemp("orchestration-gates")
    agents = AgentProcess(
        ORCHESTRATION_TARGETS,
        admin=Admin(proof_server.admin_url),
        env={"AGENT_GATE_DIR": str(gates)},
        name="proof-orchestration",
    )
    agents.start(timeout=180)
    try:
        yield OrchestrationLab(proof_server, agents, gates, Ledger(os.environ["AGENT_LEDGER"]))
    finally:
        agents.stop()


@pytest.fixture(scope="module")
def orchestration_baselines(orchestration_lab: OrchestrationLab) -> dict[str, OrchestrationRun]:
    return {p.id: orchestration_lab.run(p, kill=False) for p in ORCHESTRATION_POINTS}


@pytest.mark.slow
@pytest.mark.parametrize("run", [pytest.param(r, marks=[pytest.mark.full] if r > 1 else []) for r in RUNS], ids=_run_id)
@pytest.mark.parametrize("point", ORCHESTRATION_POINTS, ids=[f"orchestration-{p.id}" for p in ORCHESTRATION_POINTS])
def test_crash_inside_an_orchestration(
    point: OrchestrationPoint,
    run: int,
    orchestration_lab: OrchestrationLab,
    orchestration_baselines: dict[str, OrchestrationRun],
    evidence: Evidence,
    request: pytest.FixtureRequest,
) -> None:
    base = orchestration_baselines[point.id]
    record = evidence.add(
        "crash",
        request,
        agent=f"orchestration ({_REQUESTS[point.kind][0]})",
        point=point.label,
        run=run,
        recovered=False,
        duplicate_effects=0,
        repeated_model_calls=0,
        step_reruns=0,
        model_calls=None,
        invocation_id=None,
        killed_pid=None,
        step_runs={},
    )
    outcome = orchestration_lab.run(point, kill=True)
    extra = sum(max(0, n - base.effects.get(k, 0)) for k, n in outcome.effects.items())
    record.update(
        recovered=outcome.answer == base.answer,
        model_calls=outcome.model_calls,
        payments="-",
        repeated_model_calls=max(0, outcome.model_calls - outcome.journaled_calls),
        duplicate_effects=extra + max(0, outcome.model_calls - base.model_calls),
        step_runs=outcome.effects,
        invocation_id=outcome.invocation_id,
        killed_pid=outcome.killed_pid,
    )
    assert outcome.status_at_kill not in (None, "completed"), f"the kill came too late: {outcome.status_at_kill}"
    assert outcome.answer == base.answer
    assert outcome.effects == base.effects, "an effect ran twice (or not at all)"
    assert outcome.model_calls == outcome.journaled_calls == base.model_calls, "a model call was made twice"
