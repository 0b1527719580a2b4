"""Claims triage: the decision rule, the fan-out in parallel, and a crash of the orchestrator during it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_lib.agents.specialists import (
    SPECIALISTS,
    Verdict,
    all_overlap,
    check_gate,
    check_times,
    checks_run,
    evaluate,
    require_claim,
    sample_claim,
    seconds_env,
    wait_for_checks,
)
from agent_lib.agents.triage import decide
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

SPECIALIST_TARGETS = [
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
]
TRIAGE_TARGETS = ["agent_lib.agents.triage:triage_service", "agent_lib.agents.triage:tool_call_triage"]
SECONDS = {"eligibility": 1.0, "fraud": 1.5, "policy": 1.2}
"""Long enough that checks started together overlap even on a loaded machine."""


def _verdict(specialist: str, verdict: str, reason: str = "why", payout: float | None = None) -> Verdict:
    return Verdict(specialist=specialist, verdict=verdict, reason=reason, payout=payout)  # type: ignore[arg-type]


def _expected(claim: dict[str, Any]) -> dict[str, Any]:
    c = require_claim(claim)
    verdicts = [Verdict(specialist=s, **evaluate(s, c).model_dump()) for s in SPECIALISTS]
    return decide(verdicts).model_dump()


def test_all_pass_approves_with_the_policy_payout() -> None:
    decision = decide(
        [_verdict("policy", "pass", payout=900.0), _verdict("eligibility", "pass"), _verdict("fraud", "pass")]
    )
    assert decision.outcome == "approve" and decision.payout == 900.0
    assert [r.split(":")[0] for r in decision.reasons] == ["eligibility", "fraud", "policy"]


def test_a_review_refers_to_a_person() -> None:
    decision = decide(
        [
            _verdict("eligibility", "pass"),
            _verdict("fraud", "review", "cash only"),
            _verdict("policy", "pass", payout=50.0),
        ]
    )
    assert (decision.outcome, decision.payout, decision.reasons) == ("refer", 50.0, ["fraud: cash only"])


def test_a_fail_denies_even_with_a_review() -> None:
    decision = decide(
        [
            _verdict("eligibility", "fail", "expired"),
            _verdict("fraud", "review"),
            _verdict("policy", "pass", payout=50.0),
        ]
    )
    assert (decision.outcome, decision.payout, decision.reasons) == ("deny", 0.0, ["eligibility: expired"])


def test_a_missing_verdict_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"missing: \['fraud'\]"):
        decide([_verdict("eligibility", "pass"), _verdict("policy", "pass")])


@pytest.fixture(scope="module")
def processes(restate_server: RestateServer, _kit_data: Path) -> Iterator[tuple[AgentProcess, AgentProcess]]:
    """The specialists and the orchestrators, in two processes, so that one can be killed alone."""
    admin, env = Admin(restate_server.admin_url), seconds_env(**SECONDS)
    specialists = AgentProcess(SPECIALIST_TARGETS, env=env, admin=admin, name="test-triage-specialists")
    triage = AgentProcess(TRIAGE_TARGETS, env=env, admin=admin, name="test-triage")
    with specialists, triage:
        yield specialists, triage


def test_gather_runs_the_specialists_in_parallel(
    ingress: Ingress, admin: Admin, ledger: Ledger, processes: tuple[AgentProcess, AgentProcess]
) -> None:
    claim = sample_claim()
    sent = ingress.send("ClaimTriage", "triage", claim)
    report = ingress.attach(sent.invocation_id)
    assert report["decision"] == _expected(claim)
    assert [v["specialist"] for v in report["verdicts"]] == list(SPECIALISTS)
    assert checks_run(claim["claim_id"], ledger) == {"eligibility": 1, "fraud": 1, "policy": 1}
    assert all_overlap(check_times(claim["claim_id"], ledger))
    entries = [r["entry_type"] for r in admin.journal(sent.invocation_id)]
    assert entries.count("Command: Call") == 3 and admin.steps(sent.invocation_id) == []


@pytest.mark.parametrize(
    ("service", "handler", "keyed"), [("ClaimTriage", "triage_one_by_one", False), ("ToolCallTriage", "run", True)]
)
def test_one_by_one_and_tool_calls_run_in_turn(
    ingress: Ingress,
    ledger: Ledger,
    processes: tuple[AgentProcess, AgentProcess],
    service: str,
    handler: str,
    keyed: bool,
) -> None:
    claim = sample_claim(description="Paid cash only, no receipt.")
    report = ingress.call(service, handler, claim, key=claim["claim_id"] if keyed else None)
    assert report["decision"]["outcome"] == "refer" and report["decision"] == _expected(claim)
    times = sorted(check_times(claim["claim_id"], ledger), key=lambda t: t.started)
    assert [t.specialist for t in times] == list(SPECIALISTS)
    assert all(b.started >= a.finished for a, b in zip(times, times[1:], strict=False))


def test_tool_calls_are_journaled_in_the_models_order(
    ingress: Ingress, admin: Admin, processes: tuple[AgentProcess, AgentProcess]
) -> None:
    claim = sample_claim()
    sent = ingress.send("ToolCallTriage", "run", claim, key=claim["claim_id"])
    ingress.attach(sent.invocation_id)
    assert admin.steps(sent.invocation_id) == [
        "call LLM",
        "Check eligibility",
        "Check fraud",
        "Check policy",
        "call LLM",
        "store session",
    ]


def test_a_crash_during_the_fan_out_runs_nothing_twice(
    ingress: Ingress, admin: Admin, ledger: Ledger, processes: tuple[AgentProcess, AgentProcess]
) -> None:
    _, triage = processes
    claim = sample_claim(policy_id="POL-1003", customer_id="cust-chen", kind="home", amount=30_000.0)
    gate = check_gate("fraud").arm()
    try:
        sent = ingress.send("ClaimTriage", "triage", claim)
        wait_for_checks(claim["claim_id"], ["eligibility", "policy"], ledger=ledger)
        assert gate.wait_reached()["claim_id"] == claim["claim_id"]
        triage.kill()
        assert admin.status(sent.invocation_id) != "completed"
        gate.open()
        wait_for_checks(claim["claim_id"], ["fraud"], ledger=ledger)
    finally:
        gate.disarm()
        triage.start()
    report = ingress.attach(sent.invocation_id)
    assert report["decision"] == _expected(claim)
    assert report["decision"]["outcome"] == "refer"
    assert checks_run(claim["claim_id"], ledger) == {"eligibility": 1, "fraud": 1, "policy": 1}
    entries = [r["entry_type"] for r in admin.journal(sent.invocation_id)]
    assert entries.count("Command: Call") == 3


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        (b"not json", True, "not valid JSON"),
        ("a claim", False, "must be a JSON object"),
        (sample_claim(amount=0), False, "amount: Input should be greater than 0"),
    ],
)
def test_bad_input_is_a_400(
    ingress: Ingress, processes: tuple[AgentProcess, AgentProcess], body: Any, raw: bool, message: str
) -> None:
    with pytest.raises(RestateError, match=message) as err:
        ingress.call("ClaimTriage", "triage", body, raw=raw)
    assert err.value.status == 400


def test_tool_call_triage_wants_the_claim_id_as_key(
    ingress: Ingress, processes: tuple[AgentProcess, AgentProcess]
) -> None:
    claim = sample_claim()
    with pytest.raises(RestateError, match="/ToolCallTriage/" + claim["claim_id"] + "/run") as err:
        ingress.call("ToolCallTriage", "run", claim, key="another-claim")
    assert err.value.status == 400
