"""Lesson 06's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_lib import check, observe
from agent_lib.agents.flaky import SERVICE_NAME, set_booking_api
from agent_lib.check import CheckResult
from agent_lib.check._core import Began, wait_until
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess


def begin(admin: Admin) -> Began:
    """Begin lesson 06's exercises; then wait 20 ms: the server may stamp an invocation sent at once 1 ms before it."""
    began = check.lesson_06.begin(admin)
    time.sleep(0.02)
    return began


RECIPE = (
    "SELECT id, retry_count, last_failure FROM sys_invocation WHERE target_service_name = 'FlakyAgent' "
    "AND status <> 'completed' AND last_failure LIKE '%booking API%'"
)


@pytest.fixture(scope="module")
def flaky(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess("agent_lib.agents.flaky:flaky_service", admin=Admin(restate_server.admin_url), name="l06-flaky")
    with proc:
        yield proc


@pytest.fixture
def stuck(flaky: AgentProcess, ingress: Ingress, admin: Admin) -> Iterator[Callable[..., str]]:
    """Send bookings that get stuck (the booking API down for their key); kill them all at the end."""
    begin(admin)
    sent: list[str] = []

    def booking(key: str | None = None, retries: int = 2) -> str:
        key = key or f"trip-{uuid.uuid4().hex[:6]}"
        set_booking_api(key, up=False)
        invocation_id = ingress.send(SERVICE_NAME, "run", "Book a flight to Oslo.", key=key).invocation_id
        sent.append(invocation_id)
        if retries:
            observe.wait_for_retries(admin, invocation_id, retries)
        return invocation_id

    yield booking
    for invocation_id in sent:
        if admin.status(invocation_id) != "completed":
            try:
                admin.kill(invocation_id)
            except RestateError:
                pass


def _failed(result: CheckResult, *words: str) -> None:
    assert not result.ok, result
    assert all(w in result.message for w in words), result.message


def test_recipe_passes_and_finds_the_checks_own_stuck_booking_too(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    result = check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine)
    assert result.ok, result
    assert "one the check left stuck" in result.message
    assert "killed" not in result.message.split("(now killed)")[-1], result.message


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        (
            "SELECT id FROM sys_invocation WHERE status != 'completed'",
            ["waits in its key's queue", "WeatherAgent invocation (another service)", "stuck for another reason"],
        ),
        (
            "SELECT id FROM sys_invocation WHERE status = 'backing-off'",
            ["stuck for another reason"],
        ),
        (
            "SELECT id FROM sys_invocation WHERE status <> 'completed' AND last_failure LIKE '%booking API%'",
            ["WeatherAgent invocation (another service)"],
        ),
    ],
)
def test_recipe_refuses_a_query_that_a_quiet_server_would_pass(
    sql: str, named: list[str], weather: AgentProcess, stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    """Issue 20: these passed as "nothing else" while nothing else was unfinished; the check's decoys catch them."""
    mine = stuck()
    result = check.lesson_06.exercise_1.sync(ingress, admin, sql, mine)
    _failed(result, "your query also returns invocations the check planted", *named)
    assert "filter on all three" in result.hint
    planted = admin.query(
        "SELECT id FROM sys_invocation WHERE status <> 'completed' AND "
        "(target_service_key LIKE 'check-%' OR target_service_key LIKE 'check-other-service-%')"
    )
    assert not planted, f"the check left its decoys unfinished: {planted}"


def test_recipe_passes_with_the_lab_weather_agent_served_too(
    weather: AgentProcess, stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    result = check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine)
    assert result.ok, result
    assert "WeatherAgent invocation (another service)" in result.message


def test_recipe_fails_when_it_matches_one_id_only(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    mine = stuck()
    one = f"SELECT id FROM sys_invocation WHERE id = '{mine}'"
    _failed(check.lesson_06.exercise_1.sync(ingress, admin, one, mine), "not the one the check left stuck")


def test_recipe_fails_when_the_booking_was_killed_first(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    admin.kill(mine)
    observe.wait_for_status(admin, mine, "completed")
    _failed(check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine), "not stuck any more", "killed")


def test_recipe_fails_without_an_id_column(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    mine = stuck()
    sql = RECIPE.replace("SELECT id,", "SELECT id AS invocation,")
    _failed(check.lesson_06.exercise_1.sync(ingress, admin, sql, mine), "select the invocation's id as `id`")


def test_recipe_refuses_a_booking_from_before_the_exercises(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    begin(admin)
    _failed(check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine), "before you began the exercises")


def _queue(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> tuple[str, str]:
    key = f"queue-{uuid.uuid4().hex[:6]}"
    first = stuck(key)
    second = stuck(key, retries=0)
    return first, second


def test_cancel_passes_when_the_first_is_cancelled(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    first, second = _queue(stuck, ingress, admin)
    admin.cancel(first)
    observe.wait_for_status(admin, first, "completed")
    observe.wait_for_status(admin, second, ["running", "backing-off"])
    result = check.lesson_06.exercise_2.sync(admin, first, second)
    assert result.ok, result
    _failed(check.lesson_06.exercise_2.sync(admin, second, first), "wrong order")


def test_cancel_checked_at_once_waits_for_the_cancel_to_land(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    """Issue 20: admin.cancel(first) and the check at once failed with "cancel it": the cancel had not landed yet."""
    first, second = _queue(stuck, ingress, admin)
    observe.wait_for_retries(admin, first, 3)
    admin.cancel(first)
    result = check.lesson_06.exercise_2.sync(admin, first, second)
    assert result.ok, result


def test_cancel_fails_when_the_first_is_killed(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    first, second = _queue(stuck, ingress, admin)
    admin.kill(first)
    observe.wait_for_status(admin, first, "completed")
    _failed(check.lesson_06.exercise_2.sync(admin, first, second), "'[409] killed', not by a cancel")


def test_cancel_fails_when_the_second_is_cancelled(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    first, second = _queue(stuck, ingress, admin)
    admin.cancel(second)
    wait_until(lambda: admin.status(second) in (None, "completed"), "the second message to end")
    _failed(check.lesson_06.exercise_2.sync(admin, first, second), "did you cancel the second one?")


def test_cancel_fails_when_the_second_was_sent_after_the_first_ended(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    key = f"late-{uuid.uuid4().hex[:6]}"
    first = stuck(key)
    admin.cancel(first)
    observe.wait_for_status(admin, first, "completed")
    second = stuck(key)
    _failed(check.lesson_06.exercise_2.sync(admin, first, second), "never waited behind it")


def _paused(stuck: Callable[..., str], admin: Admin) -> tuple[str, int]:
    """Pause a stuck booking; return its id and the retry count read just before the pause (a paused row has none)."""
    invocation_id = stuck(retries=2)
    count = int(observe.wait_for_retries(admin, invocation_id, 2)["retry_count"])
    admin.pause(invocation_id)
    observe.wait_for_status(admin, invocation_id, "paused")
    return invocation_id, count


def test_a_paused_row_shows_no_retry_count_and_the_hint_says_where_to_read_it(
    stuck: Callable[..., str], admin: Admin
) -> None:
    """Issue 20: the solution read retry_count from the paused row, got nothing, and passed 0."""
    invocation_id, count = _paused(stuck, admin)
    from_paused_row = int((admin.invocation(invocation_id) or {}).get("retry_count") or 0)
    admin.resume(invocation_id)
    observe.wait_for_retries(admin, invocation_id, count + 2)
    if from_paused_row == 0:
        result = check.lesson_06.exercise_3.sync(admin, invocation_id, from_paused_row)
        _failed(result, "a retry count of 0")
        assert "just before you pause" in result.hint
    assert check.lesson_06.exercise_3.sync(admin, invocation_id, count).ok


def test_resume_refuses_a_count_the_ledger_did_not_see_before_the_pause(
    stuck: Callable[..., str], admin: Admin
) -> None:
    invocation_id, count = _paused(stuck, admin)
    admin.resume(invocation_id)
    observe.wait_for_retries(admin, invocation_id, count + 2)
    _failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count + 50), "the ledger has only")


def test_resume_checked_at_once_waits_for_the_resume_to_land(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    admin.resume(invocation_id)
    result = check.lesson_06.exercise_3.sync(admin, invocation_id, count)
    assert result.ok, result


def test_resume_passes_when_the_count_goes_on(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    _failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count), "still paused")
    admin.resume(invocation_id)
    observe.wait_for_retries(admin, invocation_id, count + 2)
    result = check.lesson_06.exercise_3.sync(admin, invocation_id, count)
    assert result.ok, result
    _failed(check.lesson_06.exercise_3.sync(admin, invocation_id, 0), "a retry count of 0")


def test_resume_fails_on_an_invocation_never_paused(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id = stuck(retries=3)
    _failed(check.lesson_06.exercise_3.sync(admin, invocation_id, 1), "never paused")


def test_resume_fails_when_resumed_with_the_fix(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    key = str(admin.invocation(invocation_id)["target_service_key"])  # type: ignore[index]
    set_booking_api(key, up=True)
    admin.resume(invocation_id)
    ingress.attach(invocation_id)
    _failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count), "it completed", "leave the booking API down")
