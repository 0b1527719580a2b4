"""The capstone's claims desk: a conversation, the fan-out, an approval across a kill, effects once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.agents.capstone import AGENT, APPROVALS, DESK, EMAIL_KIND, TARGETS, claim_id, desk_script
from agent_lib.agents.specialists import checks_run
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.models import Call, Turn, uses_gemini
from agent_lib.observe import wait_for_status
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import wait_for

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

HELLO = "Hi, I am cust-ana, my policy is POL-1001."
CAR = "My car was rear-ended on 2025-09-14; the repair costs 2400 EUR."


@pytest.fixture(scope="module")
def desk(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="capstone-test")
    with proc:
        yield proc


def _turn(text: str, history: tuple[str, ...] = ()) -> Turn:
    return Turn(text=text, results=(), tools=("claim_status", "file_claim"), history=history, past_results=())


def test_the_script_files_a_claim_with_what_earlier_turns_said() -> None:
    reply = desk_script(_turn(CAR, history=(HELLO,)))
    assert reply == [
        Call(
            "file_claim",
            {
                "customer_id": "cust-ana",
                "policy_id": "POL-1001",
                "kind": "car",
                "amount": 2400.0,
                "incident_date": "2025-09-14",
                "description": CAR,
            },
        )
    ]
    assert "customer id" in str(desk_script(_turn(CAR)))
    assert desk_script(_turn("What is the status of my claim?")) == [Call("claim_status")]


@pytest.mark.slow
def test_a_claim_survives_a_kill_while_it_waits_for_approval(
    desk: AgentProcess, ingress: Ingress, admin: Admin, ledger: Ledger
) -> None:
    conversation = f"ana-{uuid.uuid4().hex[:6]}"
    claim = claim_id(conversation)
    assert "POL-1001" in ingress.call(DESK, "run", HELLO, key=conversation)
    sent = ingress.send(DESK, "run", CAR, key=conversation)
    pending = wait_for(f"claim {claim} to ask for approval", lambda: ingress.call(APPROVALS, "show", key=claim), 90)
    assert pending["amount"] == 1900.0 and "awakeable_id" not in pending

    wait_for_status(admin, sent.invocation_id, "suspended", timeout=60)
    desk.kill()
    assert admin.status(sent.invocation_id) == "suspended"
    desk.start()
    ingress.call(APPROVALS, "decide", {"approver": "maria", "approve": True, "reason": "photos checked"}, key=claim)
    reply = ingress.attach(sent.invocation_id)

    assert "approved by maria" in reply and "1,900.00 EUR" in reply
    assert checks_run(claim, ledger) == {"eligibility": 1, "fraud": 1, "policy": 1}
    assert sum(e.detail.get("claim") == claim for e in ledger.effects("payment")) == 1
    assert sum(e.detail.get("claim") == claim for e in ledger.effects(EMAIL_KIND)) == 1
    if not uses_gemini():
        assert ledger.count("model_call", invocation_id=sent.invocation_id) == 2
    steps = admin.steps(sent.invocation_id)
    assert steps.count("Email customer") == 1 and steps[-1] == "store session"

    status = ingress.call(DESK, "run", "What is the status of my claim?", key=conversation)
    assert claim in status and "approved" in status
    assert ingress.call(DESK, "claims", key=conversation)[claim]["status"] == "approved"


def test_a_denied_claim_pays_nothing_and_asks_no_one(
    desk: AgentProcess, ingress: Ingress, admin: Admin, ledger: Ledger
) -> None:
    conversation = f"ben-{uuid.uuid4().hex[:6]}"
    ingress.call(DESK, "run", "I am cust-ben, policy POL-1002.", key=conversation)
    reply = ingress.call(DESK, "run", "My luggage was lost on a flight on 2025-03-02: 800 EUR.", key=conversation)
    claim = claim_id(conversation)
    assert "denied" in reply and "not active" in reply
    assert ingress.call(APPROVALS, "show", key=claim) is None
    assert not admin.invocations(AGENT) or all(r["target_service_key"] != claim for r in admin.invocations(AGENT))
    assert sum(e.detail.get("claim") == claim for e in ledger.effects("payment")) == 0
    assert sum(e.detail.get("claim") == claim for e in ledger.effects(EMAIL_KIND)) == 1


def test_bad_input_is_refused_at_the_edge(desk: AgentProcess, ingress: Ingress) -> None:
    with pytest.raises(RestateError) as err:
        ingress.call(DESK, "run", 42, key="bad-input")
    assert err.value.status == 400 and "JSON string" in err.value.message
