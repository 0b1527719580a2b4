"""Shared fixtures: one private Restate server per test session, fresh keys per test.

The session server runs on free ports with its data in a temp dir, so tests never touch
the lab's server on 8080/9070. Tests that restart or kill a server start their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.clients import Admin, Ingress
from agent_lib.ledger import Ledger
from agent_lib.server import RestateServer, free_port
from agent_lib.serving import AgentProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "agent: a finished agent's own tests (make test-replay runs them too)")
    config.addinivalue_line(
        "markers", "full: runs in `make test-all` only (CI's weekly schedule, before a release), not in `make test`"
    )


@pytest.fixture(scope="session")
def restate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateServer]:
    """A private native Restate server for the whole test session."""
    base = tmp_path_factory.mktemp("restate")
    with RestateServer(base, ingress_port=free_port(), admin_port=free_port(), node_port=free_port()) as srv:
        yield srv


@pytest.fixture(scope="session", autouse=True)
def _kit_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the tests' pid files, logs and ledger out of the repo's .restate/."""
    path = tmp_path_factory.mktemp("kit-data")
    old = {k: os.environ.get(k) for k in ("RESTATE_KIT_DATA", "AGENT_LEDGER")}
    os.environ["RESTATE_KIT_DATA"] = str(path)
    os.environ["AGENT_LEDGER"] = str(path / "ledger.sqlite")
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def admin(restate_server: RestateServer) -> Admin:
    return Admin(restate_server.admin_url)


@pytest.fixture
def ingress(restate_server: RestateServer) -> Ingress:
    return Ingress(restate_server.ingress_url)


@pytest.fixture
def key() -> str:
    """A fresh virtual-object key, so tests never share a session."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(os.environ["AGENT_LEDGER"])


@pytest.fixture(scope="session")
def _weather_process(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess("agent_lib.agents.weather:weather_service", admin=Admin(restate_server.admin_url))
    with proc:
        yield proc


@pytest.fixture
def weather(_weather_process: AgentProcess, admin: Admin) -> AgentProcess:
    """The finished weather agent, in its own process on the session server, registered as the latest deployment.

    Other tests may register their own WeatherAgent on the same server; registering again makes this one current.
    """
    admin.register(_weather_process.url)
    return _weather_process


@pytest.fixture(scope="session")
def _test_services_process(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(
        ["tests.services:waiter", "tests.services:failing", "tests.services:echo"],
        admin=Admin(restate_server.admin_url),
        name="test-services",
    )
    with proc:
        yield proc


@pytest.fixture
def test_services(_test_services_process: AgentProcess, admin: Admin) -> AgentProcess:
    """The small services of tests/services.py, in their own process, registered as the latest deployment.

    Other tests (tests/test_serving.py) register TestEcho elsewhere and stop it: a call would then go to a
    deployment that is gone, and wait. Registering again makes this one current.
    """
    admin.register(_test_services_process.url)
    return _test_services_process


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless system Chromium for the browser tests; skipped without it, except under CI, where it fails.

    Module-scoped on purpose: Playwright's sync API keeps an asyncio loop marked as running in this
    thread while it is open, so every later `asyncio.run()` would fail. It must close with its module.
    """
    from tests.jupyter_browser import SKIP_REASON, chromium, chromium_path

    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but chromium is missing: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    with chromium() as b:
        yield b


@pytest.fixture(autouse=True)
def _no_running_loop_leaked(request: pytest.FixtureRequest) -> None:
    """Fail early, with the cause, if an earlier fixture left an asyncio loop marked as running in this thread.

    A leaked loop (e.g. Playwright's sync API kept open past its module) makes every later `asyncio.run()`
    fail far from its cause. Browser tests are exempt: their open Playwright is the loop.
    """
    import asyncio

    if "browser" in request.fixturenames:
        return
    if asyncio._get_running_loop() is not None:
        pytest.fail("an earlier fixture left an asyncio loop running in the main thread (a Playwright left open?)")
