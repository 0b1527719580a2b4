"""The pinned Restate CLI (`npx restate`, README) is a second, real client of the same server and agents."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from agent_lib.clients import Admin, Ingress
from agent_lib.serving import AgentProcess

CLI = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / "restate"


def _restate(admin: Admin, *args: str) -> str:
    out = subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RESTATE_ADMIN_URL": admin.url, "NO_COLOR": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_cli_is_the_pinned_version() -> None:
    out = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, timeout=60)
    assert "restate-cli 1.7.12" in out.stdout


def test_the_cli_sees_what_the_kit_registered_and_ran(
    weather: AgentProcess, admin: Admin, ingress: Ingress, key: str
) -> None:
    assert "WeatherAgent" in _restate(admin, "services", "list")
    sent = ingress.send("WeatherAgent", "run", "What is the weather in Oslo?", key=key)
    ingress.attach(sent.invocation_id)
    described = _restate(admin, "invocations", "describe", sent.invocation_id)
    assert "WeatherAgent" in described and "call LLM" in described and "Get weather" in described
    assert described.rstrip().endswith("completed")
    rows = _restate(admin, "sql", f"SELECT status FROM sys_invocation WHERE id = '{sent.invocation_id}'")
    assert "completed" in rows
