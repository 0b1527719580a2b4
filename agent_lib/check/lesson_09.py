"""Checks for the capstone's exercises: a second claim, a denied claim, a rejection across a crash.

They read the desk's claims through its shared `claims` handler, the claims agent's invocations through the admin
API, and the payments and emails in the ledger. Run `check.lesson_09.begin(admin)` before the exercises: the checks
then judge only the claims filed after it (a claim is filed when its email is sent), and refuse the lesson's own.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from .._sql import sql_literal
from ..agents.capstone import AGENT, APPROVALS, DESK, EMAIL_KIND
from ..clients import Admin, Ingress
from ..ledger import Effect, Ledger
from . import _core
from ._core import Began, began, call, effects_of, exercise, require, require_served

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]


def begin(admin: Admin) -> Began:
    """Begin the capstone's exercises now (server time): the checks then judge only the claims filed after it."""
    return _core.begin(9, admin)


def _require_none_paused(admin: Admin, targets: dict[str, str]) -> None:
    """Fail if an invocation of these {service: key} is paused: it waits for a resume, not for time."""
    where = " OR ".join(
        f"(target_service_name = {sql_literal(service)} AND target_service_key = {sql_literal(key)})"
        for service, key in targets.items()
    )
    paused = admin.query(f"SELECT id, target_service_name FROM sys_invocation WHERE status = 'paused' AND ({where})")
    require(
        not paused,
        ", ".join(f"{r['target_service_name']} {r['id']}" for r in paused)
        + " is paused: the lesson's retry policy pauses an invocation after about 30 s of failed attempts (e.g. "
        "while desk was killed and not started again), and a paused invocation waits for you",
        "with desk running, resume it: "
        + "; ".join(f"admin.resume({r['id']!r})" for r in paused)
        + "; wait for the turn (await ingress.aattach(turn_id)), then run the check again",
    )


def _claims(ingress: Ingress, admin: Admin, desk: str, conversation: str) -> dict[str, dict[str, Any]]:
    require_served(admin, desk, "the capstone's process is stopped: start it again (desk.start())")
    _require_none_paused(admin, {desk: conversation})
    _, claims = call(ingress, desk, "claims", key=conversation)
    require(
        claims,
        f"the conversation {conversation!r} has no claims filed",
        "talk to the desk under one key: who you are, then what happened, when, and how much",
    )
    return dict(claims)


def _effects(kind: str, claim: str, ledger: Ledger | None) -> list[Effect]:
    return [e for e in effects_of(kind, ledger=ledger) if e.detail.get("claim") == claim]


def _count(kind: str, claim: str, ledger: Ledger | None) -> int:
    return len(_effects(kind, claim, ledger))


def _filed_since_began(claim: str, ledger: Ledger | None) -> bool:
    """Return True if the claim's email (sent when it was filed) was sent after the exercises began."""
    start = began().at.replace(tzinfo=UTC).timestamp()
    return any(e.at >= start for e in _effects(EMAIL_KIND, claim, ledger))


def _customer(claim: str, ledger: Ledger | None) -> str:
    return next((str(e.detail.get("to")) for e in _effects(EMAIL_KIND, claim, ledger)), "")


def _agent_runs(admin: Admin, agent: str, claim: str) -> list[dict[str, Any]]:
    return admin.query(
        "SELECT id FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(agent)} AND target_service_key = {sql_literal(claim)}"
    )


_HOME_AMOUNT = 650.0


@exercise(9, 1)
def exercise_1(
    ingress: Ingress, admin: Admin, conversation: str, *, desk: str = DESK, ledger: Ledger | None = None
) -> str:
    """A second claim (the storm-damaged home, 650 EUR) in the same conversation, each claim paid and emailed once."""
    claims = _claims(ingress, admin, desk, conversation)
    ours = [c for c in claims if _filed_since_began(c, ledger)]
    require(
        ours,
        f"the claims of {conversation!r} ({', '.join(claims)}) were all filed before you began the exercises",
        "file the home claim in this conversation now: 'A storm damaged the roof of my home on 2025-11-02: 650 EUR.'",
    )
    home = [c for c in ours if claims[c]["kind"] == "home" and abs(float(claims[c]["amount"]) - _HOME_AMOUNT) < 0.01]
    filed = {c: f"{claims[c]['kind']} {float(claims[c]['amount']):g} EUR" for c in ours}
    require(
        home,
        f"since you began, the conversation got {filed}, not a home claim of {_HOME_AMOUNT:g} EUR",
        "say it as the exercise does: 'A storm damaged the roof of my home on 2025-11-02: 650 EUR.'",
    )
    require(
        len(claims) >= 2,
        f"the conversation {conversation!r} has only the home claim: the exercise files it beside the car claim",
        "send it to the lesson's conversation (`conversation`), where Ana's car claim is",
    )
    for claim, record in claims.items():
        paid = _count("payment", claim, ledger)
        expected = 1 if record["status"] in ("paid", "approved") else 0
        require(
            paid == expected,
            f"claim {claim} is {record['status']} and has {paid} payment(s), not {expected}",
            "file each claim once, through the desk, and let it finish (decide a pending one from the panel); "
            "the claim's invocations in the Restate UI show where it stands",
        )
        emails = _count(EMAIL_KIND, claim, ledger)
        require(
            emails == 1,
            f"claim {claim} sent {emails} email(s), not 1",
            "file each claim once, through the desk in this conversation, and let it finish",
        )
    _, status = call(ingress, desk, "run", "What is the status of my claims?", key=conversation)
    missing = [c for c in claims if c not in str(status)]
    require(
        not missing,
        f"asked for the status, the desk answered {status!r}, without {missing}",
        "file the claims through the desk in this one conversation (`conversation`): the desk answers from its session",
    )
    return (
        f"the home claim {home[-1]} is {claims[home[-1]]['status']}; the conversation's {len(claims)} claims "
        f"({', '.join(r['status'] for r in claims.values())}) were each paid as decided and emailed once, and the "
        "desk reports them all"
    )


_BEN, _BEN_POLICY = "cust-ben", "POL-1002"


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
    """Ben's claim, denied by the specialists: no payout, no approval request, no claims agent, one email saying why."""
    claims = _claims(ingress, admin, desk, conversation)
    denied = [c for c, r in claims.items() if r["status"] == "denied"]
    require(
        denied,
        f"none of the claims of {conversation!r} was denied: { ({c: r['status'] for c, r in claims.items()}) }",
        f"as {_BEN} (policy {_BEN_POLICY}), claim 800 EUR for luggage lost on a flight on 2025-03-02",
    )
    claim = denied[-1]
    require(
        _filed_since_began(claim, ledger),
        f"the denied claim {claim} was filed before you began the exercises",
        f"start a new conversation as {_BEN} and file the claim now",
    )
    customer = _customer(claim, ledger)
    require(
        customer == _BEN,
        f"the denied claim {claim} is {customer}'s, not {_BEN}'s",
        f"start a new conversation as {_BEN}, policy {_BEN_POLICY}: 'I am {_BEN}, policy {_BEN_POLICY}.'",
    )
    reasons = "; ".join(claims[claim]["reasons"])
    require(
        _BEN_POLICY in reasons,
        f"the denied claim {claim} was not filed on {_BEN_POLICY}: {reasons}",
        f"give the desk Ben's policy, {_BEN_POLICY}",
    )
    stop_early = (
        f"claim as the exercise says, in a new conversation as {_BEN} ({_BEN_POLICY}): the specialists deny it, so "
        "nothing is paid and nobody is asked"
    )
    require(_count("payment", claim, ledger) == 0, f"the denied claim {claim} was paid", stop_early)
    require(not _agent_runs(admin, agent, claim), f"the denied claim {claim} still went to {agent}", stop_early)
    require(
        call(ingress, approvals, "show", key=claim)[1] is None,
        f"the denied claim {claim} waits for an approver",
        stop_early,
    )
    require(
        _count(EMAIL_KIND, claim, ledger) == 1,
        f"the denied claim {claim} was not emailed exactly once",
        "file Ben's claim once, in a new conversation, and let the desk answer",
    )
    return f"{_BEN}'s claim {claim} was denied ({reasons}): nothing paid, nobody asked, one email"


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
    _require_none_paused(admin, {agent: claim})
    claims = _claims(ingress, admin, desk, conversation)
    require(
        claim in claims,
        f"the conversation has no claim {claim!r}: it has {sorted(claims)}",
        "pass the conversation you filed the large claim in, and its claim id (claim_id(conversation))",
    )
    record = claims[claim]
    require(
        _filed_since_began(claim, ledger),
        f"claim {claim} was filed before you began the exercises: it is the lesson's",
        "file a new large claim in a new conversation, now",
    )
    require(
        record["status"] == "rejected",
        f"claim {claim} is {record['status']!r}, not rejected",
        "reject it from the approval panel: await panel.adecide(claim, False, reason)",
    )
    given = str(reason).strip()
    require(
        given and given == str(record["reason"]).strip(),
        f"its reason is {record['reason']!r}, not {reason!r}",
        "pass the reason exactly as you gave it to the panel",
    )
    require(
        _count("payment", claim, ledger) == 0,
        f"the rejected claim {claim} was paid",
        "reject it from the panel, before anyone approves it: await panel.adecide(claim_id(key), False, reason)",
    )
    require(
        _count(EMAIL_KIND, claim, ledger) == 1,
        f"claim {claim} was not emailed exactly once",
        "file the large claim once, in a new conversation, and let it finish",
    )
    runs = _agent_runs(admin, agent, claim)
    require(
        runs, f"{agent} never handled claim {claim}", f"file a large claim through the desk, which hands it to {agent}"
    )
    pids = {e.pid for r in runs for e in effects_of("model_call", invocation_id=r["id"], ledger=ledger)}
    require(
        len(pids) >= 2,
        f"the claims agent handled claim {claim} in one process from start to end: the process was not killed "
        "while the claim waited for its approval",
        "wait until the approval is pending and the turn suspended, then desk.kill(), desk.start(), and only then "
        "reject it",
    )
    return f"claim {claim} rejected ({record['reason']}), across {len(pids)} processes: nothing paid, one email"
