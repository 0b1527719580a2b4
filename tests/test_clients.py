"""The ingress and admin clients against the real server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.serving import AgentProcess


def _wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _parked(admin: Admin, ingress: Ingress, key: str) -> tuple[str, str]:
    sent = ingress.send("TestWaiter", "wait", "parcel", key=key)
    awakeable = _wait_for(lambda: admin.state("TestWaiter", key).get("awakeable"))
    return sent.invocation_id, awakeable.strip('"')


def test_call_send_attach_output(ingress: Ingress, test_services: AgentProcess) -> None:
    assert ingress.call("TestEcho", "say", "hi") == "HI"
    sent = ingress.send("TestEcho", "say", "later")
    assert sent.invocation_id.startswith("inv_") and sent.status
    assert ingress.attach(sent.invocation_id) == "LATER"
    assert ingress.output(sent.invocation_id) == "LATER"


def test_idempotency_key_runs_once(ingress: Ingress, admin: Admin, test_services: AgentProcess, key: str) -> None:
    first = ingress.send("TestEcho", "say", "once", idempotency_key=key)
    second = ingress.send("TestEcho", "say", "once", idempotency_key=key)
    assert first.invocation_id == second.invocation_id
    assert ingress.call("TestEcho", "say", "once", idempotency_key=key) == "ONCE"


def test_unknown_service_error_carries_restates_message(ingress: Ingress) -> None:
    with pytest.raises(RestateError) as err:
        ingress.call("NoSuchService", "run", "x")
    assert err.value.status == 404
    assert "NoSuchService" in err.value.message


def test_bad_names_are_refused_before_sending(ingress: Ingress) -> None:
    with pytest.raises(ValueError, match="name both the service and the handler"):
        ingress.call("", "run")


def test_unreachable_server_says_how_to_start_it() -> None:
    with pytest.raises(ConnectionError, match="is the server running.*make server"):
        Ingress("http://127.0.0.1:1").call("X", "y")


def test_resolve_awakeable(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    invocation, awakeable = _parked(admin, ingress, key)
    _wait_for(lambda: admin.status(invocation) == "suspended")
    ingress.resolve_awakeable(awakeable, "approved")
    assert ingress.attach(invocation) == "parcel: approved"


def test_reject_awakeable(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    invocation, awakeable = _parked(admin, ingress, key)
    ingress.reject_awakeable(awakeable, "not today")
    with pytest.raises(RestateError, match="not today"):
        ingress.attach(invocation)


def test_malformed_awakeable_id_is_a_4xx(ingress: Ingress) -> None:
    with pytest.raises(RestateError) as err:
        ingress.resolve_awakeable("not-an-awakeable", "x")
    assert 400 <= err.value.status < 500


def test_journal_steps_and_state(admin: Admin, ingress: Ingress, test_services: AgentProcess) -> None:
    sent = ingress.send("TestEcho", "say", "journal")
    ingress.attach(sent.invocation_id)
    rows = admin.journal(sent.invocation_id)
    assert rows[0]["entry_type"] == "Command: Input"
    assert admin.steps(sent.invocation_id) == ["shout"]
    assert set(rows[0]) == {"index", "entry_type", "name", "appended_at", "entry_json"}
    df = admin.journal_df(sent.invocation_id)
    assert list(df["index"]) == sorted(df["index"]) and len(df) == len(rows)
    assert admin.invocation(sent.invocation_id)["status"] == "completed"


def test_kill_and_cancel(admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str) -> None:
    killed, _ = _parked(admin, ingress, key)
    admin.kill(killed)
    with pytest.raises(RestateError):
        ingress.attach(killed)
    cancelled, _ = _parked(admin, ingress, key + "-c")
    admin.cancel(cancelled)
    with pytest.raises(RestateError, match="[Cc]ancel"):
        ingress.attach(cancelled)


def test_pause_and_resume_a_retrying_invocation(admin: Admin, ingress: Ingress, test_services: AgentProcess) -> None:
    sent = ingress.send("TestAlwaysFails", "attempt", "the printer")
    row = _wait_for(lambda: (r := admin.invocation(sent.invocation_id)) and r.get("last_failure") and r)
    assert "the printer is broken" in str(row["last_failure"])
    assert row["retry_count"] >= 1
    admin.pause(sent.invocation_id)
    _wait_for(lambda: admin.status(sent.invocation_id) == "paused")
    admin.resume(sent.invocation_id)
    _wait_for(lambda: admin.status(sent.invocation_id) in ("backing-off", "running", "ready", "scheduled"))
    admin.kill(sent.invocation_id)


def test_control_of_an_unknown_invocation_is_a_4xx(admin: Admin) -> None:
    with pytest.raises(RestateError) as err:
        admin.kill("inv_1notarealinvocationid")
    assert 400 <= err.value.status < 500


def test_query_df(admin: Admin, test_services: AgentProcess) -> None:
    df = admin.query_df("SELECT name FROM sys_service ORDER BY name")
    assert "TestEcho" in set(df["name"])
