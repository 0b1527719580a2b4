"""The flaky booking agent: its script and switch, and kill vs cancel vs pause/resume on a live stuck booking."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib import observe
from agent_lib.agents.flaky import (
    ATTEMPT_KIND,
    SERVICE_NAME,
    booking_api_up,
    flaky_script,
    set_booking_api,
    switch_path,
)
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.models import Call, ToolResult, Turn, uses_gemini
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess


@pytest.fixture(scope="module")
def flaky(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    with AgentProcess("agent_lib.agents.flaky:flaky_service", admin=Admin(restate_server.admin_url)) as proc:
        yield proc


def _turn(text: str, results: tuple[ToolResult, ...] = ()) -> Turn:
    return Turn(text=text, results=results, tools=("book_flight",), history=(), past_results=())


def test_script_books_the_city_asked_for_then_confirms() -> None:
    assert flaky_script(_turn("Book a flight to New York please")) == [Call("book_flight", {"city": "New York"})]
    done = ToolResult("book_flight", {"result": "Booked a flight to Oslo."})
    assert flaky_script(_turn("Book a flight to Oslo", (done,))) == "Booked a flight to Oslo."
    assert "ask me to book" in str(flaky_script(_turn("hello")))


def test_switch_is_a_file_per_key(key: str) -> None:
    assert not booking_api_up(key)
    set_booking_api(key, up=True)
    assert booking_api_up(key) and switch_path(key).exists()
    assert not booking_api_up(key + "-other")
    set_booking_api(key, up=False)
    assert not booking_api_up(key)
    assert switch_path("a/b c").name == "a_b_c.up"


def _stuck(admin: Admin, ingress: Ingress, key: str) -> str:
    set_booking_api(key, up=False)
    invocation = ingress.send(SERVICE_NAME, "run", "Book a flight to Oslo", key=key).invocation_id
    observe.wait_for_retries(admin, invocation, 2)
    return invocation


def test_booking_when_the_api_is_up(
    admin: Admin, ingress: Ingress, ledger: Ledger, flaky: AgentProcess, key: str
) -> None:
    set_booking_api(key, up=True)
    sent = ingress.send(SERVICE_NAME, "run", "Book a flight to Lisbon", key=key)
    answer = ingress.attach(sent.invocation_id)
    assert "Lisbon" in answer
    if not uses_gemini():
        assert answer == "Booked a flight to Lisbon."
    assert observe.object_state(admin, SERVICE_NAME, key)["status"] == "booked"
    assert ledger.count(ATTEMPT_KIND, invocation_id=sent.invocation_id) == 1


def test_kill_appends_nothing_and_leaves_the_state(
    admin: Admin, ingress: Ingress, flaky: AgentProcess, key: str
) -> None:
    invocation = _stuck(admin, ingress, key)
    before = len(observe.journal_entries(admin, invocation))
    admin.kill(invocation)
    with pytest.raises(RestateError, match="killed") as err:
        ingress.attach(invocation)
    assert err.value.status == 409
    assert len(observe.journal_entries(admin, invocation)) == before
    assert observe.object_state(admin, SERVICE_NAME, key)["status"] == "working"


def test_cancel_lets_the_handler_clean_up(admin: Admin, ingress: Ingress, flaky: AgentProcess, key: str) -> None:
    invocation = _stuck(admin, ingress, key)
    before = len(observe.journal_entries(admin, invocation))
    admin.cancel(invocation)
    with pytest.raises(RestateError, match="cancelled") as err:
        ingress.attach(invocation)
    assert err.value.status == 409
    added = observe.journal_entries(admin, invocation)["entry_type"].tolist()[before:]
    assert added == ["Notification: Signal", "Command: SetState", "Command: Output"]
    assert observe.object_state(admin, SERVICE_NAME, key)["status"] == "cancelled"


def test_pause_stops_retries_and_resume_finishes_after_the_fix(
    admin: Admin, ingress: Ingress, ledger: Ledger, flaky: AgentProcess, key: str
) -> None:
    invocation = _stuck(admin, ingress, key)
    admin.pause(invocation)
    observe.wait_for_status(admin, invocation, "paused")
    attempts = ledger.count(ATTEMPT_KIND, invocation_id=invocation)
    assert observe.wait_for_status(admin, invocation, "paused", timeout=2)["status"] == "paused"
    assert ledger.count(ATTEMPT_KIND, invocation_id=invocation) == attempts
    assert "Paused" in observe.journal_events(admin, invocation)["event_type"].tolist()
    set_booking_api(key, up=True)
    admin.resume(invocation)
    assert "Oslo" in ingress.attach(invocation)
    assert observe.object_state(admin, SERVICE_NAME, key)["status"] == "booked"
    assert ledger.count(ATTEMPT_KIND, invocation_id=invocation) == attempts + 1


def test_bad_input_is_a_clear_400(ingress: Ingress, flaky: AgentProcess, key: str) -> None:
    with pytest.raises(RestateError, match="the message is empty") as err:
        ingress.call(SERVICE_NAME, "run", "  ", key=key)
    assert err.value.status == 400
