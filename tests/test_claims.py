"""The claims agent: input checks, the approval handler, and the paid, approved, rejected and escalated paths."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import restate

from agent_lib.agents.claims import (
    ClaimsPolicy,
    claims_script,
    parse_duration,
    public_request,
    validate_claim,
    validate_decision,
)
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.models import Call, ToolResult, Turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import wait_for, wait_pending, wait_status

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

TARGETS = ["agent_lib.agents.claims:claims_service", "agent_lib.agents.claims:approvals_service"]
AGENT, APPROVALS = "TestClaimsAgent", "TestClaimApprovals"
HOTEL = {"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}

# ------------------------------------------------------------------ pure checks


def test_a_good_claim_is_cleaned_up() -> None:
    claim = validate_claim({"customer": " Alice ", "amount": 1800, "description": "hotel "})
    assert claim == {"customer": "Alice", "amount": 1800.0, "currency": "EUR", "description": "hotel"}


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ("reimburse me", "a claim is a JSON object"),
        ({**HOTEL, "amount": 0}, "must be positive"),
        ({**HOTEL, "amount": -5}, "must be positive"),
        ({**HOTEL, "amount": float("nan")}, "must be a number"),
        ({**HOTEL, "amount": float("inf")}, "must be a number"),
        ({**HOTEL, "amount": True}, "must be a number"),
        ({**HOTEL, "amount": "1800"}, "must be a number"),
        ({**HOTEL, "amount": 2_000_000}, "above the largest claim"),
        ({**HOTEL, "amount": 10.005}, "more than two decimal places"),
        ({**HOTEL, "currency": "euros"}, "three-letter code"),
        ({**HOTEL, "customer": ""}, '"customer"'),
        ({**HOTEL, "description": None}, '"description"'),
        ({**HOTEL, "description": "x" * 2001}, "the limit is 2000"),
        ({**HOTEL, "awakeable_id": "sign_x"}, "unknown claim fields"),
    ],
)
def test_a_bad_claim_is_a_400_that_says_why(claim: Any, message: str) -> None:
    with pytest.raises(restate.TerminalError, match=message) as err:
        validate_claim(claim)
    assert err.value.status_code == 400


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ([], "a decision is a JSON object"),
        ({"approve": True}, "say who decides"),
        ({"approver": "maria", "approve": "yes"}, "must be true or false"),
        ({"approver": "maria", "approve": False, "reason": "  "}, "needs a reason"),
        ({"approver": "maria", "approve": True, "reason": 3}, '"reason" must be a string'),
    ],
)
def test_a_bad_decision_is_a_400(decision: Any, message: str) -> None:
    with pytest.raises(restate.TerminalError, match=message) as err:
        validate_decision(decision)
    assert err.value.status_code == 400


def test_a_decision_names_its_approver_in_lowercase() -> None:
    assert validate_decision({"approver": " Maria ", "approve": True}) == ("maria", True, "")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("24h", 86400), ("1d", 86400), ("250ms", 0.25)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="write e.g. 30s, 5m, 24h"):
        parse_duration("soon")


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAIMS_SERVICE_PREFIX", "Demo")
    monkeypatch.setenv("CLAIMS_APPROVAL_TIMEOUT", "5s")
    monkeypatch.setenv("CLAIMS_APPROVERS", "lee, kim")
    policy = ClaimsPolicy.from_env()
    assert (policy.agent_name, policy.approvals_name) == ("DemoClaimsAgent", "DemoClaimApprovals")
    assert policy.approval_timeout == timedelta(seconds=5) and policy.approvers == ("lee", "kim")
    monkeypatch.setenv("CLAIMS_APPROVERS", "Lee Smith")
    with pytest.raises(ValueError, match="CLAIMS_APPROVERS"):
        ClaimsPolicy.from_env()


def test_public_request_drops_the_awakeable_id() -> None:
    assert public_request({"claim": "c1", "awakeable_id": "sign_1"}) == {"claim": "c1"}


def _turn(text: str, *results: str) -> Turn:
    return Turn(text, tuple(ToolResult("submit_claim", {"result": r}) for r in results), ("submit_claim",), (), ())


def test_offline_script_submits_then_answers_from_the_status() -> None:
    assert claims_script(_turn("I am Alice. Please reimburse 1800.00 EUR: hotel")) == [Call("submit_claim")]
    reply = claims_script(_turn("Please reimburse", "rejected: nothing is paid. The reason: no receipt."))
    assert reply == "I am sorry: a claims manager rejected your claim. Nothing is paid. The reason: no receipt."
    assert "expense claims" in str(claims_script(_turn("hello")))


# ------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def claims(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The claims services under test names, with a one-minute approval timeout."""
    env = {"CLAIMS_SERVICE_PREFIX": "Test", "CLAIMS_APPROVAL_TIMEOUT": "60s", "CLAIMS_APPROVERS": "maria,sam"}
    with AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), env=env, name="test-claims") as proc:
        yield proc


def decide(ingress: Ingress, key: str, approver: str, approve: bool, reason: str = "") -> Any:
    body = {"approver": approver, "approve": approve, "reason": reason}
    return ingress.call(APPROVALS, "decide", body, key=key)


def test_a_small_claim_is_paid_without_asking(
    ingress: Ingress, admin: Admin, claims: AgentProcess, ledger: Ledger, key: str
) -> None:
    sent = ingress.send(AGENT, "run", {"customer": "Bob", "amount": 1000, "description": "taxi"}, key=key)
    result = ingress.attach(sent.invocation_id)
    assert result["status"] == "paid" and result["reply"].startswith("Good news: your claim was paid.")
    assert admin.steps(sent.invocation_id) == ["call LLM", "Pay claim", "call LLM", "store session"]
    assert ledger.count("payment", invocation_id=sent.invocation_id) == 1
    assert admin.state(APPROVALS, key) == {}


def test_bad_claims_are_refused_over_http(ingress: Ingress, claims: AgentProcess, key: str) -> None:
    with pytest.raises(RestateError, match="must be positive") as err:
        ingress.call(AGENT, "run", {**HOTEL, "amount": -1}, key=key)
    assert err.value.status == 400
    with pytest.raises(RestateError, match="not valid JSON") as err:
        ingress.call(AGENT, "run", b"{oops", key=key, raw=True)
    assert err.value.status == 400


def test_a_large_claim_waits_and_completes_when_approved(
    ingress: Ingress, admin: Admin, claims: AgentProcess, ledger: Ledger, key: str
) -> None:
    sent = ingress.send(AGENT, "run", HOTEL, key=key)
    pending = wait_pending(admin, APPROVALS, key)
    assert pending["invocation_id"] == sent.invocation_id and pending["amount"] == 1800.0
    secret = pending["awakeable_id"]
    assert ingress.call(APPROVALS, "show", key=key) == public_request(pending)

    record = decide(ingress, key, "maria", True, "receipts ok")
    assert record["decision"] == "approved" and "awakeable_id" not in record
    result = ingress.attach(sent.invocation_id)
    assert (result["status"], result["approver"], result["reason"]) == ("approved", "maria", "receipts ok")
    assert ledger.count("payment", invocation_id=sent.invocation_id) == 1
    assert "Approval deadline" in [r["name"] for r in admin.journal(sent.invocation_id)]

    state = admin.state(AGENT, key)
    assert secret not in state["session_store::claim"] and secret not in json.dumps(result)
    assert "pending" not in admin.state(APPROVALS, key)


def test_a_wrong_approver_is_refused_and_the_claim_stays_pending(
    ingress: Ingress, admin: Admin, claims: AgentProcess, key: str
) -> None:
    sent = ingress.send(AGENT, "run", HOTEL, key=key)
    wait_pending(admin, APPROVALS, key)
    with pytest.raises(RestateError, match="'eve' is not allowed to approve claims") as err:
        decide(ingress, key, "eve", True, "trust me")
    assert err.value.status == 403
    assert "pending" in admin.state(APPROVALS, key)
    assert admin.status(sent.invocation_id) in ("running", "suspended")
    decide(ingress, key, "sam", False, "no receipt")
    assert ingress.attach(sent.invocation_id)["status"] == "rejected"


def test_a_rejection_pays_nothing_and_tells_the_customer_why(
    ingress: Ingress, admin: Admin, claims: AgentProcess, ledger: Ledger, key: str
) -> None:
    sent = ingress.send(AGENT, "run", HOTEL, key=key)
    wait_pending(admin, APPROVALS, key)
    with pytest.raises(RestateError, match="needs a reason") as err:
        decide(ingress, key, "maria", False)
    assert err.value.status == 400 and "pending" in admin.state(APPROVALS, key)
    decide(ingress, key, "maria", False, "hotel above the city rate")
    result = ingress.attach(sent.invocation_id)
    assert (result["status"], result["approver"], result["reason"]) == (
        "rejected",
        "maria",
        "hotel above the city rate",
    )
    assert "hotel above the city rate" in result["reply"]
    assert ledger.count("payment", invocation_id=sent.invocation_id) == 0


def test_nothing_to_decide_is_a_404_and_a_claim_runs_once(ingress: Ingress, claims: AgentProcess, key: str) -> None:
    with pytest.raises(RestateError, match="has no pending approval") as err:
        decide(ingress, key, "maria", True)
    assert err.value.status == 404
    ingress.call(AGENT, "run", {"customer": "Bob", "amount": 12, "description": "coffee"}, key=key)
    with pytest.raises(RestateError, match="already processed") as err:
        ingress.call(AGENT, "run", {"customer": "Bob", "amount": 12, "description": "coffee"}, key=key)
    assert err.value.status == 409


def test_nobody_can_file_or_expire_a_request_through_the_ingress(
    ingress: Ingress, claims: AgentProcess, key: str
) -> None:
    for handler in ("request", "expire"):
        with pytest.raises(RestateError, match="not public") as err:
            ingress.call(APPROVALS, handler, {"awakeable_id": "sign_forged"}, key=key)
        assert err.value.status == 400


@pytest.mark.slow
def test_a_waiting_claim_survives_a_kill_of_its_process(
    ingress: Ingress, admin: Admin, claims: AgentProcess, ledger: Ledger, key: str
) -> None:
    sent = ingress.send(AGENT, "run", HOTEL, key=key)
    wait_pending(admin, APPROVALS, key)
    wait_status(admin, sent.invocation_id, "suspended")
    claims.kill()
    try:
        time.sleep(2)
        assert admin.status(sent.invocation_id) == "suspended"
    finally:
        claims.start()
    decide(ingress, key, "maria", True, "ok")
    assert ingress.attach(sent.invocation_id)["status"] == "approved"
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2
    assert ledger.count("payment", invocation_id=sent.invocation_id) == 1


@pytest.mark.slow
def test_a_request_nobody_answers_is_escalated(
    restate_server: RestateServer, ingress: Ingress, admin: Admin, ledger: Ledger, key: str
) -> None:
    env = {"CLAIMS_SERVICE_PREFIX": "TestTimeout", "CLAIMS_APPROVAL_TIMEOUT": "2s"}
    with AgentProcess(TARGETS, admin=admin, env=env, name="test-claims-timeout"):
        sent = ingress.send("TestTimeoutClaimsAgent", "run", HOTEL, key=key)
        wait_pending(admin, "TestTimeoutClaimApprovals", key)
        result = ingress.attach(sent.invocation_id)
        assert result["status"] == "escalated" and result["reason"] == "no approver decided within 2 seconds"
        assert ledger.count("payment", invocation_id=sent.invocation_id) == 0
        wait_for(
            "the expired request dropped", lambda: "pending" not in admin.state("TestTimeoutClaimApprovals", key), 30
        )
        decision = json.loads(admin.state("TestTimeoutClaimApprovals", key)["decision"])
        assert decision["decision"] == "escalated" and "awakeable_id" not in decision
        with pytest.raises(RestateError, match="has no pending approval"):
            ingress.call("TestTimeoutClaimApprovals", "decide", {"approver": "maria", "approve": True}, key=key)
