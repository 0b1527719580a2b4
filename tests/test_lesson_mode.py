"""scripts/lesson_mode.py: a mode runs pytest on its own server and agents, with its env, and stops them always."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_lib.server import free_port, port_is_free

pytestmark = pytest.mark.full  # meta-tests of the modes: make test-all; make test runs the Gemini mode itself

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "lesson_mode.py"

PROBE = """
import json, os, pathlib, time
import httpx
import pytest

@pytest.mark.parametrize("n", range(2))
def test_the_mode_points_everything_at_its_own_server(n, request):
    assert os.environ["MODE_PROBE"] == "yes"
    mode_data = os.path.join(".restate-modes", os.environ["MODE_NAME"])
    # an xdist worker of this run (PYTEST_XDIST_WORKER alone may be inherited from a parallel suite around it)
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    assert os.environ["RESTATE_KIT_DATA"].endswith(os.path.join(mode_data, worker) if worker else mode_data)
    assert "AGENT_LEDGER" not in os.environ
    admin = os.environ["RESTATE_ADMIN_URL"]
    assert not admin.endswith(":9070")
    services = {s["name"] for s in httpx.get(admin + "/services").json()["services"]}
    assert "WeatherAgent" in services, services
    answer = httpx.post(os.environ["RESTATE_INGRESS_URL"] + "/WeatherAgent/probe/run",
                        json="What is the weather in Paris?", timeout=60)
    assert answer.status_code == 200, answer.text
    pathlib.Path(os.environ["MODE_MARK"]).write_text("started")
    record = {"worker": worker, "admin": admin, "agents_port": os.environ["AGENTS_PORT"]}
    pathlib.Path(os.environ["MODE_MARK"] + f"-{n}.json").write_text(json.dumps(record))
    time.sleep(float(os.environ.get("MODE_SLEEP", "0")))
    assert os.environ.get("MODE_FAIL") != "1", "failing on purpose"
"""


@dataclass
class Mode:
    name: str
    args: list[str]
    ports: dict[str, int]
    probe: str

    def command(self, *env: str, pytest_args: tuple[str, ...] = ("-q", "-p", "no:cacheprovider")) -> list[str]:
        extra = [a for pair in env for a in ("--env", pair)]
        return [*self.args, *extra, "--", *pytest_args, self.probe]


@pytest.fixture
def mode(tmp_path: Path) -> Iterator[Mode]:
    """A mode with a fresh name, free ports, and a probe test file; its data dir goes afterwards."""
    name = f"selftest-{uuid.uuid4().hex[:8]}"
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    ports = {p: free_port() for p in ("ingress", "admin", "node", "agents")}
    args = [sys.executable, str(SCRIPT), "--name", name]
    args += [f"--{p}-port={n}" for p, n in ports.items()]
    args += ["--env", "MODE_PROBE=yes", "--env", f"MODE_NAME={name}", "--env", f"MODE_MARK={tmp_path / 'mark'}"]
    yield Mode(name, args, ports, str(probe))
    shutil.rmtree(REPO / ".restate-modes" / name, ignore_errors=True)


def _all_free(ports: dict[str, int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not all(port_is_free(p) for p in ports.values()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_mode_runs_pytest_on_its_own_server_and_stops_it(mode: Mode) -> None:
    out = subprocess.run(mode.command(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 passed" in out.stdout
    assert f"[mode {mode.name}] pytest exited 0" in out.stdout
    assert _all_free(mode.ports), "the mode left its server or agents running"


def test_a_parallel_mode_gives_each_worker_a_server_of_its_own_with_the_modes_env(mode: Mode, tmp_path: Path) -> None:
    args = ("-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"), "-n", "2")
    out = subprocess.run(mode.command("MODE_SLEEP=1", pytest_args=args), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 passed" in out.stdout
    assert "each worker runs a server and the finished agents of its own" in out.stdout
    assert port_is_free(mode.ports["admin"]), "the mode started its own server too, which no worker uses"
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("mark-*.json"))]
    assert {r["worker"] for r in records} == {"gw0", "gw1"}, records
    assert records[0]["admin"] != records[1]["admin"], "the two workers shared a server"
    worker_ports = {int(r["admin"].rsplit(":", 1)[1]) for r in records} | {int(r["agents_port"]) for r in records}
    assert _all_free(dict(enumerate(worker_ports))), "a worker left its server or agents running"


def test_a_failing_run_fails_the_mode_and_still_stops_everything(mode: Mode) -> None:
    out = subprocess.run(mode.command("MODE_FAIL=1"), capture_output=True, text=True)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "failing on purpose" in out.stdout
    assert _all_free(mode.ports), "the mode left its server or agents running after a failure"


def test_sigterm_stops_what_the_mode_started(mode: Mode, tmp_path: Path) -> None:
    proc = subprocess.Popen(mode.command("MODE_SLEEP=120"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "mark").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the probe never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output[-3000:]
    assert "interrupted" in output and "stopping what it started" in output
    assert _all_free(mode.ports), "the mode left its server or agents running after SIGTERM"


def test_bad_arguments_are_refused_with_an_example() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--name", "x", "--env", "NOEQUALS"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "is not KEY=VALUE, e.g. RESTATE_ALWAYS_REPLAY=1" in out.stderr
    out = subprocess.run([sys.executable, str(SCRIPT), "--name", "../lab"], capture_output=True, text=True)
    assert out.returncode == 2 and "lower-case letters" in out.stderr


GEMINI_PROBE = """
import os
import httpx

def test_the_agents_and_this_process_take_the_gemini_path():
    assert os.environ["GOOGLE_GEMINI_BASE_URL"].startswith("http://127.0.0.1:")
    assert os.environ["GOOGLE_API_KEY"] != "a-learners-own-key", "never a learner's key to the stub"
    assert "GEMINI_API_KEY" not in os.environ
    answer = httpx.post(os.environ["RESTATE_INGRESS_URL"] + "/WeatherAgent/probe/run",
                        json="What is the weather in Paris?", timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json().startswith("Here is what I found."), "the stub's words, not the offline script's"
    seen = httpx.get(os.environ["GOOGLE_GEMINI_BASE_URL"] + "/stub/requests").json()["requests"]
    assert [r["agent"] for r in seen] == ["weather_agent", "weather_agent"]
"""


def test_the_gemini_mode_runs_a_stub_and_points_everything_at_it(mode: Mode, tmp_path: Path) -> None:
    probe = tmp_path / "test_gemini_probe.py"
    probe.write_text(GEMINI_PROBE)
    command = [*mode.args, "--gemini-stub", "--", "-q", "-p", "no:cacheprovider", str(probe)]
    learner = {**os.environ, "GEMINI_API_KEY": "a-learners-own-key", "GOOGLE_API_KEY": "a-learners-own-key"}
    out = subprocess.run(command, capture_output=True, text=True, env=learner)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Gemini stub at http://127.0.0.1:" in out.stdout and "1 passed" in out.stdout
    assert _all_free(mode.ports)
