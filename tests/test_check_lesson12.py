"""Lesson 12's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_lib import check, identity
from agent_lib.check import _core
from agent_lib.check._core import Began
from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess
from agent_lib.tracing import TraceCollector
from tests.helpers import begin, failed

pytestmark = pytest.mark.slow

TRACED = "agent_lib.agents.traced:traced_service"
WEATHER = "agent_lib.agents.weather:weather_service"


@dataclass
class Lab:
    """The lesson's set-up: a server that traces and signs, and the traced agent in a process the tests kill."""

    traces: TraceCollector
    pair: identity.KeyPair
    admin: Admin
    ingress: Ingress
    agents: AgentProcess
    began: Began


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, _kit_data: Path) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lesson12")
    pair = identity.key_pair(base / "identity")
    with TraceCollector() as traces:
        server = RestateServer(
            base / "restate",
            ingress_port=free_port(),
            admin_port=free_port(),
            node_port=free_port(),
            env={**traces.server_env(), **identity.server_env(pair)},
        )
        with server:
            admin = Admin(server.admin_url)
            began = begin(12, admin)
            env = {**traces.agent_env(), **identity.agent_env(pair)}
            with AgentProcess(TRACED, admin=admin, env=env, name="l12-check-traced") as agents:
                yield Lab(traces, pair, admin, Ingress(server.ingress_url), agents, began)


@pytest.fixture
def since(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Lab:
    """Count the exercises as begun before the lab's agents registered."""
    monkeypatch.setitem(_core._began, 12, lab.began)
    return lab


def _turn(lab: Lab, gate: str | None, skip: int = 0) -> str:
    """Ask TracedWeather on a new key; kill and restart its process at `gate` (if any); return the invocation id."""
    held = Gate(gate).arm(skip=skip) if gate else None
    sent = lab.ingress.send("TracedWeather", "run", "What is the weather in Madrid?", key=f"t-{uuid.uuid4().hex[:8]}")
    if held is not None:
        held.wait_reached(timeout=120, alive=lambda: lab.agents.running)
        lab.agents.kill()
        lab.agents.start()
    lab.ingress.attach(sent.invocation_id)
    return sent.invocation_id


# --- exercise 1: a kill after the last model call -----------------------------------------------------------------


def test_a_kill_after_the_last_model_call_passes(since: Lab) -> None:
    result = check.lesson_12.exercise_1.sync(since.admin, since.traces, _turn(since, "traced.store_session.before"))
    assert result.ok, result
    assert "traced once each, all in the killed process" in result.message


def test_a_kill_before_the_second_model_call_fails(since: Lab) -> None:
    result = check.lesson_12.exercise_1.sync(since.admin, since.traces, _turn(since, "traced.model.new", skip=1))
    failed(result, "came after the first failed attempt", "the kill came before the last model call")


def test_a_turn_never_killed_fails(since: Lab) -> None:
    result = check.lesson_12.exercise_1.sync(since.admin, since.traces, _turn(since, None))
    failed(result, "failed: nothing was killed")


def test_a_turn_from_before_the_exercises_is_refused(lab: Lab) -> None:
    invocation_id = _turn(lab, None)
    begin(12, lab.admin)
    failed(check.lesson_12.exercise_1.sync(lab.admin, lab.traces, invocation_id), "before you began the exercises")


def test_another_services_turn_is_refused(since: Lab) -> None:
    with AgentProcess(WEATHER, admin=since.admin, env=identity.agent_env(since.pair), name="l12-other") as other:
        assert other.running
        sent = since.ingress.send("WeatherAgent", "run", "What is the weather in Rome?", key=uuid.uuid4().hex[:8])
        since.ingress.attach(sent.invocation_id)
    failed(check.lesson_12.exercise_1.sync(since.admin, since.traces, sent.invocation_id), "not TracedWeather/run")


def test_a_collector_that_is_not_one_is_refused(since: Lab) -> None:
    invocation_id = _turn(since, None)
    failed(check.lesson_12.exercise_1.sync(since.admin, "traces", invocation_id), "not a TraceCollector")


def test_a_collector_that_received_nothing_is_refused(since: Lab) -> None:
    invocation_id = _turn(since, "traced.store_session.before")
    with TraceCollector() as empty:
        result = check.lesson_12.exercise_1.sync(since.admin, empty, invocation_id)
    failed(result, "did not receive the whole trace")


# --- exercise 2: an agent that refuses unsigned requests -----------------------------------------------------------


def _weather(lab: Lab, name: str, *, signed: bool) -> AgentProcess:
    env = {"WEATHER_SERVICE_NAME": name, **(identity.agent_env(lab.pair) if signed else {})}
    return AgentProcess(WEATHER, admin=lab.admin, env=env, name=f"l12-{name.lower()}")


def test_a_locked_agent_passes(since: Lab) -> None:
    with _weather(since, "L12Locked", signed=True):
        result = check.lesson_12.exercise_2.sync(since.ingress, since.admin, "L12Locked")
    assert result.ok, result
    assert "refused (401)" in result.message and "Lisbon" in result.message


def test_an_agent_that_takes_unsigned_requests_fails(since: Lab) -> None:
    with _weather(since, "L12Open", signed=False):
        result = check.lesson_12.exercise_2.sync(since.ingress, since.admin, "L12Open")
    failed(result, "accepted an unsigned POST", "not 401")


def test_an_agent_served_before_the_exercises_is_refused(lab: Lab) -> None:
    with _weather(lab, "L12Early", signed=True):
        begin(12, lab.admin)
        failed(check.lesson_12.exercise_2.sync(lab.ingress, lab.admin, "L12Early"), "before you began the exercises")


def test_a_stopped_agent_is_refused(since: Lab) -> None:
    with _weather(since, "L12Stopped", signed=True):
        pass
    failed(check.lesson_12.exercise_2.sync(since.ingress, since.admin, "L12Stopped"), "nothing listens")


def test_checks_never_raise_on_nonsense(since: Lab) -> None:
    failed(check.lesson_12.exercise_1.sync(since.admin, since.traces, "not-an-id"), "not an invocation id")
    failed(check.lesson_12.exercise_2.sync(since.ingress, since.admin, "NoSuchAgent"), "NoSuchAgent")
