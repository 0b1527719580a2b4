"""Server loss: restart the Restate server (same data dir) mid-invocation and mid-conversation; nothing is lost.

Node loss on the 3-node cluster is tests/test_cluster.py (one node SIGKILLed while 20 invocations are in
flight); `make reliability` runs it too and the report shows its outcome.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.gates import Gate
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.agents.probe_points import TARGETS, hook_name
from tests.helpers import wait_for, wait_status

from .conftest import Evidence
from .helpers import pending_request

WEATHER, CLAIMS, APPROVALS = "WeatherAgent", "ProofClaimsAgent", "ProofClaimApprovals"
HOTEL = {"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}


@pytest.fixture(scope="module")
def agents(proof_server: RestateServer, tmp_path_factory: pytest.TempPathFactory, _kit_data: Path) -> Iterator[Path]:
    gates = tmp_path_factory.mktemp("restart-gates")
    with AgentProcess(
        TARGETS, admin=Admin(proof_server.admin_url), env={"AGENT_GATE_DIR": str(gates)}, name="restart-agents"
    ).start(timeout=180):
        yield gates


def _restart(server: RestateServer, how: str) -> None:
    """Restart the server on its data; wait until its tables answer too (they lag its health check)."""
    server.restart(timeout=120, crash=how == "SIGKILL")
    admin = Admin(server.admin_url)

    def tables_answer() -> bool:
        try:
            admin.query("SELECT count(*) AS n FROM sys_invocation")
            admin.query("SELECT count(*) AS n FROM state")
        except RestateError:
            return False
        return True

    wait_for("the restarted server's tables answer", tables_answer, 120, every=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_server_restart_mid_invocation(
    proof_server: RestateServer, agents: Path, how: str, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    """The server goes down while the agent is inside the Get weather step; the invocation completes."""
    ingress, admin, ledger = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url), _ledger()
    key = f"restart-{uuid.uuid4().hex[:8]}"
    record = evidence.add(
        "restart",
        request,
        scenario="mid-invocation: the agent inside a tool step",
        restarts=1,
        how=how,
        survived=False,
        detail="",
    )
    gate = Gate(hook_name(key, "Get weather", "start"), agents).arm()
    invocation_id = ingress.send(WEATHER, "run", "What is the weather in Lisbon?", key=key).invocation_id
    gate.wait_reached(timeout=180)
    _restart(proof_server, how)
    gate.open()
    answer = Ingress(proof_server.ingress_url, timeout=300).attach(invocation_id)
    calls = ledger.count("model_call", invocation_id=invocation_id)
    record.update(
        survived=answer == "The weather in Lisbon is sunny, 72°F" and calls == 2,
        detail=f"same invocation {invocation_id} answered {answer!r}; model calls {calls}; "
        f"journal {admin.steps(invocation_id)}",
    )
    assert answer == "The weather in Lisbon is sunny, 72°F"
    assert calls == 2, "the first model call was journaled before the restart: it must not run again"
    assert admin.steps(invocation_id) == ["call LLM", "Get weather", "call LLM", "store session"]


@pytest.mark.slow
def test_server_restarts_while_a_claim_awaits_approval(
    proof_server: RestateServer, agents: Path, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    """A suspended claim survives a graceful restart and a crash of the server, then completes once."""
    ingress, admin, ledger = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url), _ledger()
    key = f"restart-{uuid.uuid4().hex[:8]}"
    record = evidence.add(
        "restart",
        request,
        scenario="mid-invocation: a claim suspended awaiting approval",
        restarts=2,
        how="SIGTERM, then SIGKILL",
        survived=False,
        detail="",
    )
    invocation_id = ingress.send(CLAIMS, "run", HOTEL, key=key).invocation_id
    before = wait_for("the approval request", lambda: pending_request(admin, APPROVALS, key))
    wait_status(admin, invocation_id, "suspended")
    _restart(proof_server, "SIGTERM")
    _restart(proof_server, "SIGKILL")
    assert pending_request(admin, APPROVALS, key) == before, "the pending request changed across restarts"
    ingress.call(APPROVALS, "decide", {"approver": "sam", "approve": True, "reason": "ok"}, key=key)
    result = ingress.attach(invocation_id)
    payments, calls = (
        ledger.count("payment", invocation_id=invocation_id),
        ledger.count("model_call", invocation_id=invocation_id),
    )
    record.update(
        survived=result["status"] == "approved" and payments == 1 and calls == 2,
        detail=f"status {result['status']}; payments {payments}; model calls {calls}",
    )
    assert (result["status"], result["approver"]) == ("approved", "sam")
    assert payments == 1 and calls == 2


@pytest.mark.slow
def test_server_restarts_mid_conversation(
    proof_server: RestateServer, agents: Path, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    """A session's memory survives a crash and a graceful restart of the server between turns."""
    admin = Admin(proof_server.admin_url)
    key = f"talk-{uuid.uuid4().hex[:8]}"
    record = evidence.add(
        "restart",
        request,
        scenario="mid-conversation: between turns of one session",
        restarts=2,
        how="SIGKILL, then SIGTERM",
        survived=False,
        detail="",
    )

    def ask(text: str) -> str:
        return str(Ingress(proof_server.ingress_url, timeout=300).call(WEATHER, "run", text, key=key))

    ask("What is the weather in Paris?")
    session = admin.state(WEATHER, key)
    _restart(proof_server, "SIGKILL")
    assert admin.state(WEATHER, key) == session, "the stored session changed across the crash"
    second = ask("Which city did I ask about?")
    ask("What is the weather in Rome?")
    _restart(proof_server, "SIGTERM")
    third = ask("Which city did I ask about?")
    record.update(
        survived=second == "You asked about Paris." and third == "You asked about Paris and Rome.",
        detail=f"after the crash: {second!r}; after the graceful restart: {third!r}",
    )
    assert second == "You asked about Paris."
    assert third == "You asked about Paris and Rome."


def _ledger() -> Ledger:
    return Ledger(os.environ["AGENT_LEDGER"])
