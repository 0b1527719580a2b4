"""Checks for lesson 11's exercises: the orchestrator killed mid-research, a desk with a retry budget of 5 attempts.

Run `check.lesson_11.begin(admin)` before the exercises: the checks then judge only the invocations and deployments
made after it, and refuse the lesson's own.
"""

from __future__ import annotations

import time
from collections import Counter

from .._sql import sql_literal
from ..agents.orchestration import SORRY, model_attempts, set_model_faults
from ..clients import Admin, Ingress
from ..ledger import Ledger
from . import _core
from ._core import (
    Began,
    completed,
    effects_of,
    exercise,
    fresh_key,
    output,
    remaining,
    require,
    require_new,
    require_new_deployment,
    require_served,
    send,
)

__all__ = ["ATTEMPTS", "FAULTS", "QUESTION", "begin", "exercise_1", "exercise_2"]

ATTEMPTS = 5
"""The model attempts exercise 2's desk must give each model call."""
FAULTS = (4, 9)
"""The model faults exercise 2's check sets: 4 (the fifth attempt succeeds), then 9 (the desk gives up)."""
QUESTION = "Where is order A-1001?"
"""What exercise 2's check asks the desk."""


def begin(admin: Admin) -> Began:
    """Begin lesson 11's exercises now (server time): the checks then judge only what is made after it."""
    return _core.begin(11, admin)


@exercise(11, 1)
def exercise_1(admin: Admin, report_id: str, invocation_id: str, *, ledger: Ledger | None = None) -> str:
    """Your report, killed after some research: each question looked up once, the planner not asked again."""
    require(
        isinstance(report_id, str) and report_id.strip() != "",
        f"{report_id!r} is not a report id",
        'pass the "report_id" you sent to ReportOrchestrator/write, e.g. "report-mine-1"',
    )
    row = require_new(admin, invocation_id, "the report's invocation")
    target = f"{row['target_service_name']}/{row['target_handler_name']}"
    require(
        target == "ReportOrchestrator/write",
        f"invocation {invocation_id} is a call to {target}, not to ReportOrchestrator/write",
        'pass the id that ingress.send("ReportOrchestrator", "write", {...}) gave you',
    )
    completed(admin, invocation_id, success=True, stopped="start the agents' process again: agents.start()")
    research = [e for e in effects_of("research", ledger=ledger) if e.detail.get("report_id") == report_id]
    require(
        research,
        f"no question of report {report_id!r} was looked up",
        'pass the "report_id" you sent in the request body, exactly',
    )
    callers = {e.invocation_id for e in research}
    ids = ", ".join(sql_literal(str(i)) for i in callers)
    parents = {
        r.get("invoked_by_id") for r in admin.query(f"SELECT invoked_by_id FROM sys_invocation WHERE id IN ({ids})")
    }
    require(
        parents == {invocation_id},
        f"report {report_id!r} was researched for another invocation, not for {invocation_id}",
        "pass the report id and the invocation id of the same request",
    )
    runs = Counter(int(e.detail["index"]) for e in research)
    twice = sorted(i for i, n in runs.items() if n > 1)
    require(
        not twice,
        f"question(s) {twice} of report {report_id!r} were looked up more than once: {dict(runs)}",
        "kill once the other researchers' invocations completed (researchers_finished(invocation_id)): a look-up "
        "killed before its step was journaled runs again",
    )
    calls = effects_of("model_call", invocation_id=invocation_id, ledger=ledger)
    require(
        len(calls) == 2,
        f"the orchestrator's invocation paid for {len(calls)} model calls, not 2 (the planner's and the writer's)",
        "send one request and kill the process once, while a researcher is held at its gate",
    )
    planner_pid, writer_pid = calls[0].pid, calls[1].pid
    require(
        planner_pid != writer_pid,
        f"the planner and the writer ran in the same process (pid {planner_pid}): the report was not killed mid-way",
        "arm research_gate(report_id, index), wait until it is reached, then agents.kill() and agents.start()",
    )
    before = sorted(i for i, e in ((int(e.detail["index"]), e) for e in research) if e.pid == planner_pid)
    after = sorted(i for i, e in ((int(e.detail["index"]), e) for e in research) if e.pid != planner_pid)
    require(
        before,
        "no question was looked up before the kill: every researcher was held (or the kill came first)",
        "hold only some researchers at their gates, and kill after another question was looked up "
        "(research_runs(report_id) shows it)",
    )
    require(
        after,
        "every question was looked up before the kill: the kill came after the research",
        "arm research_gate(report_id, index) before you send the request, and kill once it is reached",
    )
    return (
        f"report {report_id!r}: questions {before} were looked up before the kill (pid {planner_pid}), {after} after "
        f"it (pid {writer_pid}), each once; the planner's model call was not made again"
    )


def _answer_through_faults(ingress: Ingress, admin: Admin, invocation_id: str, what: str) -> object:
    """Wait, within the check's deadline, for an invocation that fails on purpose a few times before it answers.

    `attach` would give up on an invocation that keeps failing while its process runs (`require_not_stuck`): right
    for a learner's bug, wrong here, where the faults are the exercise's own (seen under load: 4 planned faults
    counted as "keeps failing").
    """
    while True:
        row = admin.invocation(invocation_id) or {}
        if row.get("status") == "completed":
            return output(ingress, invocation_id)
        require(
            row.get("status") != "paused",
            f"{what} was paused after failing: {str(row.get('last_failure'))[:200]}",
            "give RestatePlugin run_options with max_attempts=5, serve the desk again, and run the check again",
        )
        remaining(what)
        time.sleep(0.3)


@exercise(11, 2, deadline=90.0)
def exercise_2(
    ingress: Ingress, admin: Admin, service: str = "PatientDesk", *, handler: str = "ask", ledger: Ledger | None = None
) -> str:
    """Your desk gives each model call exactly 5 attempts: 4 faults are survived, 9 end in a clean answer."""
    require_served(admin, service)
    require_new_deployment(admin, service, "build it with order_desk_service(...) and serve it now, in this kernel")
    survived, gave_up = FAULTS
    key = fresh_key("patient")
    set_model_faults(key, survived)
    try:
        first_id = send(ingress, service, handler, QUESTION, key=key)
        first = _answer_through_faults(ingress, admin, first_id, f"an answer from {service}/{handler}")
    finally:
        set_model_faults(key, 0)
    attempts = model_attempts(first_id, ledger)
    require(
        attempts > 0,
        f"{service}'s model never counted an attempt: it is not the desk's FlakyModel",
        f'build the desk with order_desk_service("{service}", run_options=restate.RunOptions(max_attempts=5, ...))',
    )
    require(
        not str(first).startswith(SORRY),
        f"with {survived} model faults, {service} gave up after {attempts} attempts: {str(first)[:160]!r}",
        "give RestatePlugin run_options=restate.RunOptions(max_attempts=5, ...): a call then survives 4 faults",
    )
    require(
        "shipped" in str(first),
        f"with {survived} model faults, {service} answered {str(first)[:160]!r}, not the order's status",
        f"answer with order_desk_service's own agent, asked {QUESTION!r}",
    )
    key = fresh_key("patient")
    set_model_faults(key, gave_up)
    try:
        second_id = send(ingress, service, handler, QUESTION, key=key)
        while (admin.invocation(second_id) or {}).get("status") != "completed":
            attempts = model_attempts(second_id, ledger)
            require(
                attempts <= ATTEMPTS,
                f"with {gave_up} model faults, {service} made {attempts} attempts at one model call so far: it did not "
                f"give up after {ATTEMPTS}",
                "set max_attempts=5 in the run_options you give order_desk_service (None means: retry until the "
                "faults end)",
            )
            remaining(f"an answer from {service}/{handler}")
            time.sleep(0.2)
        second = output(ingress, second_id)
    finally:
        set_model_faults(key, 0)
    attempts = model_attempts(second_id, ledger)
    require(
        str(second).startswith(SORRY),
        f"with {gave_up} model faults, {service} answered {str(second)[:120]!r} after {attempts} attempts, not the "
        "SORRY text",
        "build the desk with order_desk_service(...): its ask handler answers cleanly when the model call gives up",
    )
    require(
        attempts == ATTEMPTS,
        f"with {gave_up} model faults, {service} gave up after {attempts} attempts, not {ATTEMPTS}",
        "set max_attempts=5 in the run_options you give order_desk_service",
    )
    return (
        f"{service} survived {survived} model faults (the fifth attempt answered) and, with {gave_up}, gave up after "
        f"exactly {ATTEMPTS} attempts with a clean answer: {str(second)[:80]!r}"
    )
