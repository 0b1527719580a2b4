"""The parallel suite: every xdist worker gets a server and finished agents of its own (tests/worker_lab.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_lib.server import port_is_free
from tests.worker_lab import FIRST

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, os, pathlib, time
import httpx
import pytest

@pytest.mark.parametrize("n", range(4))
def test_where_am_i(n):
    admin = os.environ["RESTATE_ADMIN_URL"]
    services = {s["name"] for s in httpx.get(admin + "/services").json()["services"]}
    answer = httpx.post(os.environ["RESTATE_INGRESS_URL"] + f"/WeatherAgent/probe-{n}/run",
                        json="What is the weather in Paris?", timeout=60)
    record = {
        "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        "admin": admin,
        "ingress": os.environ["RESTATE_INGRESS_URL"],
        "agents_port": os.environ["AGENTS_PORT"],
        "kit_data": os.environ["RESTATE_KIT_DATA"],
        "ledger": os.environ.get("AGENT_LEDGER"),
        "weather": "WeatherAgent" in services,
        "answer": answer.status_code,
    }
    out = pathlib.Path(os.environ["PROBE_OUT"]) / f"{n}.json"
    out.write_text(json.dumps(record))
    time.sleep(1)  # hold this worker a moment, so the other takes some of the four
"""


def _run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    out = tmp_path / "out"
    out.mkdir()
    run_env = {**os.environ, **(env or {}), "PROBE_OUT": str(out), "AGENT_LEDGER": str(tmp_path / "callers.sqlite")}
    cmd = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "-q", "-p", "no:cacheprovider"]
    done = subprocess.run([*cmd, *args, str(probe)], cwd=REPO, env=run_env, capture_output=True, text=True, timeout=300)
    return done, [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


@pytest.mark.slow
@pytest.mark.full  # starts a parallel pytest with labs of its own: make test-all
def test_each_worker_has_its_own_server_agents_and_data_and_stops_them(tmp_path: Path) -> None:
    base = tmp_path / "kit"
    done, records = _run(tmp_path, "-n", "2", env={"RESTATE_KIT_DATA": str(base)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(records) == 4
    assert all(r["weather"] and r["answer"] == 200 for r in records), records
    by_worker = {r["worker"]: r for r in records}
    assert set(by_worker) == {"gw0", "gw1"}, "both workers should have taken some of the tests"
    labs = {w: (r["admin"], r["ingress"], r["agents_port"], r["kit_data"]) for w, r in by_worker.items()}
    for field in range(4):
        assert labs["gw0"][field] != labs["gw1"][field], f"the workers share {labs['gw0'][field]}"
    for worker, record in by_worker.items():
        assert record["kit_data"] == str(base / worker)
        assert record["ledger"] is None, "a worker's ledger follows its RESTATE_KIT_DATA, not the caller's"
        assert (base / worker / "server").is_dir() and (base / worker / "logs").is_dir()
    ports = [int(str(r[k]).rsplit(":", 1)[1]) for r in by_worker.values() for k in ("admin", "ingress")]
    ports += [int(str(r["agents_port"])) for r in by_worker.values()]
    assert all(port_is_free(p) for p in ports), "a worker left its server or agents running"


@pytest.mark.full  # starts a parallel pytest with labs of its own: make test-all
def test_a_plain_run_uses_the_callers_lab_and_starts_none(tmp_path: Path) -> None:
    # PYTEST_XDIST_WORKER as a pytest started by a test inside a worker inherits it: that alone makes no worker.
    caller = {"RESTATE_ADMIN_URL": "http://127.0.0.1:1", "RESTATE_INGRESS_URL": "http://127.0.0.1:1"}
    caller["PYTEST_XDIST_WORKER"] = "gw7"
    done, records = _run(tmp_path, "-n", "0", "-k", "0", env=caller)
    assert done.returncode == 1, "the probe should fail against the caller's (absent) server"
    assert "ConnectError" in done.stdout or "ConnectError" in done.stderr, done.stdout[-2000:]
    assert records == []


def test_the_longest_items_are_ranked_first() -> None:
    notebooks = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").rglob("*.ipynb"))
    for prefix in FIRST:
        assert any(n.startswith(prefix) for n in notebooks), f"{prefix} names no notebook: update FIRST"
