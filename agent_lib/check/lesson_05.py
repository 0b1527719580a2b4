"""Checks for lesson 05's exercises: predicting a fan-out, a gathering tool, a crash on the specialists' side."""

from __future__ import annotations

from typing import Any

from ..agents.specialists import (
    SPECIALISTS,
    CheckTime,
    Verdict,
    all_overlap,
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
from ._core import call, completed, effects_of, exercise, output, require, require_service

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


def _span(times: list[CheckTime]) -> float:
    return max(t.finished for t in times) - min(t.started for t in times)


def _close(predicted: float, measured: float) -> bool:
    return abs(predicted - measured) <= max(1.0, 0.35 * measured)


@exercise(5, 1)
def exercise_1(
    parallel_claim_id: str,
    one_by_one_claim_id: str,
    predicted_parallel: float,
    predicted_one_by_one: float,
    *,
    slowest: str = "policy",
    ledger: Ledger | None = None,
) -> str:
    """Two claims triaged with the slow policy check, in parallel and one by one: your predictions hold."""
    parallel, serial = check_times(parallel_claim_id, ledger), check_times(one_by_one_claim_id, ledger)
    for name, times in (("parallel", parallel), ("one-by-one", serial)):
        ran = sorted({t.specialist for t in times})
        require(
            ran == sorted(SPECIALISTS),
            f"the {name} claim was checked by {ran}, not by all three specialists",
            "triage one claim with 'triage' and another with 'triage_one_by_one', and pass their claim ids",
        )
    durations = {t.specialist: t.finished - t.started for t in parallel}
    require(
        max(durations, key=lambda s: durations[s]) == slowest and durations[slowest] >= 2.5,
        f"the checks took { ({k: round(v, 1) for k, v in durations.items()}) }: {slowest} is not the slow one (3s)",
        "restart the specialists' process with env=seconds_env(eligibility=1, fraud=1, policy=3)",
    )
    require(all_overlap(parallel), "the 'parallel' claim's checks did not all run at once: was it triaged with gather?")
    require(one_at_a_time(serial), "the 'one by one' claim's checks overlapped: use triage_one_by_one for it")
    measured_p, measured_s = _span(parallel), _span(serial)
    require(
        _close(predicted_parallel, measured_p),
        f"you predicted {predicted_parallel:g}s in parallel; the checks took {measured_p:.1f}s",
        "in parallel, the wall time is the slowest check's time",
    )
    require(
        _close(predicted_one_by_one, measured_s),
        f"you predicted {predicted_one_by_one:g}s one by one; the checks took {measured_s:.1f}s",
        "one by one, the wall time is the sum of the checks' times",
    )
    return f"parallel {measured_p:.1f}s (the slowest check), one by one {measured_s:.1f}s (the sum): as you predicted"


def _service_type(admin: Admin, service: str) -> str:
    rows = admin.query(f"SELECT ty FROM sys_service WHERE name = '{service}'")
    return str(rows[0]["ty"]) if rows else ""


_ENGINE_STEPS = {"call LLM", "store session"}


@exercise(5, 2)
def exercise_2(ingress: Ingress, admin: Admin, service: str, *, handler: str = "run") -> str:
    """Your agent with one `consult_specialists` tool: three steps, all started before any of them finished."""
    require_service(admin, service)
    claim = sample_claim()
    keyed = "object" in _service_type(admin, service).lower()
    invocation_id, _ = call(ingress, service, handler, claim, key=claim["claim_id"] if keyed else None)
    journal = admin.journal(invocation_id)
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
    steps = admin.steps(invocation_id)
    require("call LLM" in steps, f"no model call in the journal ({steps}): keep RestatePlugin()")
    return f"three steps started together ({', '.join(r['name'] for r in work[:3])}), in one tool call: {steps}"


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
    row = completed(admin, triage_invocation_id, success=True)
    require(row["target_service_name"] == "ClaimTriage", f"{triage_invocation_id} is not a ClaimTriage invocation")
    report = output(ingress, triage_invocation_id)
    children = admin.query(
        f"SELECT id, target_service_name FROM sys_invocation WHERE invoked_by_id = '{triage_invocation_id}'"
    )
    fraud = [c["id"] for c in children if c["target_service_name"] == "FraudAgent"]
    require(fraud, "this triage called no FraudAgent", "triage with 'triage', which calls the three specialists")
    pids = {e.pid for e in effects_of("model_call", invocation_id=fraud[0], ledger=ledger)}
    require(
        len(pids) >= 2,
        "the fraud agent's model calls all came from one process: its process was not killed mid-check",
        "arm check_gate('fraud'), triage, gate.wait_reached(), kill the *specialists'* process, start it again",
    )
    if claim is not None:
        checked = require_claim(claim)
        expected = decide([Verdict(specialist=s, **evaluate(s, checked).model_dump()) for s in SPECIALISTS])
        require(
            report["decision"]["outcome"] == expected.outcome,
            f"the decision {report['decision']['outcome']!r} differs from the rules' {expected.outcome!r}",
        )
    counts = checks_run(report["claim_id"], ledger)
    twice = [s for s, n in counts.items() if n > 1]
    return (
        f"decision {report['decision']['outcome']!r}; checks run: {counts} "
        f"({'ran twice: ' + ', '.join(twice) if twice else 'none ran twice'}); the fraud agent spanned "
        f"{len(pids)} processes, and its journaled model call was not made again"
    )
