"""Checks for lesson 04's exercises: a threshold you moved, approvers who may and may not decide, a rejection.

The claims agent and its approvals service are named by their prefix (lesson 04 serves "Lesson04ClaimsAgent" and
"Lesson04ClaimApprovals"); pass the names you serve.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..clients import Admin, Ingress, RestateError
from ..ledger import Ledger
from ._core import completed, effects_of, exercise, fresh_key, output, require, require_service, wait_until

__all__ = ["exercise_1", "exercise_2", "exercise_3", "run_invocation"]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def run_invocation(admin: Admin, agent: str, claim_id: str) -> dict[str, Any]:
    """Return the sys_invocation row of the claims agent's `run` for one claim (the latest one)."""
    rows = admin.query(
        "SELECT * FROM sys_invocation "
        f"WHERE target_service_name = {_sql(agent)} AND target_service_key = {_sql(claim_id)} "
        "AND target_handler_name = 'run' ORDER BY created_at DESC"
    )
    require(
        rows,
        f"{agent} never ran a claim with the id {claim_id!r}",
        "file the claim with ingress.send(AGENT, 'run', {...}, key=claim_id) and pass that claim id",
    )
    return rows[0]


def _payments(claim_id: str, ledger: Ledger | None) -> int:
    return sum(e.detail.get("claim") == claim_id for e in effects_of("payment", ledger=ledger))


def _withdraw(ingress: Ingress, admin: Admin, approvals: str, claim_id: str, invocation_id: str) -> None:
    for approver in ("maria", "sam"):
        with contextlib.suppress(RestateError):
            body = {"approver": approver, "approve": False, "reason": "withdrawn by the exercise check"}
            ingress.call(approvals, "decide", body, key=claim_id)
            return
    with contextlib.suppress(RestateError):
        admin.kill(invocation_id)


@exercise(4, 1)
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
    require_service(admin, agent)
    require(amount > 1000, f"use an amount above the old threshold of 1000, not {amount}")
    claim_id = fresh_key("threshold")
    claim = {"customer": "Exercise check", "amount": amount, "description": "hotel, 4 nights"}
    sent = ingress.send(agent, "run", claim, key=claim_id)

    def settled() -> str | None:
        if admin.status(sent.invocation_id) == "completed":
            return "completed"
        pending = ingress.call(approvals, "show", key=claim_id)
        return "pending" if pending else None

    if wait_until(settled, f"claim {claim_id} to be paid or to ask for approval", timeout=90) == "pending":
        _withdraw(ingress, admin, approvals, claim_id, sent.invocation_id)
        raise_hint = "restart the claims process with env CLAIMS_APPROVAL_THRESHOLD='2000' (then it re-reads it)"
        require(False, f"a claim of {amount:,.2f} still waits for a human: the threshold is below it", raise_hint)
    result = ingress.attach(sent.invocation_id)
    require(
        isinstance(result, dict) and result.get("status") == "paid",
        f"the claim ended as {result!r}, not paid",
    )
    require(_payments(claim_id, ledger) == 1, f"the ledger has {_payments(claim_id, ledger)} payments for it, not 1")
    steps = admin.steps(sent.invocation_id)
    return f"{amount:,.2f} was paid at once, with no approval request; its steps: {steps}"


@exercise(4, 2)
def exercise_2(
    ingress: Ingress,
    admin: Admin,
    claim_id: str,
    *,
    agent: str = "Lesson04ClaimsAgent",
    approvals: str = "Lesson04ClaimApprovals",
) -> str:
    """One claim, two panels: a disallowed approver was refused (403), an allowed one approved it."""
    decisions = admin.query(
        "SELECT id, completion_result, completion_failure FROM sys_invocation "
        f"WHERE target_service_name = {_sql(approvals)} AND target_service_key = {_sql(claim_id)} "
        "AND target_handler_name = 'decide' AND status = 'completed' ORDER BY created_at"
    )
    refused = [d for d in decisions if str(d.get("completion_failure") or "").startswith("[403]")]
    accepted = [d for d in decisions if d.get("completion_result") == "success"]
    require(
        refused,
        f"no decision on {claim_id!r} was refused as not allowed ({len(decisions)} decision(s) found)",
        'decide first from a panel whose approver is not allowed: ApprovalPanel(APPROVALS, approver="eve", ...)',
    )
    require(
        accepted,
        f"no decision on {claim_id!r} was accepted",
        'then approve it from a panel of an allowed approver ("maria" or "sam")',
    )
    row = completed(admin, run_invocation(admin, agent, claim_id)["id"], success=True)
    result = output(ingress, row["id"])
    require(
        isinstance(result, dict) and result.get("status") in ("approved", "rejected"),
        f"the claim ended as {result!r}",
    )
    return (
        f"{len(refused)} refusal(s) with 403 left the claim pending; then {result.get('approver')} decided: "
        f"{result.get('status')}"
    )


@exercise(4, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    claim_id: str,
    reason: str,
    *,
    agent: str = "Lesson04ClaimsAgent",
    ledger: Ledger | None = None,
) -> str:
    """A large claim you rejected with a reason: nothing paid, and the customer is told why."""
    row = completed(admin, run_invocation(admin, agent, claim_id)["id"], success=True)
    result = output(ingress, row["id"])
    require(isinstance(result, dict), f"the claim's result is {result!r}")
    require(
        result.get("status") == "rejected",
        f"the claim ended as {result.get('status')!r}, not rejected",
        "file a claim above the threshold and reject it: panel.decide(claim_id, False, reason)",
    )
    require(
        reason.strip() and reason.strip() in str(result.get("reason", "")),
        f"the claim's reason is {result.get('reason')!r}, not {reason!r}",
        "pass the reason you gave with the rejection",
    )
    payments = _payments(claim_id, ledger)
    require(payments == 0, f"the ledger has {payments} payment(s) for a rejected claim")
    return f"rejected by {result.get('approver')}, nothing paid; the customer read: {result.get('reply')!r}"
