"""Checks for lesson 04's exercises: a threshold you moved, approvers who may and may not decide, a rejection.

The claims agent and its approvals service are named by their prefix (lesson 04 serves "Lesson04ClaimsAgent" and
"Lesson04ClaimApprovals"); pass the names you serve. Run `check.lesson_04.begin(admin)` before the exercises: the
checks of exercises 2 and 3 refuse claims filed before it (the lesson's own).
"""

from __future__ import annotations

import contextlib
from typing import Any

from .._sql import sql_literal
from ..clients import Admin, Ingress, RestateError
from ..ledger import Ledger
from ..models import uses_gemini
from . import _core
from ._core import (
    Began,
    call,
    completed,
    created_at,
    deployment_of,
    effects_of,
    exercise,
    fresh_key,
    listening,
    output,
    require,
    require_new,
    require_not_stuck,
    require_service,
    send,
    wait_until,
)

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3", "run_invocation"]

_AGENT = "ClaimsAgent"


def _start_hint(prefix: str, threshold: str) -> str:
    return (
        "start it again: claims_process.restart() (the lesson's process, with section 1's settings in "
        "claims_process.env = dict(first_settings)), or a new AgentProcess([...claims_service, ...approvals_service], "
        f"env={{...}}, admin=admin).start(), keeping CLAIMS_SERVICE_PREFIX={prefix!r} in its env (else it serves other "
        f"names){threshold}"
    )


_STOPPED = "the claims process is stopped: start it again (claims_process.restart()), then run the check again"
_SETTLE = 20.0
"""Seconds a check waits for a claim that was just decided to finish (the agent resumes, pays and answers)."""
_NEW_CLAIM = (
    "file a new claim, under a new id, after check.lesson_04.begin(admin): "
    'claim = f"my-claim-{uuid.uuid4().hex[:6]}"; ingress.send(AGENT, "run", {...}, key=claim)'
)


_exercise_2_claims: set[str] = set()
"""The claims exercise 2's check was given in this kernel: exercise 3 asks for another one."""


def begin(admin: Admin) -> Began:
    """Record that you begin lesson 04's exercises now: the checks judge only the claims you file after it."""
    return _core.begin(4, admin)


def run_invocation(admin: Admin, agent: str, claim_id: str) -> dict[str, Any]:
    """Return the sys_invocation row of the claims agent's `run` that processed one claim.

    A claim id is processed once: a later `run` on it is refused (409), and one with bad input (400) did nothing,
    so the first `run` that was not refused is the one.
    """
    rows = admin.query(
        "SELECT * FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(agent)} AND target_service_key = {sql_literal(claim_id)} "
        "AND target_handler_name = 'run' ORDER BY created_at"
    )
    require(
        rows,
        f"{agent} never ran a claim with the id {claim_id!r}",
        "file the claim with ingress.send(AGENT, 'run', {...}, key=claim_id) and pass that claim id",
    )
    refused = [r for r in rows if str(r.get("completion_failure") or "").startswith(("[400]", "[409]"))]
    kept = [r for r in rows if r not in refused]
    return kept[0] if kept else rows[-1]


def _payments(claim_id: str, ledger: Ledger | None) -> int:
    return sum(e.detail.get("claim") == claim_id for e in effects_of("payment", ledger=ledger))


def _prefix(agent: str) -> str:
    return agent[: -len(_AGENT)] if agent.endswith(_AGENT) else agent


def _require_running(admin: Admin, agent: str, approvals: str, threshold: str = "") -> None:
    """Fail, naming the likely slip, unless the claims agent's process is up."""
    require_service(admin, agent)
    require_service(admin, approvals)
    dep = deployment_of(admin, agent)
    if listening(str(dep.get("uri", ""))) is not False:
        return
    slip = ""
    mine = created_at(dep["created_at"])
    for name in admin.services():
        if name == agent or not name.endswith(_AGENT):
            continue
        other = deployment_of(admin, name)
        if created_at(other["created_at"]) > mine and listening(str(other.get("uri", ""))):
            slip = (
                f"; {name} was registered after it, by a process that runs: did your new process leave out "
                f"CLAIMS_SERVICE_PREFIX={_prefix(agent)}? Then it serves {name} instead"
            )
            break
    raise _core.Fail(
        f"the agent process is stopped: start it again. Nothing listens at {dep.get('uri')} for {agent}{slip}",
        _start_hint(_prefix(agent), threshold),
    )


def _escalated(outcome: dict[str, Any], claim_id: str) -> str:
    return (
        f"claim {claim_id!r} was escalated: its approval timed out before an allowed approver decided "
        f"({outcome.get('reason')}), so a decision after that found nothing pending (404). The claims process ran "
        "it with a short CLAIMS_APPROVAL_TIMEOUT (section 7 sets 5s)"
    )


_LONG_TIMEOUT = (
    "restart the claims process with section 1's settings (claims_process.env = dict(first_settings), then "
    "claims_process.restart(): a 10-minute timeout), file a new claim, under a new id, and decide it in time"
)


def _settled(ingress: Ingress, admin: Admin, run: dict[str, Any], approvals: str, claim_id: str) -> Any:
    """Return the claim's outcome once its run finished; fail at once, with the cause, if it cannot finish yet."""

    def finished() -> dict[str, Any] | None:
        row = admin.invocation(str(run["id"]))
        if row is not None and row["status"] == "completed":
            return row
        require(
            not admin.state(approvals, claim_id).get("pending"),
            f"claim {claim_id!r} still waits for an approver: nobody allowed has decided it yet",
            "decide it from the panel of an allowed approver: await panel.adecide(claim_id, approve, reason) "
            '(panel = ApprovalPanel(APPROVALS, approver="maria", ...))',
        )
        require_not_stuck(admin, str(run["id"]), f"the claim {claim_id!r}")
        return None

    try:
        wait_until(finished, f"claim {claim_id!r} to finish", timeout=_SETTLE)
    except TimeoutError:
        status = admin.status(str(run["id"]))
        raise _core.Fail(
            f"claim {claim_id!r} is still {status!r} after {_SETTLE:g} s, and waits for no approver",
            "look at its invocation in the Restate UI: its journal shows what it waits on; "
            "claims_process.log_tail() shows the agent's errors",
        ) from None
    row = completed(admin, str(run["id"]), success=True, stopped=_STOPPED)
    return output(ingress, row["id"])


def _withdraw(ingress: Ingress, approvals: str, claim_id: str) -> None:
    for approver in ("maria", "sam"):
        with contextlib.suppress(RestateError, _core.Fail):
            body = {"approver": approver, "approve": False, "reason": "withdrawn by the exercise check"}
            call(ingress, approvals, "decide", body, key=claim_id)
            return


@exercise(4, 1, deadline=90)
def exercise_1(
    ingress: Ingress,
    admin: Admin,
    *,
    agent: str = "Lesson04ClaimsAgent",
    approvals: str = "Lesson04ClaimApprovals",
    amount: float = 1800.0,
    ledger: Ledger | None = None,
) -> str:
    """File a claim of `amount` (above the old threshold of 1000): with your new threshold it is paid at once."""
    require(
        amount > 1000,
        f"use an amount above the old threshold of 1000, not {amount}",
        "leave `amount` at its default (1800), or pass one between 1000 and your new threshold",
    )
    _require_running(admin, agent, approvals, ", and CLAIMS_APPROVAL_THRESHOLD='2000'")
    claim_id = fresh_key("threshold")
    claim = {"customer": "Exercise check", "amount": amount, "description": "hotel, 4 nights"}
    invocation_id = send(ingress, agent, "run", claim, key=claim_id)

    def settled() -> str | None:
        if admin.status(invocation_id) == "completed":
            return "completed"
        if admin.state(approvals, claim_id).get("pending"):
            return "pending"
        require_not_stuck(admin, invocation_id, f"the claim {claim_id}")
        return None

    if wait_until(settled, f"claim {claim_id} to be paid or to ask for approval", timeout=75) == "pending":
        _withdraw(ingress, approvals, claim_id)
        require(
            False,
            f"a claim of {amount:,.2f} filed by the check waited for a human: the threshold your claims process runs "
            f"with is below {amount:,.2f} (the check withdrew the claim)",
            "start the claims process again with CLAIMS_APPROVAL_THRESHOLD='2000' in its env (a new AgentProcess, or "
            "claims_process.env['CLAIMS_APPROVAL_THRESHOLD'] = '2000' then claims_process.restart())",
        )
    row = completed(admin, invocation_id, success=True, stopped=_STOPPED)
    result = output(ingress, row["id"])
    require(
        isinstance(result, dict) and result.get("status") == "paid",
        f"the claim ended as {result!r}, not paid",
        "read the claims process's log (claims_process.log_tail()) and the invocation in the Restate UI",
    )
    payments = _payments(claim_id, ledger)
    require(
        payments == 1,
        f"the ledger has {payments} payments for it, not 1",
        "pass the same ledger your claims process writes to (the default one, unless you set AGENT_LEDGER)",
    )
    steps = admin.steps(invocation_id)
    return (
        f"a claim of {amount:,.2f} filed by the check was paid at once, with no approval request, and the ledger "
        f"holds one payment for it; its steps: {steps}"
    )


@exercise(4, 2)
def exercise_2(
    ingress: Ingress,
    admin: Admin,
    claim_id: str,
    *,
    agent: str = "Lesson04ClaimsAgent",
    approvals: str = "Lesson04ClaimApprovals",
) -> str:
    """One claim, two panels: a disallowed approver was refused (403) while it waited, then an allowed one decided."""
    run = require_new(admin, run_invocation(admin, agent, claim_id), f"the claim {claim_id!r}: its run", _NEW_CLAIM)
    _exercise_2_claims.add(claim_id)
    if run["status"] == "completed" and run.get("completion_result") == "success":
        paid = output(ingress, run["id"])
        require(
            not (isinstance(paid, dict) and paid.get("status") == "paid"),
            f"claim {claim_id!r} was paid at once ({paid.get('amount') if isinstance(paid, dict) else ''} is at or "
            "below the threshold): it never waited for an approver",
            "file a claim above the threshold of 1000 (e.g. 1800), with the claims process back at that threshold",
        )
        if isinstance(paid, dict) and paid.get("status") == "escalated":
            raise _core.Fail(_escalated(paid, claim_id), _LONG_TIMEOUT)
    decisions = admin.query(
        "SELECT id, created_at, completion_result, completion_failure FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(approvals)} AND target_service_key = {sql_literal(claim_id)} "
        "AND target_handler_name = 'decide' AND status = 'completed' ORDER BY created_at"
    )
    refused = [d for d in decisions if str(d.get("completion_failure") or "").startswith("[403]")]
    accepted = [d for d in decisions if d.get("completion_result") == "success"]
    require(
        refused,
        f"no decision on {claim_id!r} was refused as not allowed ({len(decisions)} decision(s) found)",
        'decide first from a panel whose approver is not allowed: ApprovalPanel(APPROVALS, approver="eve", ...)',
    )
    if not accepted:
        result = _settled(ingress, admin, run, approvals, claim_id)
        if isinstance(result, dict) and result.get("status") == "escalated":
            raise _core.Fail(_escalated(result, claim_id), _LONG_TIMEOUT)
        require(
            False,
            f"no decision on {claim_id!r} was accepted, and the claim ended as {result!r}",
            'decide it from a panel of an allowed approver ("maria" or "sam") while it waits',
        )
    result = _settled(ingress, admin, run, approvals, claim_id)
    require(
        isinstance(result, dict),
        f"the claim's result is {result!r}",
        "pass the claim id you filed with the claims agent (AGENT), and that agent's name",
    )
    decided_at = created_at(accepted[0]["created_at"])
    requests = admin.query(
        "SELECT created_at FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(approvals)} AND target_service_key = {sql_literal(claim_id)} "
        "AND target_handler_name = 'request' ORDER BY created_at"
    )
    asked_at = created_at(requests[0]["created_at"]) if requests else None
    in_time = [d for d in refused if created_at(d["created_at"]) <= decided_at]
    require(
        in_time,
        f"the refusal (403) came after {result.get('approver')} had decided claim {claim_id!r}: the claim was no "
        "longer pending then, so the refusal showed nothing about a waiting claim",
        "decide from eve's panel first, while the claim waits, then from maria's",
    )
    waiting = [d for d in in_time if asked_at is None or created_at(d["created_at"]) >= asked_at]
    require(
        waiting,
        f"the refusal (403) came before claim {claim_id!r} asked for approval: it was not pending yet",
        "wait until the panel lists the claim (await panel.wait_for_request(claim_id)), then decide from eve's panel",
    )
    if result.get("status") == "escalated":
        raise _core.Fail(_escalated(result, claim_id), _LONG_TIMEOUT)
    require(
        result.get("status") in ("approved", "rejected"),
        f"the claim ended as {result.get('status')!r}, not decided by an approver",
        "decide it from maria's panel before its approval times out (keep CLAIMS_APPROVAL_TIMEOUT long, e.g. 10m)",
    )
    return (
        f"{len(waiting)} decision(s) refused with 403 while claim {claim_id!r} waited for approval; then "
        f"{result.get('approver')} decided it: {result.get('status')}"
    )


@exercise(4, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    claim_id: str,
    reason: str,
    *,
    agent: str = "Lesson04ClaimsAgent",
    approvals: str = "Lesson04ClaimApprovals",
    ledger: Ledger | None = None,
) -> str:
    """Another large claim, which you rejected with a reason: nothing paid, and the customer is told why."""
    run = require_new(admin, run_invocation(admin, agent, claim_id), f"the claim {claim_id!r}: its run", _NEW_CLAIM)
    refusals = admin.query(
        "SELECT id FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(approvals)} AND target_service_key = {sql_literal(claim_id)} "
        "AND target_handler_name = 'decide' AND completion_failure LIKE '[403]%'"
    )
    why = "a decision on it was refused as not allowed: eve's panel tried it" if refusals else "you passed it there"
    require(
        claim_id not in _exercise_2_claims and not refusals,
        f"claim {claim_id!r} is exercise 2's claim ({why}): exercise 3 asks for another claim",
        "file another large claim, under a new id, and reject it from maria's panel with a reason",
    )
    result = _settled(ingress, admin, run, approvals, claim_id)
    require(
        isinstance(result, dict),
        f"the claim's result is {result!r}",
        "pass the claim id you filed with the claims agent (AGENT), and that agent's name",
    )
    if result.get("status") == "escalated":
        raise _core.Fail(_escalated(result, claim_id), _LONG_TIMEOUT)
    require(
        result.get("status") == "rejected",
        f"the claim ended as {result.get('status')!r}, not rejected",
        "file a claim above the threshold and reject it: panel.adecide(claim_id, False, reason)",
    )
    given = str(result.get("reason", ""))
    require(
        reason.strip() and given.strip() == reason.strip(),
        f"the claim was rejected with the reason {given!r}, not {reason!r}",
        "pass the whole reason you gave with the rejection, exactly as you typed it",
    )
    payments = _payments(claim_id, ledger)
    require(
        payments == 0,
        f"the ledger has {payments} payment(s) for a rejected claim",
        "a claim is paid once: file a new claim, under a new id, and reject it",
    )
    reply = str(result.get("reply") or "")
    require(
        uses_gemini() or reason.strip() in reply,
        f"the customer read {reply!r}, which does not give your reason",
        "the agent passes the reason on: did the claim go through the claims agent you serve?",
    )
    return (
        f"rejected by {result.get('approver')} with your reason, nothing in the ledger for it; "
        f"the customer read: {reply!r}"
    )
