"""Lesson 11's checks against right and wrong answers: each wrong one fails, and says what is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import restate

from agent_lib import check
from agent_lib.agents.orchestration import order_desk_service, research_gate
from agent_lib.check import _core
from agent_lib.check._core import Began
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed, wait_for

pytestmark = pytest.mark.slow

QUICK = timedelta(milliseconds=100)
patient = order_desk_service(
    "L11PatientDesk", run_options=restate.RunOptions(max_attempts=5, initial_retry_interval=QUICK)
)
hasty = order_desk_service("L11HastyDesk")
lax = order_desk_service("L11LaxDesk", run_options=restate.RunOptions(max_attempts=7, initial_retry_interval=QUICK))
unbounded = order_desk_service("L11UnboundedDesk", run_options=None)

ORCHESTRATOR = [
    "agent_lib.agents.orchestration:orchestrator_service",
    "agent_lib.agents.orchestration:researcher_service",
]
DESKS = [f"tests.test_check_lesson11:{name}" for name in ("patient", "hasty", "lax", "unbounded")]


# --- exercise 1 ------------------------------------------------------------------------------------


@dataclass
class Reports:
    agents: AgentProcess
    began: Began
    killed: tuple[str, str]
    all_held: tuple[str, str]
    not_killed: tuple[str, str]


def _killed_report(ingress: Ingress, admin: Admin, agents: AgentProcess, held: tuple[int, ...]) -> tuple[str, str]:
    """Send a report, hold `held` researchers at their gates, kill once the others completed, restart, wait."""
    report_id = f"r-{uuid.uuid4().hex[:8]}"
    gates = [research_gate(report_id, i).arm() for i in held]
    sent = ingress.send("ReportOrchestrator", "write", {"report_id": report_id, "topic": "wind farms"})
    for gate in gates:
        gate.wait_reached(timeout=120, alive=lambda: agents.running)
    sql = f"SELECT id FROM sys_invocation WHERE invoked_by_id = '{sent.invocation_id}' AND status = 'completed'"
    wait_for("the researchers that are not held", lambda: len(admin.query(sql)) >= 4 - len(held), 60, every=0.05)
    agents.kill()
    agents.start(timeout=120)
    ingress.attach(sent.invocation_id)
    return report_id, sent.invocation_id


@pytest.fixture(scope="module")
def reports(restate_server: RestateServer, _kit_data: Path) -> Iterator[Reports]:
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    began = begin(11, admin)
    with AgentProcess(ORCHESTRATOR, admin=admin, name="l11-check-orchestrator") as agents:
        agents.start(timeout=120)
        killed = _killed_report(ingress, admin, agents, held=(3,))
        all_held = _killed_report(ingress, admin, agents, held=(0, 1, 2, 3))
        report_id = f"r-{uuid.uuid4().hex[:8]}"
        sent = ingress.send("ReportOrchestrator", "write", {"report_id": report_id, "topic": "wind farms"})
        ingress.attach(sent.invocation_id)
        yield Reports(agents, began, killed, all_held, (report_id, sent.invocation_id))


@pytest.fixture
def since(reports: Reports, monkeypatch: pytest.MonkeyPatch) -> Reports:
    monkeypatch.setitem(_core._began, 11, reports.began)
    return reports


def test_a_report_killed_mid_research_passes(since: Reports, admin: Admin) -> None:
    result = check.lesson_11.exercise_1.sync(admin, *since.killed)
    assert result.ok, result
    assert "were looked up before the kill" in result.message


def test_a_report_never_killed_is_refused(since: Reports, admin: Admin) -> None:
    failed(check.lesson_11.exercise_1.sync(admin, *since.not_killed), "ran in the same process")


def test_a_report_whose_researchers_were_all_held_is_refused(since: Reports, admin: Admin) -> None:
    failed(check.lesson_11.exercise_1.sync(admin, *since.all_held), "no question was looked up before the kill")


def test_the_report_id_of_another_request_is_refused(since: Reports, admin: Admin) -> None:
    report_id, _ = since.killed
    _, other = since.not_killed
    failed(check.lesson_11.exercise_1.sync(admin, report_id, other), "researched for another invocation")
    failed(check.lesson_11.exercise_1.sync(admin, "r-typo", other), "no question of report 'r-typo'")
    failed(check.lesson_11.exercise_1.sync(admin, "", other), "is not a report id")


def test_a_researcher_s_invocation_is_refused(since: Reports, admin: Admin) -> None:
    report_id, invocation_id = since.killed
    row = admin.query(
        f"SELECT id FROM sys_invocation WHERE invoked_by_id = '{invocation_id}' "
        "AND target_service_name = 'ReportResearcher'"
    )[0]
    failed(check.lesson_11.exercise_1.sync(admin, report_id, row["id"]), "not to ReportOrchestrator/write")
    failed(check.lesson_11.exercise_1.sync(admin, report_id, "not-an-id"), "is not an invocation id")


def test_reports_from_before_the_exercises_are_refused(reports: Reports, admin: Admin) -> None:
    begin(11, admin)
    failed(check.lesson_11.exercise_1.sync(admin, *reports.killed), "before you began the exercises")


# --- exercise 2 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def desks(restate_server: RestateServer, _kit_data: Path) -> Iterator[tuple[AgentProcess, Began]]:
    admin = Admin(restate_server.admin_url)
    began = begin(11, admin)
    with AgentProcess(DESKS, admin=admin, name="l11-check-desks") as proc:
        yield proc.start(timeout=120), began


@pytest.fixture
def desk_since(desks: tuple[AgentProcess, Began], monkeypatch: pytest.MonkeyPatch) -> AgentProcess:
    monkeypatch.setitem(_core._began, 11, desks[1])
    return desks[0]


def test_a_desk_with_five_attempts_passes(desk_since: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_11.exercise_2.sync(ingress, admin, "L11PatientDesk")
    assert result.ok, result


def test_the_default_three_attempts_are_refused(desk_since: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_11.exercise_2.sync(ingress, admin, "L11HastyDesk"), "gave up after 3 attempts")


def test_seven_attempts_are_refused(desk_since: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(
        check.lesson_11.exercise_2.sync(ingress, admin, "L11LaxDesk"),
        "attempts at one model call so far: it did not give up after 5",
    )


def test_no_run_options_are_refused(desk_since: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_11.exercise_2.sync(ingress, admin, "L11UnboundedDesk"), "it did not give up after 5")


def test_a_desk_that_is_not_served_is_refused(desk_since: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    failed(check.lesson_11.exercise_2.sync(ingress, admin, "L11NoSuchDesk"), "does not list a service")


def test_a_desk_registered_before_the_exercises_is_refused(
    desks: tuple[AgentProcess, Began], ingress: Ingress, admin: Admin
) -> None:
    begin(11, admin)
    failed(check.lesson_11.exercise_2.sync(ingress, admin, "L11PatientDesk"), "before you began the exercises")
