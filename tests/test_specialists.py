"""The claims specialists: their rules, their settings, and each one over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import restate

from agent_lib.agents._common import Malformed
from agent_lib.agents.specialists import (
    CheckTime,
    Claim,
    all_overlap,
    check_gate,
    checks_run,
    evaluate,
    one_at_a_time,
    require_claim,
    sample_claim,
    seconds_env,
    specialist_script,
    specialist_seconds,
)
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.models import ToolResult, Turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

SPECIALIST_TARGETS = [
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
]


def _claim(**changes: Any) -> Claim:
    return require_claim(sample_claim(**changes))


@pytest.mark.parametrize(
    ("specialist", "changes", "verdict", "reason"),
    [
        ("eligibility", {}, "pass", "was active on 2025-09-14"),
        ("eligibility", {"policy_id": "POL-9999"}, "fail", "there is no policy POL-9999"),
        ("eligibility", {"customer_id": "cust-ben"}, "fail", "cust-ben does not hold policy POL-1001"),
        ("eligibility", {"incident_date": "2024-12-31"}, "fail", "was not active on 2024-12-31"),
        ("fraud", {}, "pass", "nothing unusual"),
        ("fraud", {"description": "Stolen bike, NO RECEIPT, cash only"}, "review", "'cash only', 'no receipt'"),
        ("fraud", {"amount": 12_000.0}, "review", "over 10,000"),
        ("policy", {}, "pass", "pays 1,900.00 after the 500 deductible"),
        ("policy", {"kind": "travel"}, "fail", "does not cover travel claims"),
        ("policy", {"amount": 400.0}, "fail", "below the 500 deductible"),
    ],
)
def test_rules(specialist: str, changes: dict[str, Any], verdict: str, reason: str) -> None:
    finding = evaluate(specialist, _claim(**changes))
    assert finding.verdict == verdict
    assert reason in finding.reason


def test_policy_pays_at_most_its_limit() -> None:
    assert evaluate("policy", _claim(amount=50_000.0)).payout == 20_000.0
    assert evaluate("policy", _claim()).payout == 1_900.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("a claim", "must be a JSON object"),
        (Malformed("Expecting value"), "not valid JSON"),
        ({"claim_id": "c-1"}, "customer_id: Field required"),
        (sample_claim(amount=-5), "amount: Input should be greater than 0"),
        (sample_claim(incident_date="yesterday"), "incident_date"),
    ],
)
def test_bad_claims_are_400s_that_say_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(restate.TerminalError, match=message) as err:
        require_claim(data)
    assert err.value.status_code == 400


def test_sample_claims_get_fresh_ids() -> None:
    assert sample_claim()["claim_id"] != sample_claim()["claim_id"]
    assert sample_claim("c-7", amount=3.0) == {**sample_claim("c-7"), "amount": 3.0}


def test_seconds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPECIALIST_SECONDS", raising=False)
    assert specialist_seconds("fraud") == 1.0
    monkeypatch.setenv("SPECIALIST_SECONDS", seconds_env(fraud=2.5, policy=0)["SPECIALIST_SECONDS"])
    assert (specialist_seconds("fraud"), specialist_seconds("policy"), specialist_seconds("eligibility")) == (
        2.5,
        0.0,
        0.5,
    )


@pytest.mark.parametrize("spec", ["fraud=slow", "fraud=-1", "legal=1", "fraud"])
def test_bad_seconds_say_how_to_write_them(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv("SPECIALIST_SECONDS", spec)
    with pytest.raises(ValueError, match="write it like 'eligibility=1,fraud=2,policy=1.5'"):
        specialist_seconds("fraud")


def test_unknown_specialists_are_refused() -> None:
    with pytest.raises(ValueError, match="the specialists are eligibility, fraud, policy"):
        seconds_env(legal=1.0)
    with pytest.raises(ValueError, match="no specialist named 'legal'"):
        check_gate("legal")
    assert check_gate("fraud").name == "specialists.fraud.check"


def test_script_asks_for_all_tools_at_once_then_reports() -> None:
    script = specialist_script("check_eligibility", "check_fraud")
    first = Turn(text="triage", results=(), tools=("check_eligibility", "check_fraud"), history=(), past_results=())
    assert [c.name for c in script(first)] == ["check_eligibility", "check_fraud"]
    done = Turn(
        text="triage",
        results=(ToolResult("check_fraud", {"verdict": "review", "reason": "too large"}),),
        tools=first.tools,
        history=(),
        past_results=(),
    )
    assert script(done) == "fraud: review, too large"


def _times(*spans: tuple[float, float]) -> list[CheckTime]:
    return [CheckTime(specialist=f"s{i}", started=a, finished=b) for i, (a, b) in enumerate(spans)]


def test_overlap_and_one_at_a_time() -> None:
    together = _times((0.0, 1.0), (0.1, 2.0), (0.2, 1.5))
    in_turn = _times((0.0, 1.0), (1.0, 3.0), (3.1, 4.5))
    chained = _times((0.0, 1.0), (0.9, 2.0), (1.9, 3.0))
    assert all_overlap(together) and not one_at_a_time(together)
    assert one_at_a_time(in_turn) and not all_overlap(in_turn)
    assert not all_overlap(chained) and not one_at_a_time(chained)


@pytest.fixture(scope="module")
def specialists(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The three specialists in their own process, with quick checks."""
    env = seconds_env(eligibility=0.1, fraud=0.2, policy=0.1)
    with AgentProcess(
        SPECIALIST_TARGETS, env=env, admin=Admin(restate_server.admin_url), name="test-specialists"
    ) as proc:
        yield proc


@pytest.mark.parametrize(
    ("service", "key_field", "step"),
    [
        ("EligibilityAgent", "policy_id", "Check eligibility"),
        ("FraudAgent", "customer_id", "Check fraud"),
        ("PolicyAgent", None, "Check policy"),
    ],
)
def test_each_specialist_checks_once_durably(
    ingress: Ingress,
    admin: Admin,
    ledger: Ledger,
    specialists: AgentProcess,
    service: str,
    key_field: str | None,
    step: str,
) -> None:
    claim = sample_claim()
    sent = ingress.send(service, "check", claim, key=claim[key_field] if key_field else None)
    verdict = ingress.attach(sent.invocation_id)
    name = step.split()[-1]
    assert verdict["specialist"] == name and verdict["verdict"] == "pass"
    assert verdict["note"] == f"{name}: pass, {verdict['reason']}"
    assert admin.steps(sent.invocation_id)[:3] == ["call LLM", step, "call LLM"]
    assert checks_run(claim["claim_id"], ledger) == {name: 1}
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2


def test_a_keyed_specialist_refuses_the_wrong_key(ingress: Ingress, specialists: AgentProcess) -> None:
    claim = sample_claim()
    with pytest.raises(RestateError, match="call EligibilityAgent with the claim's policy_id as the key") as err:
        ingress.call("EligibilityAgent", "check", claim, key="POL-1002")
    assert err.value.status == 400
    assert checks_run(claim["claim_id"]) == {}


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        (b'{"claim_id": ', True, "not valid JSON"),
        ([1, 2], False, "must be a JSON object"),
        ({"claim_id": "c-1"}, False, "customer_id: Field required"),
    ],
)
def test_bad_input_is_a_400(ingress: Ingress, specialists: AgentProcess, body: Any, raw: bool, message: str) -> None:
    with pytest.raises(RestateError, match=message) as err:
        ingress.call("PolicyAgent", "check", body, raw=raw)
    assert err.value.status == 400
