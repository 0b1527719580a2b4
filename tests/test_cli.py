"""The CLI and the set-up script, as a newcomer meets them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess
from tests.helpers import wait_failure, wait_status

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_lib", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_doctor_passes_here() -> None:
    out = _cli("doctor")
    assert out.returncode == 0, out.stdout
    assert "restate-server 1.7.12" in out.stdout and "FIX" not in out.stdout


def test_status_without_a_server_says_how_to_start_one() -> None:
    port = free_port()
    out = _cli("status", env={"RESTATE_ADMIN_URL": f"http://127.0.0.1:{port}"})
    assert out.returncode == 1 and "make server" in out.stdout


def test_up_registers_the_finished_agents_and_down_stops_them(tmp_path: Path) -> None:
    restate_server = RestateServer(
        tmp_path / "server", ingress_port=free_port(), admin_port=free_port(), node_port=free_port()
    ).start()
    env = {
        "RESTATE_INGRESS_URL": restate_server.ingress_url,
        "RESTATE_ADMIN_URL": restate_server.admin_url,
        "AGENTS_PORT": str(free_port()),
        "RESTATE_KIT_DATA": str(tmp_path),
    }
    up = _cli("up", env=env)
    assert up.returncode == 0, up.stderr
    assert "Using the Restate server" in up.stdout and "WeatherAgent" in up.stdout
    again = _cli("up", env=env)
    assert again.returncode == 0 and "already run" in again.stdout
    down = _cli("down", env=env)
    assert "stopped agent-" in down.stdout
    try:
        assert restate_server.healthy(), "down stops only what the kit started, not an external server"
        assert not list((tmp_path / "pids").glob("*.pid"))
    finally:
        restate_server.stop()


def test_keys_makes_the_pair_once_prints_the_public_key_and_where_the_private_one_is(tmp_path: Path) -> None:
    env = {"RESTATE_KIT_DATA": str(tmp_path)}
    first, again, rotated = _cli("keys", env=env), _cli("keys", env=env), _cli("keys", "--rotate", env=env)
    assert first.returncode == again.returncode == rotated.returncode == 0, first.stderr + rotated.stderr
    private = tmp_path / "identity" / "restate-identity.pem"
    public = re.findall(r"public key: +(publickeyv1_\w+)", first.stdout + again.stdout + rotated.stdout)
    assert len(public) == 3 and public[0] == public[1] != public[2], "made once; --rotate makes a new one"
    assert f"private key: {private}" in first.stdout and "A new key pair" in first.stdout
    assert "The kit's key pair" in again.stdout and "until it restarts" in rotated.stdout
    secret = private.read_text().splitlines()[1]
    assert all(secret not in out.stdout + out.stderr for out in (first, again, rotated)), "the private key is shown"
    private.write_text("not a key")
    broken = _cli("keys", env=env)
    assert broken.returncode == 1 and "keys --rotate` replaces it" in broken.stderr


def test_find_python_finds_3_12_or_newer() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "find-python")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    version = subprocess.run(
        [out.stdout.strip(), "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "True"


def test_find_python_says_what_to_install(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "none"), "PYTHON": ""}
    probe = subprocess.run(
        ["/usr/bin/env", "python3", "-c", "import sys; print(sys.version_info >= (3, 12))"],
        capture_output=True,
        text=True,
        env=env,
    )
    if probe.stdout.strip() == "True":
        pytest.skip("this machine's system python3 is 3.12 or newer, so find-python has nothing to refuse here")
    out = subprocess.run([str(ROOT / "scripts" / "find-python")], capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "No Python 3.12 or newer was found" in out.stderr and "pyenv install 3.12" in out.stderr


def test_down_leaves_alone_a_program_that_took_a_stale_pid(tmp_path: Path) -> None:
    """After a reboot a recorded pid may belong to another program: `make stop` must not kill it."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        pids = tmp_path / "pids"
        pids.mkdir()
        (pids / "restate-server-9070.pid").write_text(str(stranger.pid))
        (pids / "agent-9080.pid").write_text(str(stranger.pid))
        (pids / "agent-9180.pid").write_text("garbage")
        down = _cli("down", env={"RESTATE_KIT_DATA": str(tmp_path)})
        assert down.returncode == 0, down.stderr
        assert stranger.poll() is None, "down killed a process that is not the kit's"
        assert f"pid {stranger.pid} is now another program, left alone" in down.stdout
        assert "nothing to stop" in down.stdout
        assert not list(pids.glob("*.pid")), "stale pid files are removed"
    finally:
        stranger.kill()
        stranger.wait()


def test_status_names_what_backs_off_and_why_and_the_paused_ones(
    restate_server: RestateServer, test_services: AgentProcess
) -> None:
    ingress, admin = Ingress(restate_server.ingress_url), Admin(restate_server.admin_url)
    sent = ingress.send("TestAlwaysFails", "attempt", "the scanner")
    wait_failure(admin, sent.invocation_id, 30)
    env = {"RESTATE_ADMIN_URL": restate_server.admin_url, "AGENTS_PORT": str(free_port())}
    waiting = ""
    for _ in range(5):  # between two tries it is backing-off; a try itself takes a few ms
        waiting = _cli("status", env=env).stdout
        if "Backing off" in waiting:
            break
    assert f"TestAlwaysFails/attempt  {sent.invocation_id}: " in waiting and "the scanner is broken" in waiting, waiting
    admin.pause(sent.invocation_id)
    wait_status(admin, sent.invocation_id, "paused", 30)
    try:
        out = _cli("status", env={"RESTATE_ADMIN_URL": restate_server.admin_url, "AGENTS_PORT": str(free_port())})
        assert out.returncode == 0, out.stderr
        assert "TestAlwaysFails" in out.stdout and "The finished agents: not running" in out.stdout
        assert re.search(r"Invocations: .*\d+ paused", out.stdout), out.stdout
        assert f"TestAlwaysFails/attempt  npx restate invocations resume {sent.invocation_id}" in out.stdout
    finally:
        admin.kill(sent.invocation_id)
