"""The always-replay mode (RESTATE_ALWAYS_REPLAY=1, `make test-replay`) catches handlers that are not deterministic."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent_lib._modes import suspend_after
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess
from tests.helpers import wait_failure

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

REPLAY_SETTING = "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"


def _server(base: Path, **kwargs: bool) -> RestateServer:
    return RestateServer(base, ingress_port=free_port(), admin_port=free_port(), node_port=free_port(), **kwargs)


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_the_flag_sets_the_servers_inactivity_timeout_to_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv("RESTATE_ALWAYS_REPLAY", value)
    server = _server(tmp_path)
    assert server.always_replay
    assert server._env()[REPLAY_SETTING] == "0s"
    assert "always replay" in repr(server)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_without_the_flag_the_server_keeps_its_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("RESTATE_ALWAYS_REPLAY", raising=False)
    else:
        monkeypatch.setenv("RESTATE_ALWAYS_REPLAY", value)
    server = _server(tmp_path)
    assert not server.always_replay
    assert REPLAY_SETTING not in server._env()


def test_an_explicit_choice_wins_over_the_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESTATE_ALWAYS_REPLAY", "1")
    assert REPLAY_SETTING not in _server(tmp_path, always_replay=False)._env()
    monkeypatch.delenv("RESTATE_ALWAYS_REPLAY")
    assert _server(tmp_path, always_replay=True)._env()[REPLAY_SETTING] == "0s"


DrawerOn = Callable[[RestateServer], tuple[Admin, Ingress]]


@pytest.fixture
def drawer_on() -> Iterator[DrawerOn]:
    """Start a private server (always replay or not) with the uuid4-drawing service registered on it."""
    started: list[tuple[RestateServer, AgentProcess]] = []

    def start(server: RestateServer) -> tuple[Admin, Ingress]:
        server.start()
        admin = Admin(server.admin_url)
        proc = AgentProcess(["tests.services:drawer"], admin=admin, name="drawer").start()
        started.append((server, proc))
        return admin, Ingress(server.ingress_url)

    yield start
    for server, proc in started:
        proc.stop()
        server.stop()


def test_a_handler_drawing_uuid4_outside_run_passes_without_the_mode(tmp_path: Path, drawer_on: DrawerOn) -> None:
    admin, ingress = drawer_on(_server(tmp_path, always_replay=False))
    assert ingress.call("TestDrawsOutsideRun", "draw", "ticket").startswith("ticket: ")


def test_always_replay_catches_a_handler_drawing_uuid4_outside_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, drawer_on: DrawerOn
) -> None:
    monkeypatch.setenv("RESTATE_ALWAYS_REPLAY", "1")
    admin, ingress = drawer_on(_server(tmp_path))
    sent = ingress.send("TestDrawsOutsideRun", "draw", "ticket")
    row = wait_failure(admin, sent.invocation_id, 30)
    assert row.get("status") != "completed", "the handler passed: always replay did not replay it"
    assert "Journal mismatch" in str(row.get("last_failure")), row
    assert "ticket" in str(row.get("last_failure")), "the mismatch names the step whose name changed"
    admin.kill(sent.invocation_id)


def test_agents_that_set_their_own_inactivity_timeout_follow_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler's own inactivity_timeout wins over the server's, so in the mode the agents' own one is 0."""
    monkeypatch.delenv("RESTATE_ALWAYS_REPLAY", raising=False)
    assert suspend_after(2) == timedelta(seconds=2)
    monkeypatch.setenv("RESTATE_ALWAYS_REPLAY", "1")
    assert suspend_after(2) == timedelta(0)


def test_the_finished_agents_take_their_inactivity_timeout_from_the_mode() -> None:
    code = "from agent_lib.agents import claims, versioned; print(claims.SUSPEND_AFTER, versioned.SUSPEND_AFTER)"
    for flag, expected in (("1", "0:00:00 0:00:00"), ("0", "0:00:02 0:00:02")):
        env = {**os.environ, "RESTATE_ALWAYS_REPLAY": flag}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
