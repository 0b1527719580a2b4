"""One agent app served by several worker processes behind one deployment (serving.AgentProcess(workers=N))."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

import pytest

from agent_lib.__main__ import main as cli
from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess, ServingError
from tests.agents.probe_points import hook_name
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

WEATHER = "agent_lib.agents.weather:weather_service"
PROBED_WEATHER = "tests.agents.probes:weather_service"
SESSIONS = 50


def test_killing_a_worker_under_load_loses_no_invocation(
    restate_server: RestateServer, ledger: Ledger, tmp_path: Path
) -> None:
    """50 turns wait inside their "Get weather" step on two workers; one worker is killed; all 50 finish once."""
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    service = f"Workers{uuid.uuid4().hex[:8]}"
    cities = {f"w-{uuid.uuid4().hex[:6]}-{i}": f"City{i}" for i in range(SESSIONS)}
    gates = {key: Gate(hook_name(key, "Get weather", "start"), tmp_path).arm() for key in cities}
    env = {"WEATHER_SERVICE_NAME": service, "AGENT_GATE_DIR": str(tmp_path)}
    with AgentProcess(PROBED_WEATHER, admin=admin, env=env, workers=2, name="workers-test") as agent:
        workers = agent.wait_for_workers()
        assert len(workers) == 2 and agent.pid not in workers
        sent = {
            key: ingress.send(service, "run", f"What is the weather in {city}?", key=key).invocation_id
            for key, city in cities.items()
        }
        held = {key: gate.wait_reached(timeout=60, alive=lambda: agent.running)["pid"] for key, gate in gates.items()}
        spread = Counter(held.values())
        assert set(spread) == set(workers), f"the 50 turns in flight are spread over both workers: {spread}"
        victim = max(workers, key=list(held.values()).count)
        agent.kill_worker(victim)
        for gate in gates.values():
            gate.open()
        answers = {key: ingress.attach(invocation_id) for key, invocation_id in sent.items()}
        replacement = set(agent.wait_for_workers()) - set(workers)
        counted = agent.invocations_by_worker()

    assert len(replacement) == 1, "the supervisor starts a new worker for the killed one"
    assert answers == {key: f"The weather in {city} is sunny, 72°F" for key, city in cities.items()}
    ids = list(sent.values())
    journal = admin.query(
        "SELECT id, count(*) AS outputs FROM sys_journal WHERE entry_type = 'Command: Output' "
        f"AND id IN ({', '.join(repr(i) for i in ids)}) GROUP BY id"
    )
    assert {row["id"]: row["outputs"] for row in journal} == dict.fromkeys(ids, 1), "each turn completes exactly once"
    steps = [
        e for e in ledger.effects("proof_step") if e.invocation_id in set(ids) and e.detail["step"] == "Get weather"
    ]
    assert sorted(e.invocation_id for e in steps) == sorted(ids), "each weather lookup ran once (killed before it ran)"
    moved = {key for key, pid in held.items() if pid == victim}
    finished_by = {e.invocation_id: e.pid for e in steps}
    assert moved and all(finished_by[sent[key]] != victim for key in moved), "the killed worker's turns moved"
    assert all(counted.get(pid, 0) > 0 for pid in workers), f"each worker counts its invocations: {counted}"
    assert sum(counted.values()) >= SESSIONS + len(moved), f"the moved turns were sent again: {counted}"


@pytest.mark.parametrize("spawn", ["zygote", "exec"])
def test_a_killed_supervisor_takes_its_workers_along(
    restate_server: RestateServer, spawn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked (by default) or exec'd (AGENTS_SPAWN=exec), the workers go with their supervisor."""
    monkeypatch.setenv("AGENTS_SPAWN", spawn)
    agent = AgentProcess("tests.services:echo", admin=Admin(restate_server.admin_url), name="echo-2", workers=2)
    with agent:
        workers = agent.wait_for_workers()
        commands = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in [agent.pid, *workers]}
        # Forked, a worker's command line is its supervisor's (the zygote's); exec'd, each names its channel.
        assert len(commands) == (1 if spawn == "zygote" else 3), commands
        assert Ingress(restate_server.ingress_url).call("TestEcho", "say", "two") == "TWO"
        agent.kill()

    def ended() -> bool:
        return not any(_exists(pid) for pid in workers)

    wait_for("the workers to end with their supervisor, as one process would", ended, 10, every=0.05)


def test_a_worker_that_cannot_start_shows_its_log(restate_server: RestateServer) -> None:
    agent = AgentProcess("no_such_module:service", admin=Admin(restate_server.admin_url), workers=2)
    with pytest.raises(ServingError, match=r"exited with code 1(.|\n)*cannot import 'no_such_module'"):
        agent.start(timeout=60)


def test_worker_counts_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ServingError, match="at least 1 worker"):
        AgentProcess(WEATHER, workers=0)
    with pytest.raises(ServingError, match="use kill"):
        AgentProcess(WEATHER).kill_worker()
    with pytest.raises(SystemExit):
        cli(["up", "--workers", "none"])
    assert "'none' is not a number of workers: give 1 or more" in capsys.readouterr().err


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    return not os.path.exists(stat) or open(stat).read().rsplit(")", 1)[1].split()[0] != "Z"
