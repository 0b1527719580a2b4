"""Security: loopback-only listeners, no API key in any output, approvals only by allowed approvers,
and the awakeable id never reaches the model or the customer. docs/SECURITY.md says what this does and
does not protect.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_lib._paths import REPO_ROOT
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.gemini_stub import GeminiStub
from agent_lib.ledger import Ledger
from agent_lib.models import model_description
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import wait_for, wait_status

from .conftest import Evidence
from .helpers import pending_request

WEATHER, CLAIMS, APPROVALS = "WeatherAgent", "SecClaimsAgent", "SecClaimApprovals"
HOTEL = {"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}
FAKE_KEY = "AIzaSy" + uuid.uuid4().hex + "Proof"
"""Looks like a Google API key; unique per run, so a hit can only come from this run."""


@pytest.fixture(scope="module")
def agents(proof_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    env = {
        "PROOF_FAKE_KEY": FAKE_KEY,
        "CLAIMS_SERVICE_PREFIX": "Sec",
        "CLAIMS_APPROVAL_TIMEOUT": "1h",
        "CLAIMS_APPROVERS": "maria,sam",
    }
    targets = [f"tests.agents.keyed:{name}" for name in ("weather_service", "claims_service", "approvals_service")]
    proc = AgentProcess(targets, admin=Admin(proof_server.admin_url), env=env, name="keyed-agents")
    # Exec'd, not forked from the zygote: /proc/<pid>/environ, which the last test reads, is the environment a
    # process was exec'd with; a forked one's is the zygote's (its own is set after the fork, in os.environ).
    proc.forkable = False
    with proc.start(180):
        yield proc


def _listening(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


@pytest.mark.parametrize("what", ["Restate server (ingress, admin, node)", "agent process"])
def test_everything_listens_on_loopback_only(
    what: str, proof_server: RestateServer, agents: AgentProcess, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    pid = proof_server.pid if what.startswith("Restate") else agents.pid
    assert pid is not None
    addresses = _listening(pid)
    record = evidence.add(
        "security",
        request,
        check=f"{what} binds to 127.0.0.1 only (ss -ltnp)",
        holds=False,
        detail=", ".join(addresses),
    )
    record["holds"] = bool(addresses) and all(a.startswith("127.0.0.1:") for a in addresses)
    assert addresses, f"ss shows no listening socket of pid {pid}"
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
    if what.startswith("Restate"):
        ports = {int(a.rsplit(":", 1)[1]) for a in addresses}
        assert {proof_server.ingress_port, proof_server.admin_port, proof_server.node_port} <= ports


def _texts_with_key(texts: dict[str, str]) -> list[str]:
    return [where for where, text in texts.items() if FAKE_KEY in text]


def test_no_key_in_what_the_agents_print_journal_or_store(
    proof_server: RestateServer, agents: AgentProcess, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    """Run turns, a claim and bad input in a process whose environment holds the key; scan everything."""
    record = evidence.add(
        "security",
        request,
        check="no API key in agent logs, server log, journal, stored sessions or ledger",
        holds=False,
        detail="",
    )
    ingress, admin = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url)
    key = f"sec-{uuid.uuid4().hex[:8]}"
    weather = ingress.send(WEATHER, "run", "What is the weather in Oslo?", key=key).invocation_id
    assert ingress.attach(weather) == "The weather in Oslo is sunny, 72°F", "the agent must still run offline"
    claim = ingress.send(CLAIMS, "run", {"customer": "Bob", "amount": 12, "description": "coffee"}, key=key)
    assert ingress.attach(claim.invocation_id)["status"] == "paid"
    with pytest.raises(RestateError):
        ingress.call(WEATHER, "run", b"{broken", key=key, raw=True)
    agents.kill()
    agents.start(180)
    texts = {
        "agent process log": agents.log_path.read_text(errors="replace"),
        "server log": proof_server.log_path.read_text(errors="replace"),
        "stored state (all objects)": json.dumps(
            admin.query("SELECT service_name, service_key, key, value_utf8 FROM state")
        ),
        "journals (all invocations)": json.dumps(admin.query("SELECT id, entry_json FROM sys_journal")),
        "ledger": json.dumps([e.detail for e in Ledger(os.environ["AGENT_LEDGER"]).effects()]),
    }
    leaks = _texts_with_key(texts)
    sizes = ", ".join(f"{where} {len(text):,} chars" for where, text in texts.items())
    record.update(holds=not leaks, detail=f"scanned {sizes}; found in: {leaks or 'none'}")
    assert not leaks


def test_the_scan_finds_a_key_that_is_there(agents: AgentProcess) -> None:
    """The scan above is not blind: the key is in the agent process's environment, where it was put."""
    environ = Path(f"/proc/{agents.pid}/environ").read_bytes().decode(errors="replace")
    assert _texts_with_key({"environ": environ}) == ["environ"]


def test_no_key_in_the_doctor_or_model_description(
    monkeypatch: pytest.MonkeyPatch, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    record = evidence.add(
        "security",
        request,
        check="no API key in `python -m agent_lib doctor` or model_description()",
        holds=False,
        detail="",
    )
    with GeminiStub() as stub:  # the doctor asks Gemini about the key: the stub answers, and its 403 names the key
        env = {**os.environ, "GOOGLE_API_KEY": FAKE_KEY, "GEMINI_API_KEY": FAKE_KEY, "GOOGLE_GEMINI_BASE_URL": stub.url}
        doctor = subprocess.run(
            [sys.executable, "-m", "agent_lib", "doctor"], capture_output=True, text=True, env=env, timeout=300
        )
        stub.fault("denied")
        refused = subprocess.run(
            [sys.executable, "-m", "agent_lib", "doctor"], capture_output=True, text=True, env=env, timeout=300
        )
    monkeypatch.setenv("GOOGLE_API_KEY", FAKE_KEY)
    described = model_description()
    outputs = {
        "doctor": doctor.stdout + doctor.stderr,
        "doctor, key refused": refused.stdout + refused.stderr,
        "model_description": described,
    }
    leaks = _texts_with_key(outputs)
    record.update(holds=not leaks and "Gemini" in described, detail=f"model_description() says {described!r}")
    assert "Gemini" in described and "accepts the key in GOOGLE_API_KEY" in doctor.stdout
    assert "Gemini refused this key (403 PERMISSION_DENIED" in refused.stdout and "<your API key>" in refused.stdout
    assert not leaks


@pytest.mark.slow
def test_no_key_in_notebook_00_outputs(
    proof_server: RestateServer,
    agents: AgentProcess,
    monkeypatch: pytest.MonkeyPatch,
    evidence: Evidence,
    request: pytest.FixtureRequest,
) -> None:
    """Execute the setup notebook with the key in the kernel's environment; scan every output."""
    import nbclient
    import nbformat

    record = evidence.add(
        "security",
        request,
        check="no API key in the outputs of notebooks/00_setup.ipynb (executed with the key set)",
        holds=False,
        detail="",
    )
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(name, FAKE_KEY)
    monkeypatch.setenv("RESTATE_INGRESS_URL", proof_server.ingress_url)
    monkeypatch.setenv("RESTATE_ADMIN_URL", proof_server.admin_url)
    notebook = nbformat.read(REPO_ROOT / "notebooks" / "00_setup.ipynb", as_version=4)
    with GeminiStub() as stub:  # the doctor's key check asks it (no network here)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", stub.url)
        nbclient.NotebookClient(
            notebook, timeout=600, resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}
        ).execute()
    outputs = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    leaks = _texts_with_key({"outputs": outputs})
    record.update(holds=not leaks, detail=f"{len(notebook.cells)} cells run, {len(outputs):,} chars of output")
    assert "Gemini" in outputs, "the notebook should say it would use Gemini"
    assert not leaks


@pytest.fixture(scope="module")
def approved_claim(proof_server: RestateServer, agents: AgentProcess) -> dict[str, Any]:
    """A large claim; a wrong approver tries first; then maria approves it. Returns what the tests inspect."""
    ingress, admin = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url)
    key = f"sec-{uuid.uuid4().hex[:8]}"
    invocation_id = ingress.send(CLAIMS, "run", HOTEL, key=key).invocation_id
    pending = wait_for("the approval request", lambda: pending_request(admin, APPROVALS, key))
    wait_status(admin, invocation_id, "suspended")
    shown = ingress.call(APPROVALS, "show", key=key)
    pending_state = admin.state(APPROVALS, key)["pending"]
    ledger = Ledger(os.environ["AGENT_LEDGER"])
    before = (admin.state(APPROVALS, key), admin.state(CLAIMS, key), ledger.count())
    try:
        ingress.call(APPROVALS, "decide", {"approver": "eve", "approve": True, "reason": "trust me"}, key=key)
        refused: RestateError | None = None
    except RestateError as err:
        refused = err
    after = (admin.state(APPROVALS, key), admin.state(CLAIMS, key), ledger.count())
    status_after_refusal = admin.status(invocation_id)
    record = ingress.call(APPROVALS, "decide", {"approver": "maria", "approve": True, "reason": "ok"}, key=key)
    result = ingress.attach(invocation_id)
    return {
        "key": key,
        "invocation_id": invocation_id,
        "awakeable_id": pending["awakeable_id"],
        "shown": shown,
        "pending_state": pending_state,
        "refused": refused,
        "unchanged": before == after,
        "status_after_refusal": status_after_refusal,
        "decision": record,
        "result": result,
        "state": admin.state(CLAIMS, key),
        "journal": admin.journal(invocation_id),
        "payments": ledger.count("payment", invocation_id=invocation_id),
    }


def test_only_allowed_approvers_decide(
    approved_claim: dict[str, Any], evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    refused = approved_claim["refused"]
    record = evidence.add(
        "security",
        request,
        check="only allowed approvers can decide a claim",
        holds=False,
        detail=f"eve: {refused.status if refused else 'accepted'} {refused.message[:90] if refused else ''}",
    )
    record["holds"] = (
        refused is not None
        and refused.status == 403
        and approved_claim["unchanged"]
        and approved_claim["status_after_refusal"] == "suspended"
        and approved_claim["payments"] == 1
    )
    assert refused is not None and refused.status == 403, "a non-allowed approver was not refused"
    assert "is not allowed to approve claims" in refused.message
    assert approved_claim["unchanged"], "the refused decision changed state or the ledger"
    assert approved_claim["status_after_refusal"] == "suspended", "the claim stopped waiting"
    assert approved_claim["result"]["approver"] == "maria" and approved_claim["payments"] == 1


def test_the_awakeable_id_never_reaches_the_model_or_the_customer(
    approved_claim: dict[str, Any], evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    secret = approved_claim["awakeable_id"]
    session = approved_claim["state"]["session_store::claim"]
    runs = [r for r in approved_claim["journal"] if r["entry_type"] == "Command: Run"]
    places = {
        "stored session events (what the model sees)": session,
        "journaled model answers and steps (call LLM, Pay claim, store session)": json.dumps(runs),
        "the customer's reply and result": json.dumps(approved_claim["result"]),
        "ClaimApprovals/show": json.dumps(approved_claim["shown"]),
        "the decision record": json.dumps(approved_claim["decision"]),
    }
    found = [where for where, text in places.items() if secret in text]
    record = evidence.add(
        "security",
        request,
        check="the awakeable id never reaches the model's context or the customer's reply",
        holds=not found and secret in approved_claim["pending_state"],
        detail=f"absent from: {'; '.join(places)}. Present, as it must be, in ClaimApprovals' pending state",
    )
    assert session and "sign_" not in session, "an awakeable id is in the stored session"
    assert not found, f"the awakeable id leaked into: {found}"
    assert secret in approved_claim["pending_state"], "the scan is blind: the id must be in the pending request"
    assert record["holds"]


def test_internal_handlers_are_not_public(
    proof_server: RestateServer, agents: AgentProcess, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    ingress, key = Ingress(proof_server.ingress_url), f"sec-{uuid.uuid4().hex[:8]}"
    answers = []
    for handler in ("request", "expire"):
        with pytest.raises(RestateError, match="not public") as err:
            ingress.call(APPROVALS, handler, {"awakeable_id": "sign_forged"}, key=key)
        answers.append(f"{handler}: {err.value.status}")
    evidence.add(
        "security",
        request,
        check="nobody can file or expire an approval request through the ingress",
        holds=True,
        detail="; ".join(answers),
    )


def test_odd_keys_cannot_read_other_objects_state(
    proof_server: RestateServer, agents: AgentProcess, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    admin = Admin(proof_server.admin_url)
    sneaky = "x' OR '1'='1"
    state = admin.state(WEATHER, sneaky)
    evidence.add(
        "security",
        request,
        check="Admin.state quotes keys: a key like x' OR '1'='1 reads nothing",
        holds=state == {},
        detail=f"returned {state!r}",
    )
    assert state == {}


def test_security_doc_says_what_to_put_in_front() -> None:
    text = (REPO_ROOT / "docs" / "SECURITY.md").read_text()
    for phrase in ("127.0.0.1", "no authentication", "reverse proxy", "TLS", "admin API", "request signing"):
        assert re.search(re.escape(phrase), text, re.IGNORECASE), phrase
