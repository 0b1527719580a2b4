"""The invocation monitor widget: its data, its table, and a live refresh that leaves the event loop free."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from agent_lib.agents.flaky import SERVICE_NAME, set_booking_api
from agent_lib.clients import Admin, Ingress
from agent_lib.observe import MONITOR_COLUMNS, wait_for_retries, wait_for_status
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from agent_lib.widgets.monitor import InvocationMonitor, monitor_html


@pytest.fixture(scope="module")
def flaky(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    with AgentProcess("agent_lib.agents.flaky:flaky_service", admin=Admin(restate_server.admin_url)) as proc:
        yield proc


@pytest.fixture
def stuck(admin: Admin, ingress: Ingress, flaky: AgentProcess, key: str) -> Iterator[str]:
    """An invocation stuck retrying a failing tool; killed afterwards."""
    set_booking_api(key, up=False)
    invocation = ingress.send(SERVICE_NAME, "run", "Book a flight to Oslo", key=key).invocation_id
    wait_for_retries(admin, invocation, 2)
    yield invocation
    admin.kill(invocation)
    wait_for_status(admin, invocation, "completed")


def test_refresh_shows_status_retries_and_last_failure(admin: Admin, stuck: str) -> None:
    monitor = InvocationMonitor(admin, SERVICE_NAME)
    frame = monitor.refresh()
    assert list(frame.columns) == MONITOR_COLUMNS and monitor.refreshes == 1
    row = frame.set_index("id").loc[stuck]
    assert row["retry_count"] >= 2 and row["failing_step"] == "Call booking API"
    table = monitor.children[1].value
    assert stuck in table and "booking API is down" in table and f"/ui/invocations/{stuck}" in table
    assert "not live" in monitor.children[0].value


def test_live_refresh_runs_beside_other_work(admin: Admin, stuck: str) -> None:
    async def main() -> tuple[int, int, bool]:
        monitor = InvocationMonitor(admin, SERVICE_NAME, interval=0.1).start()
        ticks = 0
        for _ in range(600):
            if monitor.refreshes >= 3 and ticks >= 3:
                break
            ticks += 1
            await asyncio.sleep(0.05)
        was_running = monitor.running
        monitor.stop()
        return monitor.refreshes, ticks, was_running

    refreshes, ticks, was_running = asyncio.run(main())
    assert was_running and refreshes >= 3 and ticks >= 3


def test_start_needs_an_event_loop_and_a_positive_interval(admin: Admin) -> None:
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        InvocationMonitor(admin, SERVICE_NAME).start()
    with pytest.raises(ValueError, match="interval must be a positive"):
        InvocationMonitor(admin, SERVICE_NAME, interval=0)


def test_an_unreachable_server_shows_an_error_and_keeps_trying() -> None:
    async def main() -> InvocationMonitor:
        monitor = InvocationMonitor(Admin("http://127.0.0.1:9", timeout=1.0), "Nothing", interval=0.05).start()
        for _ in range(400):
            if monitor.error:
                break
            await asyncio.sleep(0.05)
        assert monitor.running
        monitor.stop()
        return monitor

    monitor = asyncio.run(main())
    assert monitor.error is not None and "cannot reach the Restate admin API" in monitor.error
    assert "cannot reach" in monitor.children[0].value and not monitor.running


def test_an_empty_frame_says_so(admin: Admin) -> None:
    assert monitor_html(pd.DataFrame(columns=MONITOR_COLUMNS), admin) == "<i>no invocations yet</i>"


def test_updated_waits_for_two_fresh_refreshes_instead_of_a_fixed_sleep(admin: Admin, stuck: str) -> None:
    async def main() -> tuple[int, int, pd.DataFrame]:
        monitor = InvocationMonitor(admin, SERVICE_NAME, interval=0.2).start()
        before = monitor.refreshes
        shown = await monitor.updated()
        after = monitor.refreshes
        monitor.stop()
        return before, after, shown

    before, after, shown = asyncio.run(main())
    assert after >= before + 2
    assert shown.set_index("id").loc[stuck]["failing_step"] == "Call booking API"


def test_updated_says_why_it_gives_up() -> None:
    async def not_live() -> None:
        await InvocationMonitor(Admin("http://127.0.0.1:9", timeout=1.0), "Nothing").updated()

    with pytest.raises(RuntimeError, match="not live: call start"):
        asyncio.run(not_live())

    async def unreachable() -> None:
        monitor = InvocationMonitor(Admin("http://127.0.0.1:9", timeout=0.2), "Nothing", interval=0.05).start()
        try:
            await monitor.updated(timeout=1.0)
        finally:
            monitor.stop()

    with pytest.raises(TimeoutError, match="refreshed 0 of 2 times in 1 s: .*cannot reach the Restate admin API"):
        asyncio.run(unreachable())
