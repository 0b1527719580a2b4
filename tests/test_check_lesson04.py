"""Lesson 04's checks against answers a learner is likely to give: the right one passes, each wrong one fails and
says what is wrong.

The claims agents are real, each in a process of its own under a test prefix, started after
`check.lesson_04.begin(admin)`.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_lib import check
from agent_lib.check import _core
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin_again, failed, wait_pending

pytestmark = pytest.mark.slow

TARGETS = ["agent_lib.agents.claims:claims_service", "agent_lib.agents.claims:approvals_service"]
LARGE = {"customer": "Ben", "amount": 1800, "description": "laptop"}


def _settings(prefix: str, threshold: int = 1000, timeout: str = "10m") -> dict[str, str]:
    """The env of lesson 04's claims process (section 1's settings, under another prefix)."""
    return {
        "CLAIMS_SERVICE_PREFIX": prefix,
        "CLAIMS_APPROVAL_THRESHOLD": str(threshold),
        "CLAIMS_APPROVERS": "maria,sam",
        "CLAIMS_APPROVAL_TIMEOUT": timeout,
    }


def _claims(admin: Admin, prefix: str, threshold: int = 1000, timeout: str = "10m") -> AgentProcess:
    env = _settings(prefix, threshold, timeout)
    return AgentProcess(TARGETS, env=env, admin=admin, name=f"check-lesson04-{prefix.lower()}")


@pytest.fixture(scope="module")
def claims(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """Begin lesson 04's exercises, then serve the claims agent (threshold 1000) as T04ClaimsAgent."""
    admin = Admin(restate_server.admin_url)
    saved = dict(_core._began)
    _core.begin(4, admin)
    with _claims(admin, "T04") as proc:
        yield proc
    _core._began.clear()
    _core._began.update(saved)


AGENT, APPROVALS = "T04ClaimsAgent", "T04ClaimApprovals"
NAMES = {"agent": AGENT, "approvals": APPROVALS}


def _file(ingress: Ingress, admin: Admin, claim: dict[str, Any] = LARGE, *, wait: bool = True) -> tuple[str, str]:
    """File a claim under a new id; wait until it asks for approval (if it is large); return (claim id, invocation)."""
    claim_id = f"ex04-{uuid.uuid4().hex[:8]}"
    sent = ingress.send(AGENT, "run", claim, key=claim_id)
    if wait:
        wait_pending(admin, APPROVALS, claim_id, timeout=60)
    return claim_id, sent.invocation_id


def _decide(ingress: Ingress, claim_id: str, approver: str, approve: bool, reason: str) -> RestateError | None:
    body = {"approver": approver, "approve": approve, "reason": reason}
    try:
        ingress.call(APPROVALS, "decide", body, key=claim_id)
    except RestateError as err:
        return err
    return None


def _unfinished(admin: Admin, *services: str) -> list[dict[str, Any]]:
    names = ", ".join(f"'{s}'" for s in services)
    where = f"target_service_name IN ({names}) AND status != 'completed'"
    return admin.query(f"SELECT id, status FROM sys_invocation WHERE {where}")


# --- exercise 1: move the threshold ---


def test_exercise_1_passes_a_process_with_the_new_threshold(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    with _claims(admin, "T04New", threshold=2000):
        names = {"agent": "T04NewClaimsAgent", "approvals": "T04NewClaimApprovals"}
        result = check.lesson_04.exercise_1.sync(ingress, admin, **names)
    assert result.ok, result
    assert "paid at once, with no approval request" in result.message


def test_exercise_1_fails_the_old_threshold_and_withdraws_its_claim(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    result = check.lesson_04.exercise_1.sync(ingress, admin, **NAMES)
    failed(result, "waited for a human", "the threshold your claims process runs with is below 1,800.00")
    assert "CLAIMS_APPROVAL_THRESHOLD='2000'" in result.hint
    assert _unfinished(admin, AGENT, APPROVALS) == [], "the check leaves nothing behind"


def test_exercise_1_fails_fast_when_the_process_is_stopped(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    with _claims(admin, "T04Stopped"):
        pass
    started = time.monotonic()
    result = check.lesson_04.exercise_1.sync(
        ingress, admin, agent="T04StoppedClaimsAgent", approvals="T04StoppedClaimApprovals"
    )
    assert time.monotonic() - started < 15
    failed(result, "the agent process is stopped: start it again")
    assert "CLAIMS_SERVICE_PREFIX='T04Stopped'" in result.hint and "CLAIMS_APPROVAL_THRESHOLD='2000'" in result.hint
    assert _unfinished(admin, "T04StoppedClaimsAgent", "T04StoppedClaimApprovals") == []


def test_exercise_1_names_a_new_process_that_left_out_the_prefix(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    with _claims(admin, "T04Lone"):
        pass
    with _claims(admin, "T04LoneX", threshold=2000):
        result = check.lesson_04.exercise_1.sync(
            ingress, admin, agent="T04LoneClaimsAgent", approvals="T04LoneClaimApprovals"
        )
    failed(result, "the agent process is stopped", "T04LoneXClaimsAgent was registered after it")
    assert "CLAIMS_SERVICE_PREFIX=T04Lone?" in result.message


# --- exercise 2: two panels, two approvers ---


def test_exercise_2_passes_eve_refused_then_maria_deciding(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    eve = _decide(ingress, claim_id, "eve", True, "looks fine")
    assert eve is not None and eve.status == 403
    assert _decide(ingress, claim_id, "maria", True, "receipt checked") is None
    ingress.attach(invocation_id)
    result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **NAMES)
    assert result.ok, result
    assert "refused with 403 while claim" in result.message and "maria decided it: approved" in result.message


def test_exercise_2_fails_maria_first_then_eve(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    assert _decide(ingress, claim_id, "maria", True, "receipt checked") is None
    eve = _decide(ingress, claim_id, "eve", True, "looks fine")
    assert eve is not None and eve.status == 403
    assert "stays pending" not in eve.message and "changed nothing" in eve.message, "eve's 403 tells the truth"
    ingress.attach(invocation_id)
    result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **NAMES)
    failed(result, "the refusal (403) came after maria had decided", "no longer pending")


def test_exercise_2_fails_a_small_claim_paid_at_once(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin, {**LARGE, "amount": 300}, wait=False)
    ingress.attach(invocation_id)
    eve = _decide(ingress, claim_id, "eve", True, "looks fine")
    assert eve is not None and "stays pending" not in eve.message
    _decide(ingress, claim_id, "maria", True, "fine")
    result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **NAMES)
    failed(result, "was paid at once", "it never waited for an approver")


def test_exercise_2_fails_when_only_eve_decided(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    _decide(ingress, claim_id, "eve", True, "looks fine")
    result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **NAMES)
    failed(result, f"claim {claim_id!r} still waits for an approver")
    assert 'approver="maria"' in result.hint
    _decide(ingress, claim_id, "maria", False, "cleaning up")
    ingress.attach(invocation_id)


def test_exercise_2_fails_the_lessons_own_claim(
    claims: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    conference, invocation_id = _file(ingress, admin)
    _decide(ingress, conference, "eve", True, "looks fine")
    _decide(ingress, conference, "sam", True, "budgeted")
    ingress.attach(invocation_id)
    monkeypatch.setitem(_core._began, 4, _core._began[4])
    begin_again(4, admin)
    result = check.lesson_04.exercise_2.sync(ingress, admin, conference, **NAMES)
    failed(result, f"the claim {conference!r}: its run", "before you began the exercises")
    assert "new claim" in result.hint


# --- exercise 3: reject, with a reason ---

REASON = "entertainment is not reimbursed, see the budget policy"


def test_exercise_3_passes_a_rejection_with_its_reason(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    assert _decide(ingress, claim_id, "maria", False, REASON) is None
    ingress.attach(invocation_id)
    result = check.lesson_04.exercise_3.sync(ingress, admin, claim_id, REASON, **NAMES)
    assert result.ok, result
    assert "rejected by maria with your reason" in result.message


def test_exercise_3_fails_a_reason_that_is_only_part_of_the_real_one(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    _decide(ingress, claim_id, "maria", False, REASON)
    ingress.attach(invocation_id)
    result = check.lesson_04.exercise_3.sync(ingress, admin, claim_id, "budget", **NAMES)
    failed(result, f"rejected with the reason {REASON!r}, not 'budget'")


def test_exercise_3_fails_an_approved_claim(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    _decide(ingress, claim_id, "maria", True, REASON)
    ingress.attach(invocation_id)
    failed(check.lesson_04.exercise_3.sync(ingress, admin, claim_id, REASON, **NAMES), "'approved', not rejected")


def test_exercise_3_fails_the_lessons_rejected_laptop(
    claims: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, invocation_id = _file(ingress, admin)
    _decide(ingress, laptop, "maria", False, "laptops are ordered through IT")
    ingress.attach(invocation_id)
    monkeypatch.setitem(_core._began, 4, _core._began[4])
    begin_again(4, admin)
    result = check.lesson_04.exercise_3.sync(ingress, admin, laptop, "laptops are ordered through IT", **NAMES)
    failed(result, "before you began the exercises")


def test_exercise_3_fails_a_claim_the_agent_never_ran(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_04.exercise_3.sync(ingress, admin, "no-such-claim", REASON, **NAMES)
    failed(result, "never ran a claim with the id 'no-such-claim'")


def test_exercise_3_refuses_exercise_2s_claim(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    _decide(ingress, claim_id, "eve", True, "looks fine")
    assert _decide(ingress, claim_id, "maria", False, REASON) is None
    ingress.attach(invocation_id)
    assert check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **NAMES).ok
    result = check.lesson_04.exercise_3.sync(ingress, admin, claim_id, REASON, **NAMES)
    failed(result, f"claim {claim_id!r} is exercise 2's claim", "asks for another claim")
    assert "another large claim, under a new id" in result.hint


def test_exercise_3_says_a_claim_that_still_waits_waits(claims: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    claim_id, invocation_id = _file(ingress, admin)
    started = time.monotonic()
    result = check.lesson_04.exercise_3.sync(ingress, admin, claim_id, REASON, **NAMES)
    assert time.monotonic() - started < 15, "a claim that waits for a human is judged at once, not waited for"
    failed(result, f"claim {claim_id!r} still waits for an approver")
    assert "panel.adecide" in result.hint and "attach" not in result.hint
    _decide(ingress, claim_id, "maria", False, "cleaning up")
    ingress.attach(invocation_id)


# --- the lesson's state left as it is: section 7's 5-second timeout ---


def test_exercise_2_says_a_claim_escalated_by_a_short_timeout(
    claims: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    names = {"agent": "T04ShortClaimsAgent", "approvals": "T04ShortClaimApprovals"}
    with _claims(admin, "T04Short", timeout="3s"):
        claim_id = f"ex04-{uuid.uuid4().hex[:8]}"
        sent = ingress.send(names["agent"], "run", LARGE, key=claim_id)
        outcome = ingress.attach(sent.invocation_id)
        assert outcome["status"] == "escalated"
        for approver in ("eve", "maria"):
            body = {"approver": approver, "approve": True, "reason": "late"}
            with pytest.raises(RestateError):
                ingress.call(names["approvals"], "decide", body, key=claim_id)
        result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **names)
    failed(result, f"claim {claim_id!r} was escalated: its approval timed out", "no approver decided within 3")
    assert "still waits" not in result.message
    assert "dict(first_settings)" in result.hint and "10-minute timeout" in result.hint


def _begin_cell() -> str:
    """The source of lesson 04's first exercise cell (the one that runs begin)."""
    lesson = json.loads((Path(__file__).parents[1] / "notebooks" / "04_human_approval.ipynb").read_text())
    sources = ["".join(c["source"]) for c in lesson["cells"] if c["cell_type"] == "code"]
    return next(s for s in sources if "check.lesson_04.begin(admin)" in s and "# await" not in s)


def test_the_exercises_begin_with_section_1s_settings_whatever_the_lesson_left(
    claims: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lesson 04 leaves its process stopped with a 5-second timeout: after the begin cell, exercise 2 still passes."""
    names = {"agent": "T04LeftClaimsAgent", "approvals": "T04LeftClaimApprovals"}
    monkeypatch.setitem(_core._began, 4, _core._began[4])
    lesson_process = _claims(admin, "T04Left")
    lesson_process.env["CLAIMS_APPROVAL_TIMEOUT"] = "3s"  # section 7
    lesson_process.restart()
    lesson_process.stop()  # section 8
    try:
        exec(_begin_cell(), {"claims_process": lesson_process, "first_settings": _settings("T04Left"), "admin": admin})
        assert lesson_process.running and lesson_process.env["CLAIMS_APPROVAL_TIMEOUT"] == "10m"
        claim_id = f"ex04-{uuid.uuid4().hex[:8]}"
        sent = ingress.send(names["agent"], "run", LARGE, key=claim_id)
        wait_pending(admin, names["approvals"], claim_id, timeout=60)
        time.sleep(5)  # longer than section 7's timeout: a learner takes their time
        for approver in ("eve", "maria"):
            body = {"approver": approver, "approve": True, "reason": "receipt checked"}
            with contextlib.suppress(RestateError):
                ingress.call(names["approvals"], "decide", body, key=claim_id)
        assert ingress.attach(sent.invocation_id)["status"] == "approved"
        result = check.lesson_04.exercise_2.sync(ingress, admin, claim_id, **names)
    finally:
        lesson_process.stop()
    assert result.ok, result
