"""`python -m agent_lib up` brings killed agents back, and what was in flight finishes with no human (issue 23).

The finished agents that `up` serves retry as a service would (agents/_common.py SERVICE_RETRY_POLICY): one try a
second at most, for about 20 minutes. With the lessons' policy (120 tries, about 30 s counted across outages) the
turns below, which live through three outages of some 12 s each, end paused: run this file with
AGENT_RETRY_POLICY=lesson to see it fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent_lib._process import pid_path
from agent_lib.agents._common import _LESSON_POLICY, SERVICE_RETRY_POLICY
from agent_lib.clients import Admin, Ingress
from agent_lib.lab import Lab, LabConfig

REPO = Path(__file__).resolve().parent.parent
QUESTION = "What is the weather in New York?"
ANSWER = "The weather in New York is sunny, 72°F"


def _patience(policy: object) -> float:
    """Seconds of failures a retry policy lives through before it pauses (the sum of its waits)."""
    wait, total = policy.initial_interval, timedelta(0)  # type: ignore[attr-defined]
    for _ in range(policy.max_attempts - 1):  # type: ignore[attr-defined]
        total += wait
        wait = min(wait * policy.exponentiation_factor, policy.max_interval)  # type: ignore[attr-defined]
    return total.total_seconds()


def test_the_service_policy_outlives_ten_minutes_and_picks_up_within_a_second() -> None:
    assert _patience(SERVICE_RETRY_POLICY) >= 600
    assert SERVICE_RETRY_POLICY.max_interval <= timedelta(seconds=1)
    assert SERVICE_RETRY_POLICY.on_max_attempts == "pause"
    assert _patience(_LESSON_POLICY) < 40, "the lessons' policy pauses soon, so that a lesson can show a pause"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private server (a lab without agents: `up` starts them), and the environment that points `up` at it."""
    with Lab(LabConfig(data=tmp_path / "kit", agents=())) as server_only:
        env = {**server_only.environ(), "AGENT_LEDGER": str(tmp_path / "kit" / "ledger.sqlite")}
        try:
            yield env
        finally:
            subprocess.run([sys.executable, "-m", "agent_lib", "down"], cwd=REPO, env=env, capture_output=True)


def _up(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent_lib", "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_turns_in_flight_live_through_kills_and_restarts_by_up(lab: dict[str, str]) -> None:
    _up(lab)
    ingress, admin = Ingress(lab["RESTATE_INGRESS_URL"], timeout=300), Admin(lab["RESTATE_ADMIN_URL"])
    pid_file = pid_path("agent", int(lab["AGENTS_PORT"]))  # the lab points this process's RESTATE_KIT_DATA there
    keys = [f"outage-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    sent = {key: ingress.send("WeatherAgent", "run", QUESTION, key=key).invocation_id for key in keys}
    for _ in range(3):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        time.sleep(12)
        _up(lab)
    answers = {key: ingress.attach(invocation) for key, invocation in sent.items()}
    assert set(answers.values()) == {ANSWER}, "every turn answers as if nothing happened"
    rows = admin.query(
        "SELECT target_service_key AS key, status, count(*) AS n FROM sys_invocation "
        "WHERE target_service_name = 'WeatherAgent' GROUP BY target_service_key, status"
    )
    assert {(r["key"], r["status"], r["n"]) for r in rows} == {(k, "completed", 1) for k in keys}, (
        "each turn completed once, and none was paused"
    )
