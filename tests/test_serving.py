"""Both serving modes: in this event loop, and as a separate process that can be killed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent_lib import agent_process
from agent_lib._process import listens_on
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess, ServingError, load_services, serve_in_kernel


def test_serve_in_kernel_registers_and_answers(restate_server: RestateServer) -> None:
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)

    async def main() -> tuple[str, bool]:
        deployment = await serve_in_kernel(["tests.services:echo"], admin=admin)
        assert "TestEcho" in admin.services() and deployment.deployment_id
        answer = await ingress.acall("TestEcho", "say", "from the loop")
        await deployment.stop()
        return answer, deployment.running

    answer, running = asyncio.run(main())
    assert answer == "FROM THE LOOP" and not running


def test_serve_in_kernel_says_what_to_do_when_its_port_never_listens(
    restate_server: RestateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_lib import serving

    monkeypatch.setattr(serving, "port_open", lambda port: False)
    monkeypatch.setattr(serving, "PORT_WAIT_S", 0.3)
    admin = Admin(restate_server.admin_url)

    async def main() -> None:
        await serve_in_kernel(["tests.services:echo"], admin=admin)

    with pytest.raises(ServingError, match=r"did not listen on port \d+ within 0s: restart the kernel .* another port"):
        asyncio.run(main())


def test_process_survives_kill_and_restart(restate_server: RestateServer, key: str) -> None:
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    with AgentProcess("tests.services:echo", admin=admin, name="echo-kill") as proc:
        first_pid, deployment = proc.pid, proc.deployment_id
        assert ingress.call("TestEcho", "say", "before") == "BEFORE"
        proc.kill()
        assert not proc.running
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # type: ignore[arg-type]
        sent = ingress.send("TestEcho", "say", "while down", idempotency_key=key)
        proc.start()
        assert proc.pid != first_pid and proc.deployment_id == deployment, "a restart is the same deployment"
        assert ingress.attach(sent.invocation_id) == "WHILE DOWN"


def _listener(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_listens_on_tells_whose_socket_listens_on_a_port() -> None:
    with _listener() as sock:
        port = sock.getsockname()[1]
        assert listens_on(os.getpid(), port) is True
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert listens_on(other.pid, port) is False
        finally:
            other.kill()
            other.wait()


def test_a_chosen_port_taken_while_starting_moves_to_another(
    restate_server: RestateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program (another test's server) takes the port picked free a moment before: that port is not ours."""
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    proc = AgentProcess("tests.services:echo", admin=admin, name="echo-port-taken")
    taken = proc.port
    monkeypatch.setattr(agent_process, "port_is_free", lambda port: True)  # taken after the check, as in the race
    with _listener(taken), proc:
        assert proc.port != taken and proc.url.endswith(f":{proc.port}")
        assert listens_on(proc.pid, proc.port) is True  # type: ignore[arg-type]
        assert ingress.call("TestEcho", "say", "moved") == "MOVED"


def test_a_port_given_and_taken_while_starting_is_refused(
    restate_server: RestateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _listener() as sock:
        port = sock.getsockname()[1]
        proc = AgentProcess("tests.services:echo", admin=Admin(restate_server.admin_url), port=port)
        monkeypatch.setattr(agent_process, "port_is_free", lambda port: True)
        with pytest.raises(ServingError, match=rf"port {port} was taken by another program while the agent"):
            proc.start(timeout=30)
        assert not proc.running


def test_process_that_crashes_at_start_shows_its_log(restate_server: RestateServer) -> None:
    proc = AgentProcess("no_such_module:service", admin=Admin(restate_server.admin_url))
    with pytest.raises(ServingError, match=r"exited with code \d+(.|\n)*cannot import 'no_such_module'"):
        proc.start(timeout=30)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("agent_lib.agents.weather", "is not 'module:attribute'"),
        ("agent_lib.agents.weather:nope", "has no attribute 'nope'"),
        ("agent_lib.nowhere:svc", "cannot import 'agent_lib.nowhere'"),
    ],
)
def test_bad_targets(target: str, message: str) -> None:
    with pytest.raises(ServingError, match=message):
        load_services(target)


def test_an_agent_process_stops_when_its_parent_dies(restate_server: RestateServer, tmp_path: object) -> None:
    """A notebook kernel that dies takes its agent processes with it: no orphans."""
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time\n"
        "from agent_lib.serving import AgentProcess\n"
        "from agent_lib.clients import Admin\n"
        f"p = AgentProcess('tests.services:echo', admin=Admin({restate_server.admin_url!r}), name='orphan').start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)
    zygote = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent: the zygote
    if zygote == parent.pid:  # AGENTS_SPAWN=exec: no zygote, the process is the script's own child
        zygote = child
    else:
        assert "_zygote.py" in Path(f"/proc/{zygote}/cmdline").read_text()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    gone: set[int] = set()
    while time.monotonic() < deadline and len(gone) < len({child, zygote}):
        for pid in {child, zygote} - gone:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                gone.add(pid)
        time.sleep(0.2)
    for pid in {child, zygote} - gone:
        os.kill(pid, 9)
    assert child in gone, "the agent process outlived its parent"
    assert zygote in gone, "the zygote that forked it outlived the process that started it"


def test_process_registers_again_on_a_wiped_server(tmp_path: Path, _kit_data: Path) -> None:
    """Lesson 05 stops its server and deletes its data: start() on the old AgentProcess registers it again."""
    import shutil

    ports = {"ingress_port": free_port(), "admin_port": free_port(), "node_port": free_port()}
    server = RestateServer(tmp_path / "restate", **ports)
    server.start()
    try:
        admin = Admin(server.admin_url)
        proc = AgentProcess("tests.services:echo", admin=admin, name="echo-wiped").start()
        forgotten = proc.deployment_id
        proc.stop()
        server.stop()
        shutil.rmtree(tmp_path / "restate")
        server.start()
        assert admin.deployments() == [], "a wiped server knows no deployment"
        with proc:
            assert proc.deployment_id != forgotten
            assert [d["id"] for d in admin.deployments()] == [proc.deployment_id]
            assert Ingress(server.ingress_url, timeout=20).call("TestEcho", "say", "again") == "AGAIN"
    finally:
        server.stop()
