"""Lesson 07's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib import check, observe
from agent_lib.agents.versioned import SERVICE_NAME
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed

pytestmark = pytest.mark.slow
TARGET = "agent_lib.agents.versioned:"


@pytest.fixture(scope="module")
def v2(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    proc = AgentProcess(TARGET + "service_v2", admin=Admin(restate_server.admin_url), name="l07-v2")
    with proc:
        yield proc


class Desk:
    """Refunds on the session server: v2 made the latest deployment, the exercises begun, a v3 on demand."""

    def __init__(self, ingress: Ingress, admin: Admin, v2: AgentProcess) -> None:
        self.ingress, self.admin, self.v2 = ingress, admin, v2
        self.sent: list[str] = []
        self.processes: list[AgentProcess] = []
        admin.register(v2.url)
        begin(7, admin)

    def send(self, message: str) -> str:
        key = f"order-{uuid.uuid4().hex[:6]}"
        invocation_id = self.ingress.send(SERVICE_NAME, "run", message, key=key).invocation_id
        self.sent.append(invocation_id)
        return invocation_id

    def key(self, invocation_id: str) -> str:
        return str((self.admin.invocation(invocation_id) or {})["target_service_key"])

    def waiting(self, invocation_id: str) -> str:
        """Wait until the refund waits for its approval; return the awakeable id."""
        return str(observe.wait_for_state(self.admin, SERVICE_NAME, self.key(invocation_id), "approval"))

    def approve(self, invocation_id: str) -> None:
        self.ingress.resolve_awakeable(self.waiting(invocation_id), True)

    def stuck(self, message: str = "Refund 40 GBP for order 3") -> str:
        """A GBP refund on v2, approved, failing in 'Issue refund'."""
        invocation_id = self.send(message)
        self.approve(invocation_id)
        observe.wait_for_retries(self.admin, invocation_id, 2)
        return invocation_id

    def deploy_v3(self) -> AgentProcess:
        proc = AgentProcess(TARGET + "service_v3", admin=self.admin, name="l07-v3").start()
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for invocation_id in self.sent:
            with contextlib.suppress(RestateError):
                if self.admin.status(invocation_id) not in (None, "completed"):
                    self.admin.kill(invocation_id)
        for proc in self.processes:
            proc.stop()


@pytest.fixture
def desk(v2: AgentProcess, ingress: Ingress, admin: Admin) -> Iterator[Desk]:
    lab = Desk(ingress, admin, v2)
    yield lab
    lab.close()


def test_third_deployment_passes_when_the_old_refund_spans_the_deployment(desk: Desk, ingress: Ingress) -> None:
    old = desk.send("Refund 40 EUR for order 1")
    desk.waiting(old)
    v3 = desk.deploy_v3()
    new = desk.send("Refund 40 USD for order 2")
    desk.approve(old), desk.approve(new)
    ingress.attach(old), ingress.attach(new)
    result = check.lesson_07.exercise_1.sync(ingress, desk.admin, old, new, v3.deployment_id)
    assert result.ok, result
    assert "v3" in result.message and "v2" in result.message
    failed(check.lesson_07.exercise_1.sync(ingress, desk.admin, new, old, v3.deployment_id), "the new refund ran on")


def test_third_deployment_fails_when_the_old_refund_finished_before_it(desk: Desk, ingress: Ingress) -> None:
    old = desk.send("Refund 40 EUR for order 1")
    desk.approve(old)
    ingress.attach(old)
    v3 = desk.deploy_v3()
    new = desk.send("Refund 40 USD for order 2")
    desk.approve(new)
    ingress.attach(new)
    failed(check.lesson_07.exercise_1.sync(ingress, desk.admin, old, new, v3.deployment_id), "had finished before")


def test_third_deployment_fails_when_the_new_version_is_not_v3(desk: Desk, ingress: Ingress, v2: AgentProcess) -> None:
    old = desk.send("Refund 40 EUR for order 1")
    desk.waiting(old)
    again = str(desk.admin.register(v2.url)["id"])
    new = desk.send("Refund 40 USD for order 2")
    desk.approve(old), desk.approve(new)
    ingress.attach(old), ingress.attach(new)
    failed(check.lesson_07.exercise_1.sync(ingress, desk.admin, old, new, again), "not v3's code")


def test_third_deployment_refuses_refunds_from_before_the_exercises(desk: Desk, ingress: Ingress) -> None:
    old = desk.send("Refund 40 EUR for order 1")
    desk.waiting(old)
    v3 = desk.deploy_v3()
    new = desk.send("Refund 40 USD for order 2")
    desk.approve(old), desk.approve(new)
    ingress.attach(old), ingress.attach(new)
    begin(7, desk.admin)
    result = check.lesson_07.exercise_1.sync(ingress, desk.admin, old, new, v3.deployment_id)
    failed(result, "before you began the exercises")


def test_kill_passes_on_a_stuck_gbp_refund_killed(desk: Desk) -> None:
    refund = desk.stuck()
    desk.admin.kill(refund)
    observe.wait_for_status(desk.admin, refund, "completed")
    result = check.lesson_07.exercise_2.sync(desk.admin, refund)
    assert result.ok, result


def test_kill_fails_on_a_refund_killed_before_it_was_stuck(desk: Desk) -> None:
    refund = desk.send("Refund 40 GBP for order 3")
    desk.waiting(refund)
    desk.admin.kill(refund)
    observe.wait_for_status(desk.admin, refund, "completed")
    failed(check.lesson_07.exercise_2.sync(desk.admin, refund), "killed it before it was stuck")


def test_kill_fails_on_a_cancel(desk: Desk) -> None:
    refund = desk.stuck()
    desk.admin.cancel(refund)
    observe.wait_for_status(desk.admin, refund, "completed")
    failed(check.lesson_07.exercise_2.sync(desk.admin, refund), "not by a kill")


def test_kill_fails_while_it_still_retries(desk: Desk) -> None:
    refund = desk.stuck()
    failed(check.lesson_07.exercise_2.sync(desk.admin, refund), "not ended")


def test_resume_on_the_fix_passes_then_refuses_a_refund_sent_to_v3(desk: Desk, ingress: Ingress) -> None:
    refund = desk.stuck()
    desk.admin.pause(refund)
    observe.wait_for_status(desk.admin, refund, "paused")
    v3 = desk.deploy_v3()
    failed(check.lesson_07.exercise_3.sync(ingress, desk.admin, refund, v3.deployment_id), "still paused")
    desk.admin.resume(refund, deployment_id=v3.deployment_id)
    ingress.attach(refund)
    result = check.lesson_07.exercise_3.sync(ingress, desk.admin, refund, v3.deployment_id)
    assert result.ok, result
    fresh = desk.send("Refund 40 GBP for order 5")
    desk.approve(fresh)
    ingress.attach(fresh)
    failed(check.lesson_07.exercise_3.sync(ingress, desk.admin, fresh, v3.deployment_id), "it was not moved")


def test_resume_on_the_fix_fails_when_resumed_on_v2(desk: Desk, ingress: Ingress) -> None:
    refund = desk.stuck()
    desk.admin.pause(refund)
    observe.wait_for_status(desk.admin, refund, "paused")
    v3 = desk.deploy_v3()
    desk.admin.resume(refund)
    observe.wait_for_retries(desk.admin, refund, 1)
    failed(check.lesson_07.exercise_3.sync(ingress, desk.admin, refund, v3.deployment_id), "still failing")


def test_resume_checked_at_once_waits_for_the_resume_to_land(desk: Desk, ingress: Ingress) -> None:
    refund = desk.stuck()
    desk.admin.pause(refund)
    observe.wait_for_status(desk.admin, refund, "paused")
    v3 = desk.deploy_v3()
    desk.admin.resume(refund, deployment_id=v3.deployment_id)
    result = check.lesson_07.exercise_3.sync(ingress, desk.admin, refund, v3.deployment_id)
    assert result.ok, result


def test_third_deployment_with_the_old_refund_unapproved_says_so_without_a_blocking_hint(
    desk: Desk, ingress: Ingress
) -> None:
    old = desk.send("Refund 40 EUR for order 1")
    desk.waiting(old)
    v3 = desk.deploy_v3()
    new = desk.send("Refund 40 USD for order 2")
    desk.approve(new)
    ingress.attach(new)
    result = check.lesson_07.exercise_1.sync(ingress, desk.admin, old, new, v3.deployment_id)
    failed(result, "still waits for its approval")
    assert "await observe.await_state" in result.hint and "attach" not in result.hint


def test_a_refund_sent_to_a_stopped_latest_deployment_is_named_with_the_fix(desk: Desk, v2: AgentProcess) -> None:
    """Issue 19: skipping admin.register(v2.url) stranded a refund on the stopped v3, with KeyError: 'pinned_...'."""
    v3 = desk.deploy_v3()
    v3.stop()
    stranded = desk.send("Refund 40 GBP for order 6")
    with pytest.raises(RuntimeError, match="has not started on any deployment yet"):
        observe.wait_for_state(desk.admin, SERVICE_NAME, desk.key(stranded), "approval", timeout=30)
    assert "pinned_deployment_id" not in (desk.admin.invocation(stranded) or {})
    result = check.lesson_07.exercise_2.sync(desk.admin, stranded)
    failed(result, "never started on a deployment", "nothing listens there")
    assert "admin.register(v2.url)" in result.hint
    desk.admin.register(v2.url)


def test_a_blocking_wait_in_a_loop_that_serves_an_agent_fails_fast(admin: Admin) -> None:
    """Issue 19: observe.wait_for_state from the kernel that serves v3 blocked v3 itself for 60 s."""
    from agent_lib.serving import serve_in_kernel

    async def scenario() -> tuple[float, str]:
        from agent_lib.agents.versioned import make_service

        v3 = await serve_in_kernel([make_service("v3")], admin=admin)
        started = time.monotonic()
        try:
            observe.wait_for_state(admin, SERVICE_NAME, f"nobody-{uuid.uuid4().hex[:6]}", "approval", timeout=30)
        except observe.BlockingWaitError as err:
            return time.monotonic() - started, str(err)
        finally:
            await v3.stop()
            with contextlib.suppress(RestateError):
                admin.remove_deployment(str(v3.deployment_id), force=True)
        return time.monotonic() - started, "no error"

    waited, message = asyncio.run(scenario())
    assert "await observe.await_state" in message and "serve_in_kernel" in message, message
    assert waited < 30 / 2, f"it blocked {waited:.1f}s of its 30 s before it said so"
    with pytest.raises(TimeoutError):
        observe.wait_for_state(admin, SERVICE_NAME, f"nobody-{uuid.uuid4().hex[:6]}", "approval", timeout=0.5)
