"""Admin.restart_as_new on the real server: a new id, the kept entries copied, and each refusal saying what to do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import restate

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

forgetful = restate.Service("TestForgetsJournals", journal_retention=timedelta(0))


@forgetful.handler()
async def echo(ctx: restate.Context, text: str) -> str:
    """Return the text, from a journaled step: a service whose finished journals the server does not keep."""
    return await ctx.run_typed("echo", lambda: text)


@pytest.fixture(scope="module")
def forgetful_process(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(
        "tests.test_restart_as_new:forgetful", admin=Admin(restate_server.admin_url), name="test-forgetful"
    )
    with proc:
        yield proc


def _said(ingress: Ingress, text: str) -> str:
    sent = ingress.send("TestEcho", "say", text)
    assert ingress.attach(sent.invocation_id) == text.upper()
    return sent.invocation_id


def test_restart_from_the_start_is_a_new_invocation_of_the_same_input(
    admin: Admin, ingress: Ingress, test_services: AgentProcess
) -> None:
    first = _said(ingress, "again")
    again = admin.restart_as_new(first)
    assert again != first and again.startswith("inv_")
    assert ingress.attach(again) == "AGAIN"
    row = admin.invocation(again)
    assert row is not None and row["restarted_from"] == first and row["invoked_by"] == "restart_as_new"


def test_restart_from_an_entry_copies_the_entries_up_to_it_with_their_results(
    admin: Admin, ingress: Ingress, test_services: AgentProcess
) -> None:
    first = _said(ingress, "kept")
    old = admin.journal(first)
    result = next(e["index"] for e in old if e["entry_type"] == "Notification: Run")
    again = admin.restart_as_new(first, from_entry=result)
    assert ingress.attach(again) == "KEPT"
    new = admin.journal(again)
    assert [e["entry_type"] for e in new] == [e["entry_type"] for e in old]
    copied = [e["appended_at"] for e in new if e["index"] <= result]
    assert copied == [e["appended_at"] for e in old if e["index"] <= result], "kept entries are copies, not re-runs"
    assert new[-1]["appended_at"] > old[-1]["appended_at"], "the entries after `from` ran again"


def test_restart_of_an_unfinished_invocation_says_to_wait_or_end_it(
    admin: Admin, ingress: Ingress, test_services: AgentProcess, key: str
) -> None:
    waiting = ingress.send("TestWaiter", "wait", "parked", key=key).invocation_id
    try:
        with pytest.raises(RestateError) as err:
            admin.restart_as_new(waiting, from_entry=1)
        assert err.value.status == 409 and "has not completed" in err.value.message
        assert "admin.cancel" in err.value.message and "still running" in err.value.message
    finally:
        admin.kill(waiting)


def test_restart_of_an_unknown_or_malformed_id_says_so(
    admin: Admin, ingress: Ingress, test_services: AgentProcess
) -> None:
    known = _said(ingress, "known")
    unknown = known[:-3] + ("AAA" if not known.endswith("AAA") else "BBB")
    with pytest.raises(RestateError) as err:
        admin.restart_as_new(unknown)
    assert err.value.status == 404 and f"the server has no invocation {unknown}" in err.value.message
    with pytest.raises(RestateError) as err:
        admin.restart_as_new("inv_1bogus")
    assert err.value.status == 400 and "is not an invocation id" in err.value.message


def test_restart_past_the_journal_says_to_pick_another_entry(
    admin: Admin, ingress: Ingress, test_services: AgentProcess
) -> None:
    first = _said(ingress, "short")
    with pytest.raises(RestateError) as err:
        admin.restart_as_new(first, from_entry=100)
    assert (
        err.value.status == 400 and "entry 100" in err.value.message and "observe.journal_entries" in err.value.message
    )
    with pytest.raises(ValueError, match="0 or more"):
        admin.restart_as_new(first, from_entry=-1)
    with pytest.raises(ValueError, match="with from_entry only"):
        admin.restart_as_new(first, deployment="keep")


def test_restart_without_a_retained_journal_says_to_set_a_retention(
    admin: Admin, ingress: Ingress, forgetful_process: AgentProcess
) -> None:
    sent = ingress.send("TestForgetsJournals", "echo", "gone")
    assert ingress.attach(sent.invocation_id) == "gone"
    assert not admin.journal(sent.invocation_id)
    for from_entry in (None, 1):
        with pytest.raises(RestateError) as err:
            admin.restart_as_new(sent.invocation_id, from_entry=from_entry)
        assert err.value.status == 410 and "journal_retention" in err.value.message, err.value.message
