"""The observe recipes: journal entries, the timeline, the monitor's data and the SQL recipes (lesson 06)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from agent_lib import observe
from agent_lib.agents.flaky import SERVICE_NAME, set_booking_api
from agent_lib.clients import Admin, Ingress, ui_url
from agent_lib.models import uses_gemini
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess


@pytest.fixture(scope="module")
def flaky(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """The flaky booking agent, in its own process on the session server."""
    with AgentProcess("agent_lib.agents.flaky:flaky_service", admin=Admin(restate_server.admin_url)) as proc:
        yield proc


def _entry(index: int, kind: str, at: str, lite: dict[str, object], name: str | None = None) -> dict[str, object]:
    stamp = pd.Timestamp(f"2026-01-01T00:00:{at}Z")
    return {"index": index, "entry_type": kind, "name": name, "appended_at": stamp, "detail": json.dumps(lite)}


def _run(index: int, at: str, completion: int, name: str) -> dict[str, object]:
    return _entry(index, "Command: Run", at, {"Command": {"Run": {"completion_id": completion, "name": name}}}, name)


def _done(index: int, at: str, completion: int) -> dict[str, object]:
    lite = {"Notification": {"ty": {"Completion": "Run"}, "id": {"CompletionId": completion}, "result": "Success"}}
    return _entry(index, "Notification: Run", at, lite)


def test_steps_pair_each_run_with_its_notification_by_completion_id() -> None:
    entries = pd.DataFrame(
        [
            _entry(0, "Command: Input", "00.000", {"Command": {"Input": {}}}),
            _run(1, "01.000", 1, "call LLM"),
            _done(2, "01.500", 1),
            _run(3, "02.000", 2, "Call booking API"),
            _run(4, "02.100", 3, "Other step"),
            _done(5, "02.200", 3),
            _done(6, "09.000", 2),
        ]
    )
    steps = observe.steps_from_entries(entries)
    assert list(steps.columns) == observe.TIMELINE_COLUMNS
    assert steps["step"].tolist() == ["call LLM", "Call booking API", "Other step"]
    assert steps["start"].tolist() == [1.0, 2.0, 2.1]
    assert steps["duration"].round(3).tolist() == [0.5, 7.0, 0.1]
    assert steps["done"].all() and not steps["failed"].any()


def test_an_unfinished_step_runs_until_now_and_is_marked_failed_by_its_event() -> None:
    entries = pd.DataFrame([_entry(0, "Command: Input", "00.000", {}), _run(1, "01.000", 1, "Call booking API")])
    events = pd.DataFrame(
        [{"after_index": 1, "appended_at": None, "event_type": "TransientError", "message": "the API is down"}]
    )
    now = datetime(2026, 1, 1, 0, 0, 11, tzinfo=UTC)
    steps = observe.steps_from_entries(entries, events, now=now)
    row = steps.iloc[0]
    assert not row["done"] and row["duration"] == 10.0 and pd.isna(row["finished_at"])
    assert row["failed"] and row["error"] == "the API is down"


def test_no_entries_give_an_empty_timeline_with_its_columns() -> None:
    steps = observe.steps_from_entries(pd.DataFrame(columns=["index", "entry_type", "name", "appended_at", "detail"]))
    assert steps.empty and list(steps.columns) == observe.TIMELINE_COLUMNS


def test_first_line_shortens_errors() -> None:
    assert observe.first_line("boom\nTraceback ...") == "boom"
    assert observe.first_line(None) is None
    assert observe.first_line("x" * 500, limit=10) == "x" * 9 + "…"


def test_timeline_and_journal_of_a_booking(admin: Admin, ingress: Ingress, flaky: AgentProcess, key: str) -> None:
    set_booking_api(key, up=True)
    sent = ingress.send(SERVICE_NAME, "run", "Book a flight to Lisbon", key=key)
    assert "Lisbon" in ingress.attach(sent.invocation_id)
    entries = observe.journal_entries(admin, sent.invocation_id)
    assert entries["entry_type"].iloc[0] == "Command: Input" and entries["entry_type"].iloc[-1] == "Command: Output"
    assert entries["at"].iloc[0] == 0 and entries["at"].is_monotonic_increasing
    steps = observe.timeline(admin, sent.invocation_id)
    if not uses_gemini():
        assert steps["step"].tolist() == ["call LLM", "Call booking API", "call LLM", "store session"]
    assert steps["done"].all() and not steps["failed"].any() and (steps["duration"] >= 0).all()
    assert steps["start"].is_monotonic_increasing
    assert observe.ui_url(admin, sent.invocation_id) == ui_url(admin.url, f"/ui/invocations/{sent.invocation_id}")
    assert observe.object_state(admin, SERVICE_NAME, key)["status"] == "booked"
    with pytest.raises(TimeoutError, match="is 'completed', not \\['paused'\\]"):
        observe.wait_for_status(admin, sent.invocation_id, "paused", timeout=0.5)


def test_a_stuck_booking_shows_in_every_recipe(admin: Admin, ingress: Ingress, flaky: AgentProcess, key: str) -> None:
    set_booking_api(key, up=False)
    first = ingress.send(SERVICE_NAME, "run", "Book a flight to Oslo", key=key).invocation_id
    second = None
    try:
        observe.wait_for_retries(admin, first, 2)
        row = observe.monitor_frame(admin, SERVICE_NAME).set_index("id").loc[first]
        assert row["key"] == key and row["status"] in ("backing-off", "running") and row["retry_count"] >= 2
        assert row["failing_step"] == "Call booking API" and "booking API is down" in row["last_failure"]
        assert row["deployment"] == flaky.deployment_id
        assert first in observe.stuck_invocations(admin, SERVICE_NAME)["id"].tolist()
        assert first in observe.retried_more_than(admin, 1, SERVICE_NAME)["id"].tolist()
        assert first not in observe.retried_more_than(admin, 100_000, SERVICE_NAME)["id"].tolist()
        last = observe.timeline(admin, first).iloc[-1]
        assert last["step"] == "Call booking API" and not last["done"] and last["failed"]
        second = ingress.send(SERVICE_NAME, "run", "Book a flight to Rome", key=key).invocation_id
        blockers = observe.key_blockers(admin, SERVICE_NAME, key)
        assert blockers["role"].tolist() == ["holds the key", "waiting #1"]
        assert blockers["id"].tolist() == [first, second]
        deployments = observe.service_deployments(admin, SERVICE_NAME).set_index("id")
        assert deployments.loc[flaky.deployment_id, "latest"]
        assert deployments.loc[flaky.deployment_id, "in_flight"] >= 1
        with pytest.raises(observe.DrainError, match=f"still has .* in flight: .*{first}"):
            observe.remove_drained(admin, flaky.deployment_id)
        assert flaky.deployment_id in observe.service_deployments(admin, SERVICE_NAME)["id"].tolist()
    finally:
        for invocation in filter(None, (first, second)):
            admin.kill(invocation)
    for invocation in (first, second):
        assert observe.wait_for_status(admin, invocation, "completed")["completion_failure"] == "[409] killed"
    assert observe.key_blockers(admin, SERVICE_NAME, key).empty
    assert first not in observe.stuck_invocations(admin, SERVICE_NAME)["id"].tolist()


def test_key_blockers_of_an_idle_key_is_empty(admin: Admin, key: str) -> None:
    blockers = observe.key_blockers(admin, SERVICE_NAME, key)
    assert blockers.empty and list(blockers.columns) == ["role", *observe.MONITOR_COLUMNS]


def test_waits_say_what_they_waited_for(admin: Admin, key: str) -> None:
    with pytest.raises(TimeoutError, match=f"{SERVICE_NAME}/{key} has no state value 'approval'"):
        observe.wait_for_state(admin, SERVICE_NAME, key, "approval", timeout=0.5)
