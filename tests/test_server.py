"""The native server's lifecycle and its errors, each asserted by message."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest

from agent_lib import server as srv_mod
from agent_lib._process import pid_alive
from agent_lib.server import (
    ExternalServer,
    RestateServer,
    ServerError,
    connect,
    find_server_binary,
    free_port,
    pinned_version,
    port_is_free,
)

ROOT = Path(__file__).resolve().parent.parent


def _ports() -> dict[str, int]:
    return {"ingress_port": free_port(), "admin_port": free_port(), "node_port": free_port()}


def test_pinned_version_is_the_lockfile_version() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@restatedev/restate-server"]["version"] == pinned_version() == "1.7.12"
    assert lock["packages"]["node_modules/@restatedev/restate"]["version"] == "1.7.12"


def test_binary_is_found_in_node_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESTATE_SERVER_BIN", raising=False)
    assert "node_modules" in str(find_server_binary())


def test_missing_binary_says_make_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RESTATE_SERVER_BIN", raising=False)
    monkeypatch.setattr(srv_mod, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match=r"no restate-server binary found: run `make setup`"):
        find_server_binary()
    with pytest.raises(ServerError, match="make setup"):
        RestateServer(tmp_path / "data", **_ports()).start()


def test_bad_binary_env_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESTATE_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(ServerError, match="RESTATE_SERVER_BIN=.*nope is not an executable file"):
        find_server_binary()


def test_server_dying_at_start_shows_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "restate-server"
    fake.write_text("#!/bin/sh\necho 'cannot open the data dir' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(ServerError, match=r"exited with code 3(.|\n)*cannot open the data dir"):
        RestateServer(tmp_path / "data", binary=fake, **_ports()).start(timeout=10)


def test_taken_port_is_refused_clearly(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not port_is_free(taken)
        ports = _ports() | {"ingress_port": taken}
        with pytest.raises(ServerError, match=rf"port {taken} is already taken by another process"):
            RestateServer(tmp_path / "data", **ports).start()


def test_start_restart_and_stop_keep_the_data(tmp_path: Path) -> None:
    server = RestateServer(tmp_path / "data", **_ports())
    with server:
        assert server.healthy() and server.running
        pid = server.pid
        assert (tmp_path / "data" / "node-1").is_dir()
        server.restart(crash=True)
        assert server.healthy() and server.pid != pid
    assert not server.running and not server.healthy()
    assert port_is_free(server.ingress_port) and port_is_free(server.admin_port)


def test_binds_to_loopback_only(restate_server: RestateServer) -> None:
    for port in (restate_server.ingress_port, restate_server.admin_port, restate_server.node_port):
        addrs = {line.split()[3] for line in os.popen("ss -ltnH").read().splitlines() if line.split()}
        assert f"127.0.0.1:{port}" in addrs
        assert f"0.0.0.0:{port}" not in addrs and f"*:{port}" not in addrs


def test_external_server_that_does_not_answer() -> None:
    port = free_port()
    dead = ExternalServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    assert not dead.healthy()
    with pytest.raises(ServerError, match="no Restate server answers at .*start one with `make server`"):
        dead.start(timeout=0.5)


def test_external_server_wraps_a_running_one(restate_server: RestateServer) -> None:
    with ExternalServer(restate_server.ingress_url, restate_server.admin_url) as ext:
        assert ext.healthy()
    assert restate_server.healthy(), "leaving the block does not stop a server we do not own"


def test_connect_uses_the_environment(monkeypatch: pytest.MonkeyPatch, restate_server: RestateServer) -> None:
    monkeypatch.setenv("RESTATE_INGRESS_URL", restate_server.ingress_url)
    monkeypatch.setenv("RESTATE_ADMIN_URL", restate_server.admin_url)
    found = connect()
    assert isinstance(found, ExternalServer) and found.admin_url == restate_server.admin_url


def test_connect_refuses_half_a_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTATE_INGRESS_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("RESTATE_ADMIN_URL", raising=False)
    with pytest.raises(ServerError, match="set both RESTATE_INGRESS_URL and RESTATE_ADMIN_URL"):
        connect()


_PARENT = """
import sys, time
from agent_lib.server import RestateServer
server = RestateServer(sys.argv[1], ingress_port={ingress_port}, admin_port={admin_port}, node_port={node_port},
                       die_with_parent={die}).start()
print(server.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_private_server_dies_with_the_process_that_started_it(tmp_path: Path, die_with_parent: bool) -> None:
    """A kernel that dies (SIGKILL, no atexit) takes its private server with it, unless asked not to."""
    import signal
    import subprocess
    import sys
    import time

    ports = _ports()
    code = _PARENT.format(die=die_with_parent, **ports)
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data")], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    pid_file = Path(os.environ["RESTATE_KIT_DATA"]) / "pids" / f"restate-server-{ports['admin_port']}.pid"
    assert pid_alive(server_pid) and pid_file.read_text() == str(server_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    try:
        deadline = time.monotonic() + (20 if die_with_parent else 3)
        while pid_alive(server_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        while die_with_parent and pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the watchdog removes the pid file just after the server has exited
        if die_with_parent:
            assert not pid_alive(server_pid), "the server outlived the process that started it"
            assert not pid_file.exists()
            assert port_is_free(ports["admin_port"])
        else:
            assert pid_alive(server_pid), "a server started with die_with_parent=False must keep running"
    finally:
        if pid_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
