"""Checks for the capstone's exercises: a second claim, a denied claim, a rejection across a crash.

They read the desk's claims through its shared `claims` handler, the claims agent's invocations through the admin
API, and the payments and emails in the ledger.
"""

from __future__ import annotations

from typing import Any

from ..agents.capstone import AGENT, APPROVALS, DESK, EMAIL_KIND
from ..clients import Admin, Ingress
from ..ledger import Ledger
from ._core import call, effects_of, exercise, require, require_service

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _claims(ingress: Ingress, admin: Admin, desk: str, conversation: str) -> dict[str, dict[str, Any]]:
    require_service(admin, desk)
    claims = ingress.call(desk, "claims", key=conversation)
    require(
        claims,
        f"the conversation {conversation!r} has no claims filed",
        "talk to the desk under one key: who you are, then what happened, when, and how much",
    )
    return dict(claims)


def _count(kind: str, claim: str, ledger: Ledger | None) -> int:
    return sum(e.detail.get("claim") == claim for e in effects_of(kind, ledger=ledger))


def _agent_runs(admin: Admin, agent: str, claim: str) -> list[dict[str, Any]]:
    return admin.query(
        "SELECT id FROM sys_invocation "
        f"WHERE target_service_name = {_sql(agent)} AND target_service_key = {_sql(claim)}"
    )


@exercise(9, 1)
def exercise_1(
    ingress: Ingress, admin: Admin, conversation: str, *, desk: str = DESK, ledger: Ledger | None = None
) -> str:
    """Two claims in one conversation, each paid once and emailed once, and the desk reports both."""
    claims = _claims(ingress, admin, desk, conversation)
    require(
        len(claims) >= 2,
        f"the conversation has {len(claims)} claim: file a second one in the same conversation",
        "e.g. 'A storm damaged the roof of my home on 2025-11-02: 650 EUR.' to the same key",
    )
    for claim, record in claims.items():
        paid = _count("payment", claim, ledger)
        expected = 1 if record["status"] in ("paid", "approved") else 0
        require(paid == expected, f"claim {claim} is {record['status']} and has {paid} payment(s), not {expected}")
        emails = _count(EMAIL_KIND, claim, ledger)
        require(emails == 1, f"claim {claim} sent {emails} email(s), not 1")
    _, status = call(ingress, desk, "run", "What is the status of my claims?", key=conversation)
    missing = [c for c in claims if c not in str(status)]
    require(not missing, f"asked for the status, the desk answered {status!r}, without {missing}")
    return f"{len(claims)} claims ({', '.join(r['status'] for r in claims.values())}), each paid and emailed once"


@exercise(9, 2)
def exercise_2(
    ingress: Ingress,
    admin: Admin,
    conversation: str,
    *,
    desk: str = DESK,
    agent: str = AGENT,
    approvals: str = APPROVALS,
    ledger: Ledger | None = None,
) -> str:
    """A claim the specialists deny: no payout, no approval request, no claims agent, one email saying why."""
    claims = _claims(ingress, admin, desk, conversation)
    denied = [c for c, r in claims.items() if r["status"] == "denied"]
    require(
        denied,
        f"none of the claims of {conversation!r} was denied: { ({c: r['status'] for c, r in claims.items()}) }",
        "file a claim its policy does not cover (e.g. a travel claim on POL-1001) or on a date it was not active",
    )
    claim = denied[-1]
    require(_count("payment", claim, ledger) == 0, f"the denied claim {claim} was paid")
    require(not _agent_runs(admin, agent, claim), f"the denied claim {claim} still went to {agent}")
    require(ingress.call(approvals, "show", key=claim) is None, f"the denied claim {claim} waits for an approver")
    require(_count(EMAIL_KIND, claim, ledger) == 1, f"the denied claim {claim} was not emailed exactly once")
    return f"claim {claim} was denied ({'; '.join(claims[claim]['reasons'])}): nothing paid, nobody asked"


@exercise(9, 3)
def exercise_3(
    ingress: Ingress,
    admin: Admin,
    conversation: str,
    claim: str,
    reason: str,
    *,
    desk: str = DESK,
    agent: str = AGENT,
    ledger: Ledger | None = None,
) -> str:
    """A large claim rejected, with a reason, after the desk's process was killed while it waited."""
    claims = _claims(ingress, admin, desk, conversation)
    require(claim in claims, f"the conversation has no claim {claim!r}: it has {sorted(claims)}")
    record = claims[claim]
    require(
        record["status"] == "rejected",
        f"claim {claim} is {record['status']!r}, not rejected",
        "reject it from the approval panel: await panel.adecide(claim, False, reason)",
    )
    given = reason.strip()
    require(given and given in record["reason"], f"its reason is {record['reason']!r}, not {reason!r}")
    require(_count("payment", claim, ledger) == 0, f"the rejected claim {claim} was paid")
    require(_count(EMAIL_KIND, claim, ledger) == 1, f"claim {claim} was not emailed exactly once")
    runs = _agent_runs(admin, agent, claim)
    require(runs, f"{agent} never handled claim {claim}")
    pids = {e.pid for r in runs for e in effects_of("model_call", invocation_id=r["id"], ledger=ledger)}
    require(
        len(pids) >= 2,
        "the claim was handled by one process from start to end: no crash happened while it waited",
        "wait until the approval is pending (and the turn suspended), process.kill(), process.start(), then decide",
    )
    return f"claim {claim} rejected ({record['reason']}), across {len(pids)} processes: nothing paid, one email"
