"""Lesson 06's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_lib import check, observe
from agent_lib.agents import hotel
from agent_lib.agents.flaky import SERVICE_NAME, set_booking_api
from agent_lib.check._core import wait_until
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed

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
    begin(6, admin)
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
    failed(result, "your query also returns invocations the check planted", *named)
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
    failed(check.lesson_06.exercise_1.sync(ingress, admin, one, mine), "not the one the check left stuck")


def test_recipe_fails_when_the_booking_was_killed_first(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    admin.kill(mine)
    observe.wait_for_status(admin, mine, "completed")
    failed(check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine), "not stuck any more", "killed")


def test_recipe_fails_without_an_id_column(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    mine = stuck()
    sql = RECIPE.replace("SELECT id,", "SELECT id AS invocation,")
    failed(check.lesson_06.exercise_1.sync(ingress, admin, sql, mine), "select the invocation's id as `id`")


def test_recipe_refuses_a_booking_from_before_the_exercises(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    mine = stuck()
    begin(6, admin)
    failed(check.lesson_06.exercise_1.sync(ingress, admin, RECIPE, mine), "before you began the exercises")


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
    failed(check.lesson_06.exercise_2.sync(admin, second, first), "wrong order")


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
    failed(check.lesson_06.exercise_2.sync(admin, first, second), "'[409] killed', not by a cancel")


def test_cancel_fails_when_the_second_is_cancelled(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    first, second = _queue(stuck, ingress, admin)
    admin.cancel(second)
    wait_until(lambda: admin.status(second) in (None, "completed"), "the second message to end")
    failed(check.lesson_06.exercise_2.sync(admin, first, second), "did you cancel the second one?")


def test_cancel_fails_when_the_second_was_sent_after_the_first_ended(
    stuck: Callable[..., str], ingress: Ingress, admin: Admin
) -> None:
    key = f"late-{uuid.uuid4().hex[:6]}"
    first = stuck(key)
    admin.cancel(first)
    observe.wait_for_status(admin, first, "completed")
    second = stuck(key)
    failed(check.lesson_06.exercise_2.sync(admin, first, second), "never waited behind it")


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
        failed(result, "a retry count of 0")
        assert "just before you pause" in result.hint
    assert check.lesson_06.exercise_3.sync(admin, invocation_id, count).ok


def test_resume_refuses_a_count_the_ledger_did_not_see_before_the_pause(
    stuck: Callable[..., str], admin: Admin
) -> None:
    invocation_id, count = _paused(stuck, admin)
    admin.resume(invocation_id)
    observe.wait_for_retries(admin, invocation_id, count + 2)
    failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count + 50), "the ledger has only")


def test_resume_checked_at_once_waits_for_the_resume_to_land(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    admin.resume(invocation_id)
    result = check.lesson_06.exercise_3.sync(admin, invocation_id, count)
    assert result.ok, result


def test_resume_passes_when_the_count_goes_on(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count), "still paused")
    admin.resume(invocation_id)
    observe.wait_for_retries(admin, invocation_id, count + 2)
    result = check.lesson_06.exercise_3.sync(admin, invocation_id, count)
    assert result.ok, result
    failed(check.lesson_06.exercise_3.sync(admin, invocation_id, 0), "a retry count of 0")


def test_resume_fails_on_an_invocation_never_paused(stuck: Callable[..., str], admin: Admin) -> None:
    invocation_id = stuck(retries=3)
    failed(check.lesson_06.exercise_3.sync(admin, invocation_id, 1), "never paused")


def test_resume_fails_when_resumed_with_the_fix(stuck: Callable[..., str], ingress: Ingress, admin: Admin) -> None:
    invocation_id, count = _paused(stuck, admin)
    key = str(admin.invocation(invocation_id)["target_service_key"])  # type: ignore[index]
    set_booking_api(key, up=True)
    admin.resume(invocation_id)
    ingress.attach(invocation_id)
    failed(check.lesson_06.exercise_3.sync(admin, invocation_id, count), "it completed", "leave the booking API down")


# --- exercise 4: restart a wrong turn as new, from a step, on the fix ---

TRIP = "Book 2 nights in Porto and 3 nights in Faro"


@pytest.fixture(scope="module")
def hotel_versions(restate_server: RestateServer, _kit_data: Path) -> Iterator[dict[str, AgentProcess]]:
    """HotelAgent v1 and v2, each its own process and deployment; `_latest` flips which one new turns go to."""
    admin = Admin(restate_server.admin_url)
    procs = {
        version: AgentProcess(f"agent_lib.agents.hotel:service_{version}", admin=admin, name=f"l06-hotel-{version}")
        for version in ("v1", "v2")
    }
    with procs["v1"], procs["v2"]:
        yield procs


def _latest(admin: Admin, proc: AgentProcess) -> None:
    """Make `proc`'s deployment the latest of HotelAgent again (registering it again moves it to the front)."""
    admin.register(proc.url)


@pytest.fixture
def trip(hotel_versions: dict[str, AgentProcess], ingress: Ingress, admin: Admin) -> str:
    """A new guest's trip, answered wrongly by v1; then the fix, v2, is the latest deployment."""
    begin(6, admin)
    _latest(admin, hotel_versions["v1"])
    sent = ingress.send(hotel.SERVICE_NAME, "run", TRIP, key=f"guest-{uuid.uuid4().hex[:6]}").invocation_id
    assert ingress.attach(sent)["version"] == "v1"
    _latest(admin, hotel_versions["v2"])
    return sent


def _entry(admin: Admin, turn: str, which: str) -> int:
    """An entry of the trip's journal: "answer", its last call LLM; "booked", the entry before it; else, a booking."""
    entries = admin.journal(turn)
    answer = max(e["index"] for e in entries if e["name"] == "call LLM")
    if which == "answer":
        return int(answer)
    booked = [e["index"] for e in entries if e["name"] == "Book room"]
    return int(answer - 1) if which == "booked" else int(booked[0])


def _restart(admin: Admin, ingress: Ingress, turn: str, from_entry: int | None) -> str:
    redo = admin.restart_as_new(turn, from_entry=from_entry)
    ingress.attach(redo)
    return redo


def test_restart_after_the_bookings_on_the_fix_passes(trip: str, ingress: Ingress, admin: Admin) -> None:
    redo = _restart(admin, ingress, trip, _entry(admin, trip, "booked"))
    result = check.lesson_06.exercise_4.sync(ingress, admin, trip, redo)
    assert result.ok, result
    assert "none ran again" in result.message and "240 EUR" in result.message and "360 EUR" in result.message


def test_restart_checked_at_once_waits_for_the_restart_to_finish(trip: str, ingress: Ingress, admin: Admin) -> None:
    redo = admin.restart_as_new(trip, from_entry=_entry(admin, trip, "booked"))
    assert check.lesson_06.exercise_4.sync(ingress, admin, trip, redo).ok


def test_restart_from_the_start_is_refused_the_rooms_were_booked_again(
    trip: str, ingress: Ingress, admin: Admin
) -> None:
    redo = _restart(admin, ingress, trip, None)
    result = failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, redo), "booked 2 room(s) again", "start")
    assert "from_entry" in result.hint


def test_restart_after_the_first_booking_only_is_refused(trip: str, ingress: Ingress, admin: Admin) -> None:
    redo = _restart(admin, ingress, trip, _entry(admin, trip, "first booking"))
    failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, redo), "booked 1 room(s) again", "3 nights in Faro")


def test_restart_before_the_fix_is_refused(
    hotel_versions: dict[str, AgentProcess], trip: str, ingress: Ingress, admin: Admin
) -> None:
    _latest(admin, hotel_versions["v1"])
    redo = _restart(admin, ingress, trip, _entry(admin, trip, "booked"))
    result = failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, redo), "answered by 'v1'", "before v2")
    assert "serve the fix first" in result.hint


def test_restart_past_the_answer_is_refused_the_model_was_not_called(trip: str, ingress: Ingress, admin: Admin) -> None:
    redo = _restart(admin, ingress, trip, _entry(admin, trip, "answer"))
    failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, redo), "model was not called again", "wrong answer")


def test_sending_the_trip_again_instead_of_a_restart_is_refused(trip: str, ingress: Ingress, admin: Admin) -> None:
    key = str((admin.invocation(trip) or {})["target_service_key"])
    resent = ingress.send(hotel.SERVICE_NAME, "run", TRIP, key=key).invocation_id
    ingress.attach(resent)
    failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, resent), "not a restart", "as a new message")
    failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, trip), "the same invocation twice")


def test_a_turn_answered_by_the_fix_has_nothing_to_regenerate(
    hotel_versions: dict[str, AgentProcess], ingress: Ingress, admin: Admin
) -> None:
    begin(6, admin)
    _latest(admin, hotel_versions["v2"])
    right = ingress.send(hotel.SERVICE_NAME, "run", TRIP, key=f"guest-{uuid.uuid4().hex[:6]}").invocation_id
    ingress.attach(right)
    redo = _restart(admin, ingress, right, _entry(admin, right, "booked"))
    failed(check.lesson_06.exercise_4.sync(ingress, admin, right, redo), "answered by 'v2', not by v1")


def test_a_trip_from_before_the_exercises_is_refused(trip: str, ingress: Ingress, admin: Admin) -> None:
    redo = _restart(admin, ingress, trip, _entry(admin, trip, "booked"))
    begin(6, admin)
    failed(check.lesson_06.exercise_4.sync(ingress, admin, trip, redo), "before you began the exercises")
