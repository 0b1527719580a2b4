"""Claims triage: an orchestrator that consults the specialists in parallel (lesson 05).

`ClaimTriage` is a service. Its `triage` handler calls the three specialists durably and at the same
time, `EligibilityAgent` and `FraudAgent` with `ctx.object_call` and explicit keys, `PolicyAgent` with
`ctx.service_call`, waits for all of them with `restate.gather`, and combines their verdicts into a
decision with plain code (`decide`). `triage_one_by_one` makes the same calls one after another, to
compare.

`ToolCallTriage` is the other way to try it: one ADK agent whose model asks for the three checks as
three tool calls at once. `RestatePlugin` runs those one at a time, so it takes the sum of their times.

    curl localhost:8080/ClaimTriage/triage --json '{"claim_id": "c-1", "customer_id": "cust-ana", ...}'
"""

from __future__ import annotations

from typing import Any, Literal

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from pydantic import BaseModel
from restate.ext.adk import RestatePlugin, RestateSessionService

from ..models import default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY
from .specialists import (
    SPECIALISTS,
    Claim,
    Verdict,
    check_eligibility,
    check_fraud,
    check_policy,
    consult,
    eligibility_check,
    fraud_check,
    policy_check,
    require_claim,
    specialist_script,
)

__all__ = [
    "Decision",
    "TriageReport",
    "decide",
    "tool_call_triage",
    "tool_triage_agent",
    "triage",
    "triage_one_by_one",
    "triage_service",
]


class Decision(BaseModel):
    """What happens to a claim: approve, refer to a person, or deny; the payout; and why."""

    outcome: Literal["approve", "refer", "deny"]
    payout: float
    reasons: list[str]


class TriageReport(BaseModel):
    """A triaged claim: the decision, and each specialist's verdict."""

    claim_id: str
    decision: Decision
    verdicts: list[Verdict]


def decide(verdicts: list[Verdict]) -> Decision:
    """Combine the verdicts: any fail denies, else any review refers to a person, else approve."""
    by_name = {v.specialist: v for v in verdicts}
    missing = [s for s in SPECIALISTS if s not in by_name]
    if missing:
        raise ValueError(f"a decision needs a verdict from every specialist; missing: {missing}")
    ordered = [by_name[s] for s in SPECIALISTS]
    payout = by_name["policy"].payout or 0.0
    failed = [v for v in ordered if v.verdict == "fail"]
    if failed:
        return Decision(outcome="deny", payout=0.0, reasons=[f"{v.specialist}: {v.reason}" for v in failed])
    flagged = [v for v in ordered if v.verdict == "review"]
    if flagged:
        return Decision(outcome="refer", payout=payout, reasons=[f"{v.specialist}: {v.reason}" for v in flagged])
    return Decision(outcome="approve", payout=payout, reasons=[f"{v.specialist}: {v.reason}" for v in ordered])


def _report(claim: Claim, verdicts: list[Verdict]) -> TriageReport:
    return TriageReport(claim_id=claim.claim_id, decision=decide(verdicts), verdicts=verdicts)


triage_service = restate.Service("ClaimTriage")


@triage_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def triage(ctx: restate.Context, claim: dict[str, Any]) -> TriageReport:
    """Consult the three specialists in parallel and decide."""
    c = require_claim(claim)
    body = c.model_dump(mode="json")
    eligibility = ctx.object_call(eligibility_check, key=c.policy_id, arg=body)
    fraud = ctx.object_call(fraud_check, key=c.customer_id, arg=body)
    policy = ctx.service_call(policy_check, arg=body)
    await restate.gather(eligibility, fraud, policy)
    return _report(c, [await eligibility, await fraud, await policy])


@triage_service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def triage_one_by_one(ctx: restate.Context, claim: dict[str, Any]) -> TriageReport:
    """Consult the three specialists one after another (slower: for comparison) and decide."""
    c = require_claim(claim)
    body = c.model_dump(mode="json")
    eligibility = await ctx.object_call(eligibility_check, key=c.policy_id, arg=body)
    fraud = await ctx.object_call(fraud_check, key=c.customer_id, arg=body)
    policy = await ctx.service_call(policy_check, arg=body)
    return _report(c, [eligibility, fraud, policy])


_TOOLS = [check_eligibility, check_fraud, check_policy]

tool_triage_agent = Agent(
    model=default_model(specialist_script(*(t.__name__ for t in _TOOLS)), name="tool_triage_agent"),
    name="tool_triage_agent",
    instruction=(
        "You triage insurance claims. Call check_eligibility, check_fraud and check_policy, all three at once, "
        "then summarise their verdicts in one sentence each."
    ),
    tools=list(_TOOLS),
)
_tool_triage_runner = Runner(
    app=App(name="tool_triage", root_agent=tool_triage_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)

tool_call_triage = restate.VirtualObject("ToolCallTriage")


@tool_call_triage.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, claim: dict[str, Any]) -> TriageReport:
    """Let one agent call the three checks as tools (RestatePlugin runs them one at a time); the key is the claim id."""
    c = require_claim(claim)
    if ctx.key() != c.claim_id:
        raise restate.TerminalError(
            f"call ToolCallTriage with the claim id as the key: /ToolCallTriage/{c.claim_id}/run", status_code=400
        )
    findings, note = await consult(
        _tool_triage_runner,
        c,
        user_id=ctx.key(),
        session_id="triage",
        prompt=f"Triage this claim: {c.model_dump_json()}",
        specialists=SPECIALISTS,
    )
    verdicts = [Verdict(specialist=s, note=note, **findings[s].model_dump()) for s in SPECIALISTS]
    return _report(c, verdicts)
