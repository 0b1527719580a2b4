"""The capstone's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib import check, observe
from agent_lib.agents.capstone import APPROVALS, DESK, TARGETS, claim_id
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed, pause, wait_for

pytestmark = pytest.mark.slow

ROOF = "A storm damaged the roof of my home on 2025-11-02: 650 EUR."


@pytest.fixture(scope="module")
def desk(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(TARGETS, admin=Admin(restate_server.admin_url), name="l09-check-capstone")
    with proc:
        yield proc


def _talk(ingress: Ingress, who: str, *messages: str, prefix: str = "conv") -> str:
    conversation = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ingress.call(DESK, "run", who, key=conversation)
    for message in messages:
        ingress.call(DESK, "run", message, key=conversation)
    return conversation


ANA = "Hi, I am cust-ana, my policy is POL-1001."


def test_second_claim_passes_beside_the_lessons_claim_and_refuses_near_misses(
    desk: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    lesson = _talk(ingress, ANA, "My car was scratched on 2025-09-14; the repair costs 800 EUR.")
    begin(9, admin)
    failed(check.lesson_09.exercise_1.sync(ingress, admin, lesson), "were all filed before you began")
    ingress.call(DESK, "run", ROOF, key=lesson)
    result = check.lesson_09.exercise_1.sync(ingress, admin, lesson)
    assert result.ok, result
    assert "home claim" in result.message

    near_miss = _talk(ingress, ANA, "My car was scratched on 2025-09-14; the repair costs 800 EUR.")
    begin(9, admin)
    ingress.call(DESK, "run", ROOF.replace("650", "560"), key=near_miss)
    failed(check.lesson_09.exercise_1.sync(ingress, admin, near_miss), "not a home claim of 650 EUR")

    alone = _talk(ingress, ANA, ROOF)
    failed(check.lesson_09.exercise_1.sync(ingress, admin, alone), "has only the home claim")


BEN = "I am cust-ben, policy POL-1002."


def test_denied_claim_passes_for_ben_and_fails_for_ana_or_a_covered_date(
    desk: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    begin(9, admin)
    ben = _talk(ingress, BEN, "My luggage was lost on a flight on 2025-03-02: 800 EUR.", prefix="ben")
    result = check.lesson_09.exercise_2.sync(ingress, admin, ben)
    assert result.ok, result
    ana = _talk(ingress, ANA, "My luggage was lost on a flight on 2025-03-02: 800 EUR.", prefix="ana")
    failed(check.lesson_09.exercise_2.sync(ingress, admin, ana), "is cust-ana's, not cust-ben's")
    covered = _talk(ingress, BEN, "My luggage was lost on a flight on 2024-03-02: 800 EUR.", prefix="ben")
    failed(check.lesson_09.exercise_2.sync(ingress, admin, covered), "none of the claims", "was denied")
    begin(9, admin)
    failed(check.lesson_09.exercise_2.sync(ingress, admin, ben), "filed before you began")


FLOOD = "A flood hit my home on 2025-10-01: 5000 EUR of damage."
CHEN = "Hello, this is cust-chen with policy POL-1003."
REASON = "the damage predates the policy: see the inspection report"


def _large_claim(ingress: Ingress, admin: Admin) -> tuple[str, str, str]:
    conversation = _talk(ingress, CHEN, prefix="chen")
    turn = ingress.send(DESK, "run", FLOOD, key=conversation).invocation_id
    claim = claim_id(conversation)
    wait_for(f"the approval of {claim}", lambda: ingress.call(APPROVALS, "show", key=claim))
    observe.wait_for_status(admin, turn, "suspended")
    return conversation, claim, turn


def _decide(ingress: Ingress, claim: str, *, approve: bool, reason: str) -> None:
    ingress.call(APPROVALS, "decide", {"approver": "maria", "approve": approve, "reason": reason}, key=claim)


def test_rejection_across_a_crash_passes_and_refuses_a_partial_reason(
    desk: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    begin(9, admin)
    conversation, claim, turn = _large_claim(ingress, admin)
    desk.kill()
    desk.start()
    _decide(ingress, claim, approve=False, reason=REASON)
    ingress.attach(turn)
    result = check.lesson_09.exercise_3.sync(ingress, admin, conversation, claim, REASON)
    assert result.ok, result
    failed(check.lesson_09.exercise_3.sync(ingress, admin, conversation, claim, "the damage"), "its reason is")


def test_rejection_fails_without_a_crash_or_when_approved(desk: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    begin(9, admin)
    conversation, claim, turn = _large_claim(ingress, admin)
    _decide(ingress, claim, approve=False, reason=REASON)
    ingress.attach(turn)
    failed(check.lesson_09.exercise_3.sync(ingress, admin, conversation, claim, REASON), "in one process")
    conversation, claim, turn = _large_claim(ingress, admin)
    _decide(ingress, claim, approve=True, reason="photos checked")
    ingress.attach(turn)
    failed(check.lesson_09.exercise_3.sync(ingress, admin, conversation, claim, REASON), "not rejected")


def test_a_stopped_desk_is_named(desk: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    begin(9, admin)
    desk.kill()
    try:
        result = check.lesson_09.exercise_1.sync(ingress, admin, "anyone")
    finally:
        desk.start()
    failed(result, "nothing listens at")
    assert "desk.start()" in result.hint


def test_a_paused_turn_is_named_with_how_to_resume_it(desk: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    """A learner who waits ~30 s between desk.kill() and desk.start() finds the turn paused: the check says so."""
    begin(9, admin)
    conversation = f"chen-{uuid.uuid4().hex[:6]}"
    desk.kill()
    try:
        turn = ingress.send(DESK, "run", CHEN, key=conversation).invocation_id
        pause(admin, turn)
    finally:
        desk.start()
    result = check.lesson_09.exercise_3.sync(ingress, admin, conversation, claim_id(conversation), REASON)
    failed(result, f"CapstoneClaimDesk {turn} is paused")
    assert f"admin.resume({turn!r})" in result.hint
    admin.resume(turn)
    ingress.attach(turn)
