"""The capstone's claims desk: every lesson's piece in one conversation (lesson 09).

``CapstoneClaimDesk/<conversation>/run`` takes the customer's messages, one turn at a time. Its ADK
agent (RestatePlugin + RestateSessionService: lessons 01 and 03) remembers who the customer is and,
once told what happened, calls ``file_claim``, which composes the other course agents:

1. **fan-out** (lesson 05): ``ClaimTriage/triage`` consults the eligibility, fraud and policy
   specialists in parallel with ``restate.gather`` and decides: approve, refer or deny;
2. **approval** (lesson 04): unless denied, the payout goes to ``CapstoneClaimsAgent/<claim>/run``,
   the claims agent of lesson 04 built by `build_claims_services` under its own names: it pays at
   once up to the threshold, and above it waits on an awakeable that
   ``CapstoneClaimApprovals/<claim>/decide`` (what the approval panel's buttons call) resolves;
3. **durable effects** (lesson 02): a confirmation email in a `run_typed` step, recorded in the
   ledger under an idempotency key, so a crash never sends it twice.

``claim_status`` answers later turns from the desk's state. `TARGETS` names every service the
capstone serves, for one `AgentProcess` (lesson 06's control and lesson 02's crash apply to it).

    curl localhost:8080/CapstoneClaimDesk/ana/run --json '"Hi, I am cust-ana, policy POL-1001."'
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message
from .claims import SUSPEND_AFTER, ClaimsPolicy, build_claims_services, parse_duration
from .specialists import require_claim
from .triage import TriageReport, triage

__all__ = [
    "AGENT",
    "APPROVALS",
    "CLAIMS_STATE",
    "DESK",
    "EMAIL_KIND",
    "TARGETS",
    "capstone_approvals",
    "capstone_claims",
    "capstone_policy",
    "claim_id",
    "claim_status",
    "desk_script",
    "desk_service",
    "file_claim",
    "filed_claims",
]

DESK = "CapstoneClaimDesk"
AGENT = "CapstoneClaimsAgent"
APPROVALS = "CapstoneClaimApprovals"
CLAIMS_STATE = "claims"
"""The desk's state value: {claim id: what became of it}."""
EMAIL_KIND = "email"
"""The ledger kind of the confirmation emails."""

TARGETS = [
    f"agent_lib.agents.capstone:{name}" for name in ("desk_service", "capstone_claims", "capstone_approvals")
] + [
    "agent_lib.agents.triage:triage_service",
    "agent_lib.agents.specialists:eligibility_service",
    "agent_lib.agents.specialists:fraud_service",
    "agent_lib.agents.specialists:policy_service",
]
"""Every service the capstone needs, as "module:attribute", to serve in one process (on a private server)."""

capstone_policy = ClaimsPolicy(
    prefix="Capstone",
    threshold=1000.0,
    approval_timeout=parse_duration(os.environ.get("CAPSTONE_APPROVAL_TIMEOUT", "1h")),
    approvers=("maria", "sam"),
)
"""Payouts above 1000 EUR wait for maria or sam, for an hour (`CAPSTONE_APPROVAL_TIMEOUT`), then escalate."""

capstone_claims, capstone_approvals = build_claims_services(capstone_policy)


def claim_id(conversation: str, number: int = 1) -> str:
    """Return the id of the `number`-th claim filed in a conversation, e.g. "ana-7f3a-1"."""
    return f"{conversation}-{number}"


_CUSTOMER = re.compile(r"\b(cust-[\w-]+)")
_POLICY = re.compile(r"\b(POL-\d+)", re.IGNORECASE)
_AMOUNT = re.compile(r"(\d[\d,]*(?:\.\d{1,2})?)\s*(?:EUR|euros?|€)", re.IGNORECASE)
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_KINDS = {
    "car": r"\bcar\b|rear-ended|collision|bumper",
    "home": r"\bhome\b|\bhouse\b|flood|roof|burglary",
    "travel": r"\btravel\b|flight|luggage|\btrip\b",
}
_STATUS = re.compile(r"\bstatus\b|what happened to|where is my claim|any news", re.IGNORECASE)


def _last(pattern: re.Pattern[str], texts: list[str]) -> str | None:
    found = [m.group(1) for t in texts for m in pattern.finditer(t)]
    return found[-1] if found else None


def desk_script(turn: Turn) -> Reply:
    """The offline model's rules: learn who the customer is, file the claim, report on it."""
    if turn.results:
        return " ".join(r.text for r in turn.results)
    if _STATUS.search(turn.text):
        return [Call("claim_status")]
    said = [*turn.history, turn.text]
    customer, policy = _last(_CUSTOMER, said), _last(_POLICY, said)
    amount, date = _AMOUNT.search(turn.text), _DATE.search(turn.text)
    kind = next((k for k, p in _KINDS.items() if re.search(p, turn.text, re.IGNORECASE)), None)
    if amount and date and kind:
        if not customer or not policy:
            return "Before I file it: what is your customer id (cust-...) and your policy number (POL-...)?"
        args = {
            "customer_id": customer,
            "policy_id": policy.upper(),
            "kind": kind,
            "amount": float(amount.group(1).replace(",", "")),
            "incident_date": date.group(1),
            "description": turn.text,
        }
        return [Call("file_claim", args)]
    if customer or policy:
        return (
            f"Thank you. I have your customer id {customer or '(not given)'} and policy {policy or '(not given)'}. "
            "What happened, on which date (YYYY-MM-DD), and how much does it cost?"
        )
    return "I am the claims desk: tell me your customer id and policy number, then what happened."


async def _claims_state(ctx: restate.ObjectContext) -> dict[str, Any]:
    return dict(await ctx.get(CLAIMS_STATE, type_hint=dict) or {})


async def _email(ctx: restate.ObjectContext, claim: str, to: str, text: str) -> None:
    key = f"{DESK}/{claim}/email"
    invocation_id = ctx.request().id

    async def send() -> bool:
        detail = {"to": to, "claim": claim, "body": text}
        return default_ledger().record(EMAIL_KIND, detail, idempotency_key=key, invocation_id=invocation_id)

    await ctx.run_typed("Email customer", send)


def _outcome_text(record: dict[str, Any]) -> str:
    status, payout = record["status"], f"{record['payout']:,.2f} EUR"
    return {
        "paid": f"paid at once: {payout}.",
        "approved": f"approved by {record['approver']}: {payout} will be paid.",
        "rejected": f"rejected by {record['approver']}: {record['reason']}. Nothing is paid.",
        "escalated": f"escalated to the claims team ({record['reason']}). Nothing is paid yet.",
        "denied": f"denied: {'; '.join(record['reasons'])}. Nothing is paid.",
    }.get(status, f"{status}.")


async def file_claim(
    customer_id: str, policy_id: str, kind: str, amount: float, incident_date: str, description: str
) -> str:
    """File an insurance claim: the specialists check it, a claims manager approves large payouts, then it is paid.

    Args:
        customer_id: The customer's id, e.g. "cust-ana".
        policy_id: The policy number, e.g. "POL-1001".
        kind: What the claim is about: "car", "home" or "travel".
        amount: The amount claimed, in EUR.
        incident_date: The date of the incident, YYYY-MM-DD.
        description: What happened, in the customer's words.
    """
    ctx = restate_object_context()
    claims = await _claims_state(ctx)
    number = claim_id(ctx.key(), len(claims) + 1)
    data = {
        "claim_id": number,
        "customer_id": customer_id,
        "policy_id": policy_id,
        "kind": kind,
        "amount": amount,
        "incident_date": incident_date,
        "description": description,
    }
    try:
        claim = require_claim(data).model_dump(mode="json")
    except restate.TerminalError as err:
        return f"error: the claim cannot be filed: {err.message}"
    answer = await ctx.service_call(triage, arg=claim)
    report = answer if isinstance(answer, TriageReport) else TriageReport.model_validate(answer)
    decision = report.decision
    record: dict[str, Any] = {
        "claim_id": number,
        "kind": kind,
        "amount": amount,
        "decision": decision.outcome,
        "reasons": decision.reasons,
        "payout": decision.payout,
        "approver": None,
        "reason": "",
    }
    if decision.outcome == "deny":
        record.update(status="denied", payout=0.0)
    else:
        body = {"customer": customer_id, "amount": round(decision.payout, 2), "description": f"{kind}: {description}"}
        raw = await ctx.generic_call(AGENT, "run", json.dumps(body).encode(), key=number)
        outcome = json.loads(raw)
        record.update(status=outcome["status"], approver=outcome.get("approver"), reason=outcome.get("reason", ""))
    text = f"Claim {number}: " + _outcome_text(record)
    await _email(ctx, number, customer_id, text)
    ctx.set(CLAIMS_STATE, {**claims, number: record})
    return text


async def claim_status() -> str:
    """Tell the customer what became of each claim they filed in this conversation."""
    claims = await _claims_state(restate_object_context())
    if not claims:
        return "You have not filed a claim with me yet."
    return " ".join(f"Claim {c}: " + _outcome_text(r) for c, r in claims.items())


INSTRUCTION = """You are an insurance claims desk. Learn the customer's id (cust-...) and policy number (POL-...).
When they tell you what happened, when (a date) and how much it costs, call file_claim once with those details
and tell them the outcome it returns. When they ask about their claims, call claim_status. Never invent outcomes."""

desk_agent = Agent(
    model=default_model(desk_script, name="claim_desk_agent"),
    name="claim_desk_agent",
    instruction=INSTRUCTION,
    tools=[file_claim, claim_status],
)
_runner = Runner(
    app=App(name="claim_desk", root_agent=desk_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)

desk_service = restate.VirtualObject(DESK)


@desk_service.handler(
    input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY, inactivity_timeout=SUSPEND_AFTER
)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Answer one message of the conversation named by this object's key."""
    text = require_message(message)
    reply = None
    async for event in _runner.run_async(user_id=ctx.key(), session_id="desk", new_message=user_message(text)):
        reply = final_text(event) or reply
    return reply


@desk_service.handler(name="claims", kind="shared")
async def filed_claims(ctx: restate.ObjectSharedContext) -> dict[str, Any]:
    """Return what became of each claim filed in this conversation (readable while a turn runs)."""
    return dict(await ctx.get(CLAIMS_STATE, type_hint=dict) or {})
