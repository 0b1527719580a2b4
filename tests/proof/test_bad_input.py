"""Bad input, over HTTP to the agents and through agent_lib's APIs: a clear refusal, and nothing changes.

Every HTTP case checks, besides the answer and its message: the object's state and the whole ledger
are the same before and after, and no invocation of that key is left running, backing off or paused.
tests/test_weather.py and tests/test_claims.py check a few of these inputs too; here every case also
checks the ledger and that nothing is left in flight, and goes into the reliability report.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer, ServerError, free_port
from agent_lib.serving import AgentProcess, ServingError
from tests.helpers import wait_for, wait_status

from .conftest import Evidence
from .helpers import in_flight, pending_request

WEATHER, CLAIMS, APPROVALS = "WeatherAgent", "BadClaimsAgent", "BadClaimApprovals"
HOTEL = {"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}
ODD_KEY = "a b/c ünï 🙂?#%"


@dataclass
class Lab:
    ingress: Ingress
    admin: Admin
    ledger: Ledger
    session: str
    """A weather session with one turn."""
    paid: str
    """A small claim, paid."""
    pending: str
    """A large claim awaiting approval."""
    pending_invocation: str
    decided: str
    """A large claim approved; its awakeable id is kept in `decided_awakeable`."""
    decided_awakeable: str
    decided_invocation: str


@pytest.fixture(scope="module")
def lab(proof_server: RestateServer, _kit_data: Path) -> Iterator[Lab]:
    env = {"CLAIMS_SERVICE_PREFIX": "Bad", "CLAIMS_APPROVAL_TIMEOUT": "1h", "CLAIMS_APPROVERS": "maria,sam"}
    targets = [
        "agent_lib.agents.weather:weather_service",
        "agent_lib.agents.claims:claims_service",
        "agent_lib.agents.claims:approvals_service",
    ]
    ingress, admin = Ingress(proof_server.ingress_url, timeout=300), Admin(proof_server.admin_url)
    with AgentProcess(targets, admin=admin, env=env, name="bad-input-agents").start(timeout=180):
        tag = uuid.uuid4().hex[:6]
        session, paid, pending, decided = (f"{n}-{tag}" for n in ("session", "paid", "pending", "decided"))
        ingress.call(WEATHER, "run", "What is the weather in Rome?", key=session)
        ingress.call(CLAIMS, "run", {"customer": "Bob", "amount": 12, "description": "coffee"}, key=paid)
        pending_inv = ingress.send(CLAIMS, "run", HOTEL, key=pending).invocation_id
        decided_inv = ingress.send(CLAIMS, "run", HOTEL, key=decided).invocation_id
        request = wait_for("the request to decide", lambda: pending_request(admin, APPROVALS, decided))
        wait_for("the pending request", lambda: pending_request(admin, APPROVALS, pending))
        ingress.call(APPROVALS, "decide", {"approver": "maria", "approve": True, "reason": "ok"}, key=decided)
        assert ingress.attach(decided_inv)["status"] == "approved"
        yield Lab(
            ingress,
            admin,
            Ledger(os.environ["AGENT_LEDGER"]),
            session,
            paid,
            pending,
            pending_inv,
            decided,
            request["awakeable_id"],
            decided_inv,
        )


@dataclass(frozen=True)
class Case:
    """One bad input: where it goes, what is sent, and what the caller must be told."""

    id: str
    target: str
    input: str
    send: Callable[[Lab], Any]
    status: int | None
    message: str
    watch: Callable[[Lab], list[tuple[str, str]]]
    """The (service, key) objects whose state must not change."""


def _weather(body: Any, *, raw: bool = False, handler: str = "run") -> Callable[[Lab], Any]:
    return lambda lab: lab.ingress.call(WEATHER, handler, body, key=lab.session, raw=raw)


def _claim(body: Any, *, raw: bool = False) -> Callable[[Lab], Any]:
    return lambda lab: lab.ingress.call(CLAIMS, "run", body, key=lab.paid, raw=raw)


def _decide(body: Any, *, raw: bool = False, key: str = "pending") -> Callable[[Lab], Any]:
    return lambda lab: lab.ingress.call(APPROVALS, "decide", body, key=getattr(lab, key), raw=raw)


def _session(lab: Lab) -> list[tuple[str, str]]:
    return [(WEATHER, lab.session)]


def _paid(lab: Lab) -> list[tuple[str, str]]:
    return [(CLAIMS, lab.paid), (APPROVALS, lab.paid)]


def _pending(lab: Lab) -> list[tuple[str, str]]:
    return [(CLAIMS, lab.pending), (APPROVALS, lab.pending)]


def _decided(lab: Lab) -> list[tuple[str, str]]:
    return [(CLAIMS, lab.decided), (APPROVALS, lab.decided)]


HTTP_CASES = [
    Case("empty-message", "WeatherAgent/run", '""', _weather(""), 400, "the message is empty", _session),
    Case("not-a-string", "WeatherAgent/run", "[1, 2]", _weather([1, 2]), 400, "must be a JSON string", _session),
    Case("no-body", "WeatherAgent/run", "(no body)", _weather(b"", raw=True), 400, "Empty body not allowed", _session),
    Case(
        "malformed-json",
        "WeatherAgent/run",
        '{"unterminated',
        _weather(b'{"unterminated', raw=True),
        400,
        "not valid JSON",
        _session,
    ),
    Case(
        "invalid-utf8",
        "WeatherAgent/run",
        "bytes ff fe",
        _weather(b'"\xff\xfe"', raw=True),
        400,
        "not valid JSON",
        _session,
    ),
    Case(
        "oversized-message",
        "WeatherAgent/run",
        "a 1 MB string",
        _weather("x" * 1_000_000),
        400,
        "the limit is 8000",
        _session,
    ),
    Case(
        "oversized-body",
        "WeatherAgent/run",
        "a 40 MB string",
        _weather("x" * 40_000_000),
        413,
        "length limit exceeded",
        _session,
    ),
    Case(
        "unknown-handler",
        "WeatherAgent/nope",
        '"hi"',
        _weather("hi", handler="nope"),
        404,
        "the handler 'nope' was not found",
        _session,
    ),
    Case(
        "unknown-service",
        "NoSuchAgent/run",
        '"hi"',
        lambda lab: lab.ingress.call("NoSuchAgent", "run", "hi", key=lab.session),
        404,
        "NoSuchAgent",
        _session,
    ),
    Case(
        "claim-not-an-object",
        "ClaimsAgent/run",
        '"reimburse me"',
        _claim("reimburse me"),
        400,
        "a claim is a JSON object",
        _paid,
    ),
    Case(
        "negative-amount",
        "ClaimsAgent/run",
        "amount -50",
        _claim({**HOTEL, "amount": -50}),
        400,
        "must be positive",
        _paid,
    ),
    Case(
        "absurd-amount",
        "ClaimsAgent/run",
        "amount 1e12",
        _claim({**HOTEL, "amount": 1e12}),
        400,
        "above the largest claim",
        _paid,
    ),
    Case(
        "nan-amount",
        "ClaimsAgent/run",
        "amount NaN",
        _claim(b'{"customer": "A", "amount": NaN, "description": "x"}', raw=True),
        400,
        "must be a number",
        _paid,
    ),
    Case(
        "smuggled-awakeable",
        "ClaimsAgent/run",
        'extra field "awakeable_id"',
        _claim({**HOTEL, "awakeable_id": "sign_forged"}),
        400,
        "unknown claim fields",
        _paid,
    ),
    Case(
        "decision-malformed-json",
        "ClaimApprovals/decide",
        '{"approver": maria}',
        _decide(b'{"approver": maria}', raw=True),
        400,
        "not valid JSON",
        _pending,
    ),
    Case(
        "decision-not-a-bool",
        "ClaimApprovals/decide",
        '"approve": "yes"',
        _decide({"approver": "maria", "approve": "yes"}),
        400,
        "must be true or false",
        _pending,
    ),
    Case(
        "approver-not-allowed",
        "ClaimApprovals/decide",
        'approver "eve"',
        _decide({"approver": "eve", "approve": True, "reason": "trust me"}),
        403,
        "is not allowed to approve",
        _pending,
    ),
    Case(
        "decided-already",
        "ClaimApprovals/decide",
        "a second decision",
        _decide({"approver": "sam", "approve": False, "reason": "late"}, key="decided"),
        404,
        "has no pending approval",
        _decided,
    ),
    Case(
        "awakeable-malformed",
        "/restate/awakeables/…/resolve",
        'id "not-an-id"',
        lambda lab: lab.ingress.resolve_awakeable("not-an-id", {"approver": "maria"}),
        400,
        "bad awakeable id",
        _pending,
    ),
    Case(
        "awakeable-unknown",
        "/restate/awakeables/…/resolve",
        "a well-formed id nobody made",
        lambda lab: lab.ingress.resolve_awakeable(_unknown_awakeable(lab), {"approver": "maria"}),
        202,
        "(no message: Restate accepts it and nothing waits for it)",
        _pending,
    ),
    Case(
        "awakeable-resolved-twice",
        "/restate/awakeables/…/resolve",
        "the decided claim's id, resolved again",
        lambda lab: lab.ingress.resolve_awakeable(lab.decided_awakeable, {"approver": "eve", "reason": "again"}),
        202,
        "(no message: Restate accepts it; the first completion wins)",
        _decided,
    ),
    Case(
        "awakeable-reject-after-resolve",
        "/restate/awakeables/…/reject",
        "the decided claim's id, rejected",
        lambda lab: lab.ingress.reject_awakeable(lab.decided_awakeable, "too late"),
        202,
        "(no message: Restate accepts it; the first completion wins)",
        _decided,
    ),
]


def _unknown_awakeable(lab: Lab) -> str:
    """A well-formed awakeable id of an invocation that finished long ago (entry 99: never created)."""
    return lab.decided_awakeable[:-4] + "AAAA"


def _snapshot(lab: Lab, case: Case) -> tuple[dict[tuple[str, str], dict[str, str]], int]:
    return {obj: lab.admin.state(*obj) for obj in case.watch(lab)}, lab.ledger.count()


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.id)
def test_bad_input_over_http(lab: Lab, case: Case, evidence: Evidence, request: pytest.FixtureRequest) -> None:
    record = evidence.add(
        "bad_input", request, target=case.target, input=case.input, answer="", message="", unchanged=False, in_flight=-1
    )
    before = _snapshot(lab, case)
    answer: Any
    try:
        answer = case.send(lab)
        status, message = 202, case.message if answer is None else str(answer)
    except RestateError as err:
        status, message = err.status, err.message
    after = _snapshot(lab, case)
    left = [s for service, key in case.watch(lab) for s in in_flight(lab.admin, service, key)]
    if case.watch is _pending:
        left = [s for s in in_flight(lab.admin, APPROVALS, lab.pending)]
    record.update(answer=str(status), message=message, unchanged=before == after, in_flight=len(left))
    assert status == case.status
    assert case.message in message
    assert before == after, "the state or the ledger changed"
    assert not left, f"invocations left in flight: {left}"


def test_the_waiting_claim_is_untouched_by_all_of_it(lab: Lab) -> None:
    """After every bad decision, the pending claim still waits, and a good decision completes it once."""
    wait_status(lab.admin, lab.pending_invocation, "suspended")
    lab.ingress.call(APPROVALS, "decide", {"approver": "sam", "approve": True, "reason": "fine"}, key=lab.pending)
    result = lab.ingress.attach(lab.pending_invocation)
    assert (result["status"], result["approver"]) == ("approved", "sam")
    assert lab.ledger.count("payment", invocation_id=lab.pending_invocation) == 1
    decided = lab.ingress.output(lab.decided_invocation)
    assert (decided["status"], decided["approver"], decided["reason"]) == ("approved", "maria", "ok")
    assert lab.ledger.count("payment", invocation_id=lab.decided_invocation) == 1


def test_odd_session_keys_round_trip(lab: Lab, evidence: Evidence, request: pytest.FixtureRequest) -> None:
    """Spaces, slashes and unicode in a key are URL-encoded by Ingress and name exactly one session."""
    record = evidence.add(
        "bad_input",
        request,
        target="WeatherAgent/run",
        input=f"key {ODD_KEY!r}",
        answer="",
        message="",
        unchanged=False,
        in_flight=-1,
    )
    prefix = ODD_KEY.split("/")[0]
    before = {k: lab.admin.state(WEATHER, k) for k in (prefix, "a b", "c ünï 🙂?#%")}
    answer = lab.ingress.call(WEATHER, "run", "What is the weather in Oslo?", key=ODD_KEY)
    again = lab.ingress.call(WEATHER, "run", "Which city did I ask about?", key=ODD_KEY)
    after = {k: lab.admin.state(WEATHER, k) for k in before}
    stored = lab.admin.state(WEATHER, ODD_KEY)
    record.update(
        answer="200",
        message=f"{answer} / {again}",
        unchanged=before == after,
        in_flight=len(in_flight(lab.admin, WEATHER, ODD_KEY)),
    )
    assert answer == "The weather in Oslo is sunny, 72°F" and again == "You asked about Oslo."
    assert "session_store::session" in stored
    assert before == after, "a key with odd characters touched another session"


def _api_case(evidence: Evidence, request: pytest.FixtureRequest, target: str, input: str) -> dict[str, Any]:
    return evidence.add(
        "bad_input", request, target=target, input=input, answer="", message="", unchanged=True, in_flight=0
    )


def test_calling_before_the_server_is_up(evidence: Evidence, request: pytest.FixtureRequest) -> None:
    record = _api_case(evidence, request, "agent_lib Ingress.call", "no server on the port")
    with pytest.raises(ConnectionError, match=r"is the server running\? Start it with `make server`") as err:
        Ingress(f"http://127.0.0.1:{free_port()}").call(WEATHER, "run", "hi", key="k")
    record.update(answer="ConnectionError", message=str(err.value))


def test_registering_before_the_server_is_up(evidence: Evidence, request: pytest.FixtureRequest) -> None:
    record = _api_case(evidence, request, "agent_lib Admin.register", "no server on the port")
    with pytest.raises(ConnectionError, match="cannot reach the Restate admin API") as err:
        Admin(f"http://127.0.0.1:{free_port()}").register("http://127.0.0.1:1")
    record.update(answer="ConnectionError", message=str(err.value))


def test_missing_server_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    record = _api_case(evidence, request, "agent_lib RestateServer.start", "RESTATE_SERVER_BIN=/nonexistent/…")
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(tmp_path / "nonexistent" / "restate-server"))
    server = RestateServer(tmp_path, ingress_port=free_port(), admin_port=free_port(), node_port=free_port())
    with pytest.raises(ServerError, match="is not an executable file: fix it, or unset it") as err:
        server.start()
    record.update(answer="ServerError", message=str(err.value))


def test_missing_server_binary_passed_directly(
    tmp_path: Path, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    record = _api_case(evidence, request, "agent_lib RestateServer(binary=…)", "a binary path that does not exist")
    server = RestateServer(
        tmp_path,
        ingress_port=free_port(),
        admin_port=free_port(),
        node_port=free_port(),
        binary=tmp_path / "nonexistent" / "restate-server",
    )
    try:
        with pytest.raises(ServerError, match="restate-server") as err:
            server.start()
    except BaseException as other:
        record.update(answer=type(other).__name__, message=str(other)[:200])
        raise
    record.update(answer="ServerError", message=str(err.value))


def test_taken_port_for_the_server(tmp_path: Path, evidence: Evidence, request: pytest.FixtureRequest) -> None:
    record = _api_case(evidence, request, "agent_lib RestateServer.start", "an ingress port another program holds")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = RestateServer(tmp_path, ingress_port=port, admin_port=free_port(), node_port=free_port())
        with pytest.raises(ServerError, match=f"port {port} is already taken by another process") as err:
            server.start()
    record.update(answer="ServerError", message=str(err.value))


@pytest.mark.slow
def test_taken_port_for_an_agent_process(
    proof_server: RestateServer, evidence: Evidence, request: pytest.FixtureRequest
) -> None:
    record = _api_case(evidence, request, "agent_lib AgentProcess.start", "a port another program holds")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        agent = AgentProcess(
            "agent_lib.agents.weather:weather_service",
            port=taken.getsockname()[1],
            admin=Admin(proof_server.admin_url, timeout=10),
            name="taken-port",
        )
        try:
            with pytest.raises(ServingError, match="taken") as err:
                agent.start(timeout=60)
        except BaseException as other:
            record.update(answer=type(getattr(other, "value", other)).__name__, message=str(other)[:200])
            raise
        finally:
            agent.kill()
    record.update(answer="ServingError", message=str(err.value))


def test_unknown_invocation_id_to_attach(lab: Lab, evidence: Evidence, request: pytest.FixtureRequest) -> None:
    record = _api_case(evidence, request, "agent_lib Ingress.attach", 'invocation id "inv_nope"')
    with pytest.raises(RestateError) as err:
        lab.ingress.attach("inv_nope")
    record.update(answer=str(err.value.status), message=err.value.message)
    assert 400 <= err.value.status < 500 and err.value.message
