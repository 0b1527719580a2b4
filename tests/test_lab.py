"""agent_lib/lab.py: a server plus the finished agents, started together, stopped together, the environment put back."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest

from agent_lib._process import port_is_free
from agent_lib.clients import Ingress
from agent_lib.hosting import ServingError
from agent_lib.identity import SIGNING_ENV
from agent_lib.lab import INHERITED_PATHS, LAB_VARIABLES, Lab, LabConfig


@pytest.mark.slow
def test_a_lab_serves_the_finished_agents_points_this_process_at_them_and_puts_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_LEDGER", "/the/callers/own/ledger.sqlite")
    before = {k: os.environ.get(k) for k in (*LAB_VARIABLES, *INHERITED_PATHS, "LAB_PROBE")}
    signs_before = os.environ.get(SIGNING_ENV)
    with Lab(LabConfig(data=tmp_path / "lab", env={"LAB_PROBE": "yes"})) as lab:
        assert lab.agents is not None and lab.started_server
        assert {k: os.environ[k] for k in LAB_VARIABLES} == {k: v for k, v in lab.env().items() if k in LAB_VARIABLES}
        assert os.environ["LAB_PROBE"] == "yes" and "AGENT_LEDGER" not in os.environ, "the caller's paths are not its"
        assert lab.environ({"AGENT_LEDGER": "x", "PATH": "/bin"})["PATH"] == "/bin"
        assert "AGENT_LEDGER" not in lab.environ({"AGENT_LEDGER": "x"})
        answer = Ingress(lab.ingress_url, timeout=60).call(
            "WeatherAgent", "run", "What is the weather in Paris?", key="l"
        )
        assert "Paris" in answer
        assert lab.public_key and os.environ[SIGNING_ENV] == f"{lab.admin_url} {lab.public_key}", "the lab signs"
        assert lab.agents.trusted_key == lab.public_key
        assert httpx.get(f"{lab.agents.url}/discover", timeout=10).status_code == 401, "unsigned: refused"
        assert (tmp_path / "lab" / "server").is_dir() and lab.agents.log_path.is_relative_to(tmp_path / "lab")
        ports = [lab.agents_port, int(lab.admin_url.rsplit(":", 1)[1]), int(lab.ingress_url.rsplit(":", 1)[1])]
    assert all(port_is_free(p) for p in ports), "the lab left its server or agents running"
    assert {k: os.environ.get(k) for k in before} == before, "the environment is as it was"
    assert os.environ.get(SIGNING_ENV) == signs_before


@pytest.mark.slow
def test_a_lab_told_not_to_sign_does_not(tmp_path: Path) -> None:
    with Lab(LabConfig(data=tmp_path / "lab", sign=False)) as lab:
        assert lab.public_key is None and lab.agents is not None and lab.agents.trusted_key is None
        assert httpx.get(f"{lab.agents.url}/discover", timeout=10).status_code != 401, "unsigned: accepted"


@pytest.mark.slow
def test_a_lab_that_fails_to_start_stops_what_it_started(tmp_path: Path) -> None:
    before = {k: os.environ.get(k) for k in LAB_VARIABLES}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lab = Lab(LabConfig(data=tmp_path / "lab", agents_port=port))
        with pytest.raises(ServingError, match=rf"port {port} is taken by another program: choose another"):
            lab.start()
    assert lab.server is not None and not lab.server.running, "the server it had started is stopped"
    assert {k: os.environ.get(k) for k in LAB_VARIABLES} == before


def test_a_lab_not_started_says_so() -> None:
    with pytest.raises(ServingError, match="the lab is not started: call start"):
        Lab(LabConfig(agents=())).ingress_url  # noqa: B018
