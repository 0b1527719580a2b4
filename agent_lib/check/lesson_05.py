"""Checks for lesson 05's exercises: predicting a fan-out, a gathering tool, a crash on the specialists' side.

Run `check.lesson_05.begin(admin)` before the exercises: the checks then judge only the claims, invocations and
deployments made after it, and refuse the lesson's own.
"""

from __future__ import annotations

import os
from datetime import UTC
from typing import Any

from .._sql import sql_literal
from ..agents.specialists import (
    SPECIALISTS,
    CheckTime,
    Verdict,
    all_overlap,
    check_gate,
    check_times,
    checks_run,
    evaluate,
    one_at_a_time,
    require_claim,
    sample_claim,
)
from ..agents.triage import decide
from ..clients import Admin, Ingress
from ..ledger import Ledger
from ..sessions import session_events, stored_session
from . import _core
from ._core import (
    Began,
    began,
    call,
    completed,
    deployment_of,
    effects_of,
    exercise,
    listening,
    output,
    require,
    require_new,
    require_new_deployment,
    require_not_stuck,
    require_served,
    wait_until,
)

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]

SECONDS = {"eligibility": 1.0, "fraud": 1.0, "policy": 3.0}
"""The checks' times exercise 1 asks for: `seconds_env(eligibility=1, fraud=1, policy=3)`."""

_TOLERANCE = 0.45
"""How far (in seconds) a check's time, or a prediction, may be from what it should be."""


def begin(admin: Admin) -> Began:
    """Begin lesson 05's exercises now (server time): the checks then judge only what is made after it."""
    return _core.begin(5, admin)


def _span(times: list[CheckTime]) -> float:
    return max(t.finished for t in times) - min(t.started for t in times)


def _triaged_by(admin: Admin, claim_id: str, ledger: Ledger | None) -> set[str]:
    """Return how each check of the claim was called: "ClaimTriage/triage", "ToolCallTriage/run", ..."""
    ids = {
        e.invocation_id for e in effects_of("specialist_check", ledger=ledger) if e.detail.get("claim_id") == claim_id
    }
    ids.discard(None)
    if not ids:
        return set()
    rows = admin.query(
        "SELECT c.target_service_name AS service, c.target_handler_name AS handler, p.target_service_name AS "
        "parent, p.target_handler_name AS parent_handler FROM sys_invocation c LEFT JOIN sys_invocation p "
        f"ON p.id = c.invoked_by_id WHERE c.id IN ({', '.join(sql_literal(str(i)) for i in ids)})"
    )
    return {
        f"{r['parent']}/{r['parent_handler']}" if r.get("parent") else f"{r['service']}/{r['handler']}" for r in rows
    }


@exercise(5, 1)
def exercise_1(
    admin: Admin,
    parallel_claim_id: str,
    one_by_one_claim_id: str,
    predicted_parallel: float,
    predicted_one_by_one: float,
    *,
    ledger: Ledger | None = None,
) -> str:
    """Two claims triaged with the slow policy check, with `triage` and `triage_one_by_one`: your predictions hold."""
    require(
        parallel_claim_id != one_by_one_claim_id,
        "you passed the same claim twice",
        "triage one sample_claim() with 'triage' and another with 'triage_one_by_one', and pass both claim ids",
    )
    require(
        all(isinstance(p, int | float) and not isinstance(p, bool) for p in (predicted_parallel, predicted_one_by_one)),
        f"your predictions {predicted_parallel!r} and {predicted_one_by_one!r} are not numbers of seconds",
        "pass two numbers: the seconds you expect 'triage' to take, then 'triage_one_by_one'",
    )
    start = began().at.replace(tzinfo=UTC).timestamp()
    claims = {"parallel": (parallel_claim_id, "triage"), "one-by-one": (one_by_one_claim_id, "triage_one_by_one")}
    measured = {label: check_times(claim_id, ledger) for label, (claim_id, _) in claims.items()}
    for label, (claim_id, handler) in claims.items():
        times = measured[label]
        ran = sorted({t.specialist for t in times})
        require(
            ran == sorted(SPECIALISTS),
            f"the {label} claim {claim_id!r} was checked by {ran or 'no specialist'}, not by all three",
            f'triage it with ingress.call("ClaimTriage", "{handler}", claim) and pass claim["claim_id"]',
        )
        require(
            min(t.started for t in times) >= start,
            f"the {label} claim {claim_id!r} was checked before you began the exercises: it is one of the lesson's",
            "triage a new sample_claim() each way, after check.lesson_05.begin(admin)",
        )
    callers = {label: _triaged_by(admin, claim_id, ledger) for label, (claim_id, _) in claims.items()}
    require(
        not (
            callers["parallel"] == {"ClaimTriage/triage_one_by_one"} and callers["one-by-one"] == {"ClaimTriage/triage"}
        ),
        "you swapped the two claims: the first was triaged with 'triage_one_by_one', the second with 'triage'",
        "pass the claim you triaged with 'triage' first, then the one from 'triage_one_by_one'",
    )
    for label, (_, handler) in claims.items():
        wanted = f"ClaimTriage/{handler}"
        require(
            callers[label] == {wanted},
            f"the {label} claim was checked through {sorted(callers[label]) or 'an unknown caller'}, not {wanted}",
            f'triage it with ingress.call("ClaimTriage", "{handler}", claim)',
        )
        durations = {t.specialist: round(t.finished - t.started, 1) for t in measured[label]}
        off = {s: d for s, d in durations.items() if abs(d - SECONDS[s]) > _TOLERANCE}
        require(
            not off,
            f"the {label} claim's checks took {durations}, not eligibility 1 s, fraud 1 s and policy 3 s",
            "start the specialists' process again with env=seconds_env(eligibility=1, fraud=1, policy=3), "
            "then triage new claims",
        )
    parallel, serial = measured["parallel"], measured["one-by-one"]
    require(
        all_overlap(parallel),
        "the 'parallel' claim's checks did not all run at once: was it triaged with gather?",
        'triage it with ingress.call("ClaimTriage", "triage", claim), whose restate.gather starts the three at once',
    )
    require(
        one_at_a_time(serial),
        "the 'one by one' claim's checks overlapped: use triage_one_by_one for it",
        'triage it with ingress.call("ClaimTriage", "triage_one_by_one", claim), which awaits each check in turn',
    )
    slowest = max(t.finished - t.started for t in parallel)
    total = sum(t.finished - t.started for t in serial)
    require(
        abs(predicted_parallel - slowest) <= _TOLERANCE,
        f"you predicted {predicted_parallel:g} s for 'triage'; its slowest check took {slowest:.1f} s "
        f"(the checks ran {_span(parallel):.1f} s from the first start to the last end)",
        "in parallel, the wall time is the slowest check's time",
    )
    require(
        abs(predicted_one_by_one - total) <= _TOLERANCE,
        f"you predicted {predicted_one_by_one:g} s for 'triage_one_by_one'; its checks took {total:.1f} s in all "
        f"({_span(serial):.1f} s from the first start to the last end)",
        "one by one, the wall time is the sum of the checks' times",
    )
    return (
        f"you predicted {predicted_parallel:g} s and {predicted_one_by_one:g} s; 'triage' ran its checks together in "
        f"{_span(parallel):.1f} s (the slowest took {slowest:.1f} s), 'triage_one_by_one' one after another in "
        f"{_span(serial):.1f} s (their sum: {total:.1f} s)"
    )


def _service_type(admin: Admin, service: str) -> str:
    rows = admin.query(f"SELECT ty FROM sys_service WHERE name = {sql_literal(service)}")
    return str(rows[0]["ty"]) if rows else ""


def _tool_calls(admin: Admin, service: str, key: str) -> list[str]:
    rows = admin.query(
        f"SELECT key FROM state WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)} "
        "AND key LIKE 'session_store::%'"
    )
    calls: list[str] = []
    for row in rows:
        session = stored_session(admin, service, key, str(row["key"]).split("::", 1)[1])
        if session is not None:
            calls += [name for names in session_events(session)["tool_calls"] for name in names]
    return calls


_ENGINE_STEPS = {"call LLM", "store session"}


@exercise(5, 2)
def exercise_2(ingress: Ingress, admin: Admin, service: str = "ConsultingAgent", *, handler: str = "run") -> str:
    """Your agent with one `consult_specialists` tool: three steps, all started before any of them finished."""
    require_served(admin, service)
    require_new_deployment(admin, service, "serve your ConsultingAgent now, with serve_in_kernel([...], admin=admin)")
    keyed = "object" in _service_type(admin, service).lower()
    require(
        keyed, f"{service} is a service, not a virtual object", f'declare it with restate.VirtualObject("{service}")'
    )
    claim = sample_claim()
    invocation_id, _ = call(ingress, service, handler, claim, key=claim["claim_id"])
    journal = admin.journal(invocation_id)
    steps = admin.steps(invocation_id)
    require(
        "call LLM" in steps,
        f"no model call in the journal ({steps}): run an ADK agent with RestatePlugin()",
        "build the handler as the lesson does: an Agent run by a Runner with plugins=[RestatePlugin()]",
    )
    tools = _tool_calls(admin, service, claim["claim_id"])
    require(
        tools == ["consult_specialists"],
        f"the model called the tools {tools}, not one consult_specialists",
        "give the agent a single tool, consult_specialists, that runs all three checks itself",
    )
    work = [r for r in journal if r["entry_type"] == "Command: Run" and r["name"] not in _ENGINE_STEPS]
    require(
        len(work) >= 3,
        f"the journal has {len(work)} work step(s) besides the model calls: {[r['name'] for r in work]}",
        "in the tool, create one ctx.run_typed(...) future per check, then await restate.gather(*futures)",
    )
    first, last = work[0]["index"], work[2]["index"]
    done_between = [r for r in journal if r["entry_type"] == "Notification: Run" and first < r["index"] < last]
    require(
        not done_between,
        "a step finished before the next one started: the three ran one after another",
        "do not await each run_typed in turn: start all three, then gather them",
    )
    return (
        f"one tool call, consult_specialists, started three steps together ({', '.join(r['name'] for r in work[:3])}) "
        f"before any finished; the journal: {steps}"
    )


_SETTLE = 25.0
"""Seconds exercise 3's check waits for a triage that has not finished yet (a restarted process resumes it)."""


def _held_at_gate(claim_id: str) -> bool:
    """Return True if a live process waits at the fraud check's gate for this claim."""
    gate = check_gate("fraud")
    report = gate.reached
    if not report or report.get("claim_id") != claim_id or (gate.directory / f"{gate.name}.open").exists():
        return False
    try:
        os.kill(int(report.get("pid", 0)), 0)
    except (OSError, ValueError):
        return False
    return True


def _why_unfinished(admin: Admin, row: dict[str, Any], claim_id: str) -> None:
    """Fail, naming what an unfinished triage waits on, when it cannot finish by itself; return if it may yet."""
    stopped = _stopped_specialist(admin, row)
    require(
        not stopped,
        f"the triage is {row['status']!r}, not finished: the specialists' process is stopped "
        f"(nothing serves {stopped})",
        "start the specialists' process again (specialists.start()), then run the check again",
    )
    waiting = [row] + admin.query(
        "SELECT id, target_service_name, status FROM sys_invocation "
        f"WHERE invoked_by_id = {sql_literal(row['id'])} AND status != 'completed'"
    )
    paused = [w for w in waiting if w["status"] == "paused"]
    require(
        not paused,
        "the triage cannot finish: "
        + ", ".join(f"{w.get('target_service_name', 'ClaimTriage')} {w['id']}" for w in paused)
        + " is paused (the lesson's retry policy pauses an invocation after about 30 s of failed attempts, e.g. "
        "while its process was down)",
        "with the processes running again, resume it: "
        + "; ".join(f"admin.resume({w['id']!r})" for w in paused)
        + "; then run the check again",
    )
    require_not_stuck(admin, str(row["id"]), "the triage")
    require(
        not _held_at_gate(claim_id),
        f"the triage is {row['status']!r}: the fraud check of claim {claim_id!r} is still held at its gate",
        "kill the specialists' process and start it again (the exercise's steps), or open the gate: gate.open()",
    )


def _stopped_specialist(admin: Admin, row: dict[str, Any]) -> str:
    """Return the specialist an unfinished triage waits for whose process is stopped, or ""."""
    children = admin.query(
        "SELECT target_service_name AS service, pinned_deployment_id AS dep, status FROM sys_invocation "
        f"WHERE invoked_by_id = {sql_literal(row['id'])}"
    )
    for child in children:
        if child["status"] != "completed":
            dep = deployment_of(admin, child["service"], deployment_id=child.get("dep") or None)
            if listening(str(dep.get("uri", ""))) is False:
                return str(child["service"])
    return ""


@exercise(5, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    triage_invocation_id: str,
    claim: dict[str, Any] | None = None,
    *,
    ledger: Ledger | None = None,
) -> str:
    """A triage whose specialists' process was killed while the fraud check waited: same decision, work resumed."""
    row = require_new(admin, triage_invocation_id, "the triage")
    require(
        row["target_service_name"] == "ClaimTriage",
        f"{triage_invocation_id} is a {row['target_service_name']}/{row['target_handler_name']} invocation, not a "
        "ClaimTriage one",
        'pass the id of the triage you sent: ingress.send("ClaimTriage", "triage", claim).invocation_id',
    )
    if row["status"] != "completed":
        claim_id = str((claim or {}).get("claim_id", ""))

        def finished() -> bool:
            now = admin.invocation(triage_invocation_id) or row
            if now["status"] == "completed":
                return True
            _why_unfinished(admin, now, claim_id)
            return False

        try:
            wait_until(finished, f"the triage {triage_invocation_id} to finish", timeout=_SETTLE)
        except TimeoutError:
            status = admin.status(triage_invocation_id)
            raise _core.Fail(
                f"the triage is still {status!r} after {_SETTLE:g} s",
                "look at it in the Restate UI: its journal shows which call it waits on, and that call's invocation "
                "why; specialists.log_tail() shows the specialists' errors",
            ) from None
    row = completed(admin, triage_invocation_id, success=True)
    report = output(ingress, triage_invocation_id)
    if claim is not None:
        require(
            claim.get("claim_id") == report["claim_id"],
            f"the claim you passed ({claim.get('claim_id')}) is not the one this triage checked ({report['claim_id']})",
            "pass the claim you sent to the triage",
        )
    children = admin.query(
        f"SELECT id, target_service_name FROM sys_invocation WHERE invoked_by_id = {sql_literal(triage_invocation_id)}"
    )
    fraud = [c["id"] for c in children if c["target_service_name"] == "FraudAgent"]
    require(fraud, "this triage called no FraudAgent", "triage with 'triage', which calls the three specialists")
    calls = effects_of("model_call", invocation_id=fraud[0], ledger=ledger)
    pids = {e.pid for e in calls}
    require(
        len(pids) >= 2,
        "the fraud agent's model calls all came from one process: the specialists' process was not killed while the "
        "fraud check waited at its gate (killing the triage's process, as in section 5, does not count)",
        "arm check_gate('fraud'), send the triage, gate.wait_reached(), then kill the *specialists'* process and "
        "start it again",
    )
    journaled = admin.steps(fraud[0]).count("call LLM")
    require(
        len(calls) == journaled,
        f"the fraud agent made {len(calls)} model calls for {journaled} in its journal: a model call was made again",
        "keep RestatePlugin on the specialists: it journals each model call",
    )
    same = ""
    if claim is not None:
        checked = require_claim(claim)
        expected = decide([Verdict(specialist=s, **evaluate(s, checked).model_dump()) for s in SPECIALISTS])
        require(
            report["decision"]["outcome"] == expected.outcome,
            f"the decision {report['decision']['outcome']!r} differs from the rules' {expected.outcome!r}",
            "decide from the three verdicts with decide(...), as the lesson's triage does; do not change the outcome",
        )
        same = ", as the rules give"
    counts = checks_run(report["claim_id"], ledger)
    twice = [s for s, n in counts.items() if n > 1]
    killed = min(calls, key=lambda e: e.at).pid
    where: dict[str, list[str]] = {"before the kill": [], "in the new process": []}
    for effect in effects_of("specialist_check", ledger=ledger):
        if effect.detail.get("claim_id") == report["claim_id"]:
            when = "before the kill" if effect.pid == killed else "in the new process"
            where[when].append(str(effect.detail.get("specialist")))
    ran = "; ".join(f"{when}: {', '.join(sorted(names)) or 'none'}" for when, names in where.items())
    return (
        f"decision {report['decision']['outcome']!r}{same}; checks finished {ran} "
        f"({'ran twice: ' + ', '.join(twice) if twice else 'none ran twice'}: a finished check's result is in the "
        "journal, and a check killed before it finished ran again from its start); the fraud agent's model calls "
        f"came from {len(pids)} processes, and none of its {journaled} journaled calls was made again"
    )
