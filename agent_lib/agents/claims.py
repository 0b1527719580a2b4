"""A claims agent that asks a human before paying a large claim: lesson 04 and the capstone.

Two Restate virtual objects, both keyed by the claim id:

- ``ClaimsAgent/<claim>/run`` takes a claim ``{"customer", "amount", "description"}`` (and an
  optional ``"currency"``), lets an ADK agent submit it and answer the customer, and returns
  the outcome: paid (at or below the threshold), approved, rejected or escalated (no decision
  in time).
- ``ClaimApprovals/<claim>/decide`` takes ``{"approver", "approve", "reason"}``. It checks the
  approver against the allow-list *before* it resolves or rejects the agent's awakeable.

Above the threshold the ``submit_claim`` tool creates an awakeable, files the pending request
(who, how much, why, and the awakeable id) with ``ClaimApprovals``, and waits for the first of
the decision or a durable timer. The awakeable id never reaches the model or the customer:
the tool answers the model with a neutral status.

Settings come from the environment when the module is imported, so a lesson can run its own
copy beside the finished one: ``CLAIMS_SERVICE_PREFIX`` (e.g. "Lesson04" serves
"Lesson04ClaimsAgent" and "Lesson04ClaimApprovals"), ``CLAIMS_APPROVAL_THRESHOLD`` (1000),
``CLAIMS_APPROVAL_TIMEOUT`` ("24h"; "90s", "5m" or plain seconds) and ``CLAIMS_APPROVERS``
("maria,sam").

    curl localhost:8080/ClaimsAgent/claim-1/run --json '{"customer": "Alice", "amount": 1800, "description": "hotel"}'
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from .._modes import suspend_after
from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_json, user_message

__all__ = [
    "MAX_CLAIM_AMOUNT",
    "SUSPEND_AFTER",
    "ClaimsPolicy",
    "approvals_service",
    "build_claims_services",
    "claim_message",
    "claims_script",
    "claims_service",
    "parse_duration",
    "policy",
    "public_request",
    "validate_claim",
    "validate_decision",
]

MAX_CLAIM_AMOUNT = 1_000_000.0
"""Claims above this are refused as input errors (400): no expense claim is that large."""

SUSPEND_AFTER = suspend_after(2)
"""How long an idle claim invocation holds its connection before it suspends (the server's default is 60s).

0 in the always-replay mode (`make test-replay`): there it suspends at every await.
"""

_MAX_TEXT = 2_000
_APPROVER = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """Read a duration like "90", "90s", "5m", "24h" or "1d" (plain numbers are seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 5m, 24h (a plain number means seconds)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


@dataclass(frozen=True)
class ClaimsPolicy:
    """Who may approve, above which amount, and how long a request waits before it escalates."""

    threshold: float = 1000.0
    approval_timeout: timedelta = timedelta(hours=24)
    approvers: tuple[str, ...] = ("maria", "sam")
    currency: str = "EUR"
    prefix: str = field(default="")

    @classmethod
    def from_env(cls) -> ClaimsPolicy:
        """Read the policy from CLAIMS_* environment variables, with the defaults above."""
        env = os.environ
        approvers = tuple(a.strip() for a in env.get("CLAIMS_APPROVERS", "maria,sam").split(",") if a.strip())
        bad = [a for a in approvers if not _APPROVER.match(a)]
        if bad or not approvers:
            raise ValueError(f"CLAIMS_APPROVERS must be comma-separated lowercase names, e.g. maria,sam; got {bad}")
        return cls(
            threshold=float(env.get("CLAIMS_APPROVAL_THRESHOLD", "1000")),
            approval_timeout=parse_duration(env.get("CLAIMS_APPROVAL_TIMEOUT", "24h")),
            approvers=approvers,
            prefix=env.get("CLAIMS_SERVICE_PREFIX", ""),
        )

    @property
    def agent_name(self) -> str:
        """The claims agent's service name."""
        return f"{self.prefix}ClaimsAgent"

    @property
    def approvals_name(self) -> str:
        """The approvals service's name."""
        return f"{self.prefix}ClaimApprovals"


def _text(value: Any, name: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise restate.TerminalError(f'the claim needs a non-empty "{name}" string, e.g. "{example}"', status_code=400)
    if len(value) > _MAX_TEXT:
        raise restate.TerminalError(f'"{name}" has {len(value)} characters; the limit is {_MAX_TEXT}', status_code=400)
    return value.strip()


def validate_claim(claim: Any, currency: str = "EUR") -> dict[str, Any]:
    """Return a clean claim {customer, amount, currency, description}, or raise a 400 TerminalError."""
    example = '{"customer": "Alice", "amount": 1800, "description": "hotel, 5 nights"}'
    if not isinstance(claim, dict):
        raise restate.TerminalError(f"a claim is a JSON object like {example}", status_code=400)
    unknown = sorted(set(claim) - {"customer", "amount", "currency", "description"})
    if unknown:
        raise restate.TerminalError(f"unknown claim fields {unknown}; a claim looks like {example}", status_code=400)
    amount = claim.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        raise restate.TerminalError(f'"amount" must be a number, e.g. 1800 or 249.90, not {amount!r}', status_code=400)
    if amount <= 0:
        raise restate.TerminalError(f'"amount" must be positive, not {amount}', status_code=400)
    if amount > MAX_CLAIM_AMOUNT:
        raise restate.TerminalError(
            f'"amount" {amount} is above the largest claim accepted ({MAX_CLAIM_AMOUNT:,.0f})', status_code=400
        )
    if round(amount, 2) != amount:
        raise restate.TerminalError(f'"amount" {amount} has more than two decimal places', status_code=400)
    code = claim.get("currency", currency)
    if not isinstance(code, str) or not _CURRENCY.match(code):
        raise restate.TerminalError(f'"currency" must be a three-letter code like "EUR", not {code!r}', status_code=400)
    return {
        "customer": _text(claim.get("customer"), "customer", "Alice"),
        "amount": float(amount),
        "currency": code,
        "description": _text(claim.get("description"), "description", "hotel, 5 nights"),
    }


def validate_decision(decision: Any) -> tuple[str, bool, str]:
    """Return (approver, approve, reason) from a decision, or raise a 400 TerminalError."""
    example = '{"approver": "maria", "approve": true, "reason": "receipts checked"}'
    if not isinstance(decision, dict):
        raise restate.TerminalError(f"a decision is a JSON object like {example}", status_code=400)
    approver, approve, reason = decision.get("approver"), decision.get("approve"), decision.get("reason", "")
    if not isinstance(approver, str) or not approver.strip():
        raise restate.TerminalError(f'say who decides in "approver", e.g. {example}', status_code=400)
    if not isinstance(approve, bool):
        raise restate.TerminalError(f'"approve" must be true or false, e.g. {example}', status_code=400)
    if not isinstance(reason, str) or len(reason) > _MAX_TEXT:
        raise restate.TerminalError(f'"reason" must be a string of at most {_MAX_TEXT} characters', status_code=400)
    if not approve and not reason.strip():
        raise restate.TerminalError("a rejection needs a reason the customer can act on", status_code=400)
    return approver.strip().lower(), approve, reason.strip()


def claim_message(claim: dict[str, Any]) -> str:
    """Write a validated claim as the customer's message to the agent."""
    amount = f"{claim['amount']:.2f} {claim['currency']}"
    return f"I am {claim['customer']}. Please reimburse {amount}: {claim['description']}"


def public_request(pending: dict[str, Any]) -> dict[str, Any]:
    """Return a pending request without its awakeable id: what approvers and panels may see."""
    return {k: v for k, v in pending.items() if k != "awakeable_id"}


def claims_script(turn: Turn) -> Reply:
    """The offline model's rules: submit the claim, then tell the customer the outcome."""
    if turn.results:
        status, _, detail = turn.results[-1].text.partition(": ")
        replies = {
            "paid": "Good news: your claim was paid. ",
            "approved": "Good news: a claims manager approved your claim and it is being paid. ",
            "rejected": "I am sorry: a claims manager rejected your claim. ",
            "escalated": "Your claim needs more time: it went to the claims team, who will contact you. ",
        }
        return replies.get(status, "Here is the status of your claim: ") + detail[:1].upper() + detail[1:]
    if re.search(r"reimburse|claim|refund|expense", turn.text, re.IGNORECASE):
        return [Call("submit_claim")]
    return "I handle expense claims: tell me how much to reimburse and what it was for."


INSTRUCTION = """You are a claims assistant for a company's expense reimbursements.
When the customer asks for a reimbursement, call submit_claim exactly once: it submits the claim
the customer filed and waits for its outcome. Then tell the customer the outcome in one or two
friendly sentences. Never promise a payment that submit_claim did not confirm."""


def build_claims_services(policy: ClaimsPolicy) -> tuple[restate.VirtualObject, restate.VirtualObject]:
    """Build the claims agent and its approvals service, named and configured by `policy`."""
    approvals = restate.VirtualObject(policy.approvals_name)
    claims = restate.VirtualObject(policy.agent_name)

    @approvals.handler(ingress_private=True)
    async def request(ctx: restate.ObjectContext, pending: dict[str, Any]) -> None:
        """File a pending approval request (called by the claims agent only)."""
        ctx.set("pending", pending)

    @approvals.handler(ingress_private=True)
    async def expire(ctx: restate.ObjectContext, note: str) -> None:
        """Drop the pending request after its timeout (called by the claims agent only)."""
        pending = await ctx.get("pending", type_hint=dict)
        if pending is not None:
            ctx.clear("pending")
            ctx.set("decision", {**public_request(pending), "decision": "escalated", "approver": None, "reason": note})

    @approvals.handler(kind="shared")
    async def show(ctx: restate.ObjectSharedContext) -> dict[str, Any] | None:
        """Return the pending request (without its awakeable id), or None."""
        pending = await ctx.get("pending", type_hint=dict)
        return None if pending is None else public_request(pending)

    @approvals.handler(input_serde=JSON_INPUT)
    async def decide(ctx: restate.ObjectContext, decision: dict[str, Any]) -> dict[str, Any]:
        """Approve or reject this claim's pending request, if the approver is allowed to."""
        approver, approve, reason = validate_decision(require_json(decision))
        if approver not in policy.approvers:
            raise restate.TerminalError(
                f"{approver!r} is not allowed to approve claims (allowed: {', '.join(policy.approvers)}): "
                f"this decision changed nothing; ask one of them to decide claim {ctx.key()!r}",
                status_code=403,
            )
        pending = await ctx.get("pending", type_hint=dict)
        if pending is None:
            raise restate.TerminalError(
                f"claim {ctx.key()!r} has no pending approval: it was decided already, it timed out, "
                "or it never needed one",
                status_code=404,
            )
        if approve:
            ctx.resolve_awakeable(pending["awakeable_id"], {"approver": approver, "reason": reason})
        else:
            ctx.reject_awakeable(pending["awakeable_id"], f"{approver}: {reason}", 403)
        ctx.clear("pending")
        record = {
            **public_request(pending),
            "decision": "approved" if approve else "rejected",
            "approver": approver,
            "reason": reason,
        }
        ctx.set("decision", record)
        return record

    async def pay(claim: dict[str, Any]) -> None:
        ctx = restate_object_context()
        key = f"{policy.agent_name}/{ctx.key()}/payment"

        async def book_payment() -> bool:
            return default_ledger().record(
                "payment", {**claim, "claim": ctx.key()}, idempotency_key=key, invocation_id=ctx.request().id
            )

        await ctx.run_typed("Pay claim", book_payment)

    async def ask_for_approval(claim: dict[str, Any]) -> dict[str, Any]:
        ctx = restate_object_context()
        approval_id, approval = ctx.awakeable(type_hint=dict)
        pending = {**claim, "claim": ctx.key(), "invocation_id": ctx.request().id, "awakeable_id": approval_id}
        await ctx.object_call(request, key=ctx.key(), arg=pending)
        waited = policy.approval_timeout.total_seconds()
        try:
            which, decision = await restate.select(
                approval=approval, timeout=ctx.sleep(policy.approval_timeout, name="Approval deadline")
            )
        except restate.TerminalError as rejection:
            approver, _, reason = rejection.message.partition(": ")
            return {"status": "rejected", "approver": approver, "reason": reason}
        if which == "timeout":
            note = f"no approver decided within {waited:g} seconds"
            ctx.object_send(expire, key=ctx.key(), arg=note)
            return {"status": "escalated", "approver": None, "reason": note}
        await pay(claim)
        return {"status": "approved", "approver": decision["approver"], "reason": decision["reason"]}

    async def submit_claim() -> str:
        """Submit the customer's claim for reimbursement and wait for its outcome.

        Claims above the approval threshold wait for a claims manager. Returns the outcome:
        paid, approved, rejected or escalated, with details for the customer.
        """
        ctx = restate_object_context()
        claim = await ctx.get("claim", type_hint=dict)
        if claim is None:
            return "error: there is no claim to submit"
        outcome = await ctx.get("outcome", type_hint=dict)
        if outcome is None:
            if claim["amount"] <= policy.threshold:
                await pay(claim)
                outcome = {"status": "paid", "approver": None, "reason": "at or below the approval threshold"}
            else:
                outcome = await ask_for_approval(claim)
            ctx.set("outcome", outcome)
        amount = f"{claim['amount']:.2f} {claim['currency']}"
        return {
            "paid": f"paid: {amount} was paid at once (small claims need no approval).",
            "approved": f"approved: {amount} will be paid (note from the approver: {outcome['reason'] or 'none'}).",
            "rejected": f"rejected: nothing is paid. The reason: {outcome['reason']}.",
            "escalated": f"escalated: nothing is paid yet; {outcome['reason']}.",
        }[outcome["status"]]

    agent = Agent(
        model=default_model(claims_script, name="claims_agent"),
        name="claims_agent",
        instruction=INSTRUCTION,
        tools=[submit_claim],
    )
    runner = Runner(
        app=App(name="claims", root_agent=agent, plugins=[RestatePlugin()]),
        session_service=RestateSessionService(),
    )

    @claims.handler(
        input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY, inactivity_timeout=SUSPEND_AFTER
    )
    async def run(ctx: restate.ObjectContext, claim: dict[str, Any]) -> dict[str, Any]:
        """Process the claim filed under this object's key; return its outcome and the reply."""
        checked = validate_claim(require_json(claim), policy.currency)
        if await ctx.get("outcome", type_hint=dict) is not None:
            raise restate.TerminalError(
                f"claim {ctx.key()!r} was already processed: file a new claim under a new id", status_code=409
            )
        ctx.set("claim", checked)
        reply = None
        async for event in runner.run_async(
            user_id=ctx.key(), session_id="claim", new_message=user_message(claim_message(checked))
        ):
            reply = final_text(event) or reply
        outcome = await ctx.get("outcome", type_hint=dict) or {
            "status": "not submitted",
            "approver": None,
            "reason": "the agent did not submit the claim",
        }
        return {"claim": ctx.key(), **checked, **outcome, "reply": reply}

    return claims, approvals


policy = ClaimsPolicy.from_env()
"""The policy this process serves, read from the environment at import."""

claims_service, approvals_service = build_claims_services(policy)
