"""Claims specialists: eligibility, fraud and policy agents, each its own Restate service (lesson 05).

Each specialist is an ADK `LlmAgent` with one tool, run by `RestatePlugin` inside a handler:

- `EligibilityAgent`, a virtual object keyed by the claim's `policy_id`: was the policy active, and is
  the claimant its holder?
- `FraudAgent`, a virtual object keyed by the claim's `customer_id` (one customer's claims are checked
  one at a time, in order): is anything unusual?
- `PolicyAgent`, a stateless service: does the policy cover this kind of claim, and what would it pay?

Each tool runs one durable step (`run_typed`) that takes a configurable time (`SPECIALIST_SECONDS`, e.g.
"eligibility=1,fraud=2,policy=1.5"), can be stopped at a gate (`check_gate`, see agent_lib.gates), and records in the
ledger that it ran (kind "specialist_check"), so a lesson can time the checks and count them.

    curl localhost:8080/PolicyAgent/check --json '{"claim_id": "c-1", "customer_id": "cust-ana", ...}'
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import Any, Literal

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from google.adk.sessions import InMemorySessionService
from google.adk.tools.tool_context import ToolContext
from pydantic import BaseModel, Field, ValidationError
from restate.ext.adk import RestatePlugin, RestateSessionService
from restate.extensions import current_context

from ..gates import Gate, hit
from ..ledger import Ledger, default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_json, user_message

__all__ = [
    "CHECK_KIND",
    "CLAIM_STATE_KEY",
    "DEFAULT_SECONDS",
    "POLICIES",
    "SPECIALISTS",
    "TOOLS",
    "CheckTime",
    "all_overlap",
    "Claim",
    "Finding",
    "Policy",
    "Verdict",
    "check_eligibility",
    "check_fraud",
    "check_policy",
    "check_timeline",
    "check_times",
    "checks_run",
    "consult",
    "eligibility_check",
    "eligibility_service",
    "evaluate",
    "fraud_check",
    "fraud_service",
    "check_gate",
    "one_at_a_time",
    "policy_check",
    "policy_service",
    "require_claim",
    "sample_claim",
    "seconds_env",
    "specialist_script",
    "specialist_seconds",
    "wait_for_checks",
]

SPECIALISTS = ("eligibility", "fraud", "policy")
CHECK_KIND = "specialist_check"
"""The ledger kind each check records when it runs."""
CLAIM_STATE_KEY = "claim"
"""Where the claim lives in the ADK session state, for the tools to read."""
DEFAULT_SECONDS: dict[str, float] = {"eligibility": 0.5, "fraud": 1.0, "policy": 0.75}
"""How long each check takes unless `SPECIALIST_SECONDS` says otherwise."""


# --- the claim and what the specialists say about it -------------------------------------------


class Claim(BaseModel):
    """An insurance claim, as the specialists read it."""

    claim_id: str = Field(min_length=1, max_length=100)
    customer_id: str = Field(min_length=1, max_length=100)
    policy_id: str = Field(min_length=1, max_length=100)
    kind: str = Field(min_length=1, max_length=40, description="car, home, travel, ...")
    amount: float = Field(gt=0)
    incident_date: date
    description: str = Field(default="", max_length=4000)


class Finding(BaseModel):
    """What one check found: pass, review (a person should look) or fail, and why."""

    verdict: Literal["pass", "review", "fail"]
    reason: str
    payout: float | None = None


class Verdict(Finding):
    """A specialist's finding, with its name and the agent's own words about it."""

    specialist: str
    note: str = ""


class Policy(BaseModel):
    """An insurance policy in the specialists' small, fixed book of policies."""

    holder: str
    start: date
    end: date
    covers: tuple[str, ...]
    limit: float
    deductible: float


POLICIES: dict[str, Policy] = {
    "POL-1001": Policy(
        holder="cust-ana",
        start=date(2025, 1, 1),
        end=date(2026, 12, 31),
        covers=("car", "home"),
        limit=20_000,
        deductible=500,
    ),
    "POL-1002": Policy(
        holder="cust-ben",
        start=date(2024, 1, 1),
        end=date(2024, 12, 31),
        covers=("travel",),
        limit=3_000,
        deductible=100,
    ),
    "POL-1003": Policy(
        holder="cust-chen",
        start=date(2025, 6, 1),
        end=date(2027, 5, 31),
        covers=("home", "travel"),
        limit=50_000,
        deductible=1_000,
    ),
}

_SAMPLE: dict[str, Any] = {
    "customer_id": "cust-ana",
    "policy_id": "POL-1001",
    "kind": "car",
    "amount": 2_400.0,
    "incident_date": "2025-09-14",
    "description": "Rear-ended at a red light; the other driver's insurer has the police report.",
}


def sample_claim(claim_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """Return a valid claim as JSON-ready data (a fresh claim id unless given), with `changes` applied."""
    return {"claim_id": claim_id or f"claim-{uuid.uuid4().hex[:8]}", **_SAMPLE, **changes}


def require_claim(data: Any) -> Claim:
    """Return `data` as a Claim; otherwise raise a 400 TerminalError that says what is wrong."""
    require_json(data)
    if not isinstance(data, Mapping):
        raise restate.TerminalError(
            f"the claim must be a JSON object like {sample_claim('c-1')}, not {type(data).__name__}",
            status_code=400,
        )
    try:
        return Claim.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'claim'}: {e['msg']}" for e in err.errors())
        raise restate.TerminalError(f"the claim is not valid ({problems})", status_code=400) from None


# --- the rules each check applies ------------------------------------------------------------


def _eligibility(claim: Claim) -> Finding:
    policy = POLICIES.get(claim.policy_id)
    if policy is None:
        return Finding(verdict="fail", reason=f"there is no policy {claim.policy_id}")
    if policy.holder != claim.customer_id:
        return Finding(verdict="fail", reason=f"{claim.customer_id} does not hold policy {claim.policy_id}")
    if not policy.start <= claim.incident_date <= policy.end:
        return Finding(verdict="fail", reason=f"policy {claim.policy_id} was not active on {claim.incident_date}")
    return Finding(verdict="pass", reason=f"policy {claim.policy_id} was active on {claim.incident_date}")


_FRAUD_SIGNS = ("cash only", "no receipt", "no witnesses", "urgent payment")
_REVIEW_ABOVE = 10_000.0


def _fraud(claim: Claim) -> Finding:
    signs = [s for s in _FRAUD_SIGNS if s in claim.description.lower()]
    if signs:
        return Finding(verdict="review", reason="the description mentions " + ", ".join(repr(s) for s in signs))
    if claim.amount > _REVIEW_ABOVE:
        return Finding(verdict="review", reason=f"claims over {_REVIEW_ABOVE:,.0f} are reviewed by a person")
    return Finding(verdict="pass", reason="nothing unusual")


def _policy(claim: Claim) -> Finding:
    policy = POLICIES.get(claim.policy_id)
    if policy is None:
        return Finding(verdict="fail", reason=f"there is no policy {claim.policy_id}")
    if claim.kind not in policy.covers:
        return Finding(verdict="fail", reason=f"policy {claim.policy_id} does not cover {claim.kind} claims")
    payout = min(claim.amount - policy.deductible, policy.limit)
    if payout <= 0:
        return Finding(verdict="fail", reason=f"the amount is below the {policy.deductible:,.0f} deductible")
    reason = f"covered: pays {payout:,.2f} after the {policy.deductible:,.0f} deductible"
    return Finding(verdict="pass", payout=payout, reason=reason)


_RULES: dict[str, Callable[[Claim], Finding]] = {"eligibility": _eligibility, "fraud": _fraud, "policy": _policy}


def evaluate(specialist: str, claim: Claim) -> Finding:
    """Apply one specialist's rules to a claim, at once (no delay, no gate, no ledger)."""
    return _RULES[specialist](claim)


# --- timing, gates and the ledger ------------------------------------------------------------


def specialist_seconds(specialist: str) -> float:
    """Return how long `specialist`'s check takes: from `SPECIALIST_SECONDS`, else `DEFAULT_SECONDS`."""
    seconds = dict(DEFAULT_SECONDS)
    for item in filter(None, (part.strip() for part in os.environ.get("SPECIALIST_SECONDS", "").split(","))):
        name, _, value = (s.strip() for s in item.partition("="))
        try:
            seconds[name] = float(value)
        except ValueError:
            seconds[name] = -1.0
        if name not in SPECIALISTS or not seconds[name] >= 0:
            raise ValueError(
                f"SPECIALIST_SECONDS has {item!r}: write it like 'eligibility=1,fraud=2,policy=1.5' "
                f"(names: {', '.join(SPECIALISTS)}; seconds >= 0)"
            )
    return seconds[specialist]


def seconds_env(**seconds: float) -> dict[str, str]:
    """Return the environment that makes the checks take these times, e.g. seconds_env(fraud=2.0)."""
    unknown = set(seconds) - set(SPECIALISTS)
    if unknown:
        raise ValueError(f"no specialist named {sorted(unknown)}: the specialists are {', '.join(SPECIALISTS)}")
    return {"SPECIALIST_SECONDS": ",".join(f"{name}={value:g}" for name, value in seconds.items())}


def check_gate(specialist: str) -> Gate:
    """Return the gate at the start of `specialist`'s check (hook point "specialists.<name>.check")."""
    if specialist not in SPECIALISTS:
        raise ValueError(f"no specialist named {specialist!r}: the specialists are {', '.join(SPECIALISTS)}")
    return Gate(f"specialists.{specialist}.check")


def _restate_context() -> restate.Context | None:
    try:
        return current_context()
    except LookupError:
        return None


def _invocation_id() -> str | None:
    ctx = _restate_context()
    return ctx.request().id if ctx is not None else None


async def _work(specialist: str, claim: Claim) -> dict[str, Any]:
    await hit(f"specialists.{specialist}.check", claim_id=claim.claim_id, invocation_id=_invocation_id())
    started = time.time()
    seconds = specialist_seconds(specialist)
    await asyncio.sleep(seconds)
    finding = evaluate(specialist, claim)
    default_ledger().record(
        CHECK_KIND,
        {"specialist": specialist, "claim_id": claim.claim_id, "started": started, "seconds": seconds},
        invocation_id=_invocation_id(),
    )
    return finding.model_dump()


_STEP_NAMES = {"eligibility": "Check eligibility", "fraud": "Check fraud", "policy": "Check policy"}


async def _check(specialist: str, claim: Claim) -> dict[str, Any]:
    ctx = _restate_context()
    if ctx is None:
        return await _work(specialist, claim)
    return await ctx.run_typed(_STEP_NAMES[specialist], _work, restate.RunOptions(), specialist, claim)


class CheckTime(BaseModel):
    """When one check ran, read from the ledger."""

    specialist: str
    started: float
    finished: float


def check_times(claim_id: str, ledger: Ledger | None = None) -> list[CheckTime]:
    """Return when each check of `claim_id` ran, in the order they finished."""
    effects = (ledger or default_ledger()).effects(CHECK_KIND)
    return [
        CheckTime(specialist=e.detail["specialist"], started=e.detail["started"], finished=e.at)
        for e in effects
        if e.detail.get("claim_id") == claim_id
    ]


def checks_run(claim_id: str, ledger: Ledger | None = None) -> dict[str, int]:
    """Count how many times each specialist's check of `claim_id` ran, e.g. {"fraud": 1, ...}."""
    return dict(Counter(t.specialist for t in check_times(claim_id, ledger)))


def check_timeline(claim_id: str, ledger: Ledger | None = None) -> list[dict[str, Any]]:
    """Return each check of `claim_id` as {check, start_s, end_s}, in seconds from the first start."""
    times = check_times(claim_id, ledger)
    t0 = min((t.started for t in times), default=0.0)
    return [
        {"check": t.specialist, "start_s": round(t.started - t0, 2), "end_s": round(t.finished - t0, 2)}
        for t in sorted(times, key=lambda t: t.started)
    ]


def all_overlap(times: Sequence[CheckTime]) -> bool:
    """Return True if all the checks were running at one same moment (they ran in parallel)."""
    return len(times) > 1 and max(t.started for t in times) < min(t.finished for t in times)


def one_at_a_time(times: Sequence[CheckTime]) -> bool:
    """Return True if each check started only after the one before it had finished."""
    ordered = sorted(times, key=lambda t: t.started)
    return all(b.started >= a.finished for a, b in pairwise(ordered))


def wait_for_checks(
    claim_id: str, specialists: Sequence[str] = SPECIALISTS, *, timeout: float = 120.0, ledger: Ledger | None = None
) -> dict[str, int]:
    """Wait until each of `specialists` has checked `claim_id` at least once; return the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = checks_run(claim_id, ledger)
        if all(counts.get(s, 0) >= 1 for s in specialists):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"after {timeout:.0f}s only {counts or 'no checks'} of claim {claim_id} ran, waiting for "
                f"{list(specialists)}: is the specialists' process running, or a check held at its gate?"
            )
        time.sleep(0.05)


# --- the tools (ADK reads their docstrings) --------------------------------------------------


def _claim_of(tool_context: ToolContext) -> Claim:
    return Claim.model_validate(tool_context.state[CLAIM_STATE_KEY])


async def check_eligibility(tool_context: ToolContext) -> dict[str, Any]:
    """Check that the claim's policy was active on the incident date and is held by the claimant.

    Returns:
        A finding: verdict ("pass", "review" or "fail") and the reason.
    """
    return await _check("eligibility", _claim_of(tool_context))


async def check_fraud(tool_context: ToolContext) -> dict[str, Any]:
    """Look for signs of fraud in the claim: unusual amounts or wording.

    Returns:
        A finding: verdict ("pass", "review" or "fail") and the reason.
    """
    return await _check("fraud", _claim_of(tool_context))


async def check_policy(tool_context: ToolContext) -> dict[str, Any]:
    """Check that the policy covers this kind of claim, and work out the payout.

    Returns:
        A finding: verdict ("pass", "review" or "fail"), the reason and the payout.
    """
    return await _check("policy", _claim_of(tool_context))


TOOLS: dict[str, str] = {"check_eligibility": "eligibility", "check_fraud": "fraud", "check_policy": "policy"}
"""Each tool's name, and the specialist whose check it runs."""


def specialist_script(*tools: str) -> Callable[[Turn], Reply]:
    """Return the offline model's rules: ask for all of `tools` at once, then report what they found."""

    def script(turn: Turn) -> Reply:
        if turn.results:
            return "; ".join(
                f"{TOOLS.get(r.name, r.name)}: {r.response.get('verdict')}, {r.response.get('reason')}"
                for r in turn.results
            )
        return [Call(tool) for tool in tools]

    return script


# --- running a specialist's agent ------------------------------------------------------------


def _prompt(claim: Claim, specialist: str) -> str:
    return f"Check this claim for {specialist}: {claim.model_dump_json()}"


async def consult(
    runner: Runner, claim: Claim, *, user_id: str, session_id: str, prompt: str, specialists: Sequence[str]
) -> tuple[dict[str, Finding], str]:
    """Run an agent on a claim; return each specialist's finding (checked durably if the model skipped it)."""
    findings: dict[str, Finding] = {}
    note: str | None = None
    async for event in runner.run_async(
        user_id=user_id,
        session_id=session_id,
        new_message=user_message(prompt),
        state_delta={CLAIM_STATE_KEY: claim.model_dump(mode="json")},
    ):
        for response in event.get_function_responses():
            specialist = TOOLS.get(response.name or "")
            if specialist is not None and response.response:
                findings[specialist] = Finding.model_validate(response.response)
        note = final_text(event) or note
    for specialist in specialists:
        if specialist not in findings:
            findings[specialist] = Finding.model_validate(await _check(specialist, claim))
    return findings, note or ""


def _agent(specialist: str, tool: Callable[..., Any], instruction: str) -> Agent:
    name = f"{specialist}_agent"
    return Agent(
        model=default_model(specialist_script(tool.__name__), name=name),
        name=name,
        instruction=f"{instruction} Call {tool.__name__} exactly once, then state its verdict and why.",
        tools=[tool],
    )


eligibility_agent = _agent(
    "eligibility", check_eligibility, "You check whether an insurance claim is eligible under its policy."
)
fraud_agent = _agent("fraud", check_fraud, "You look for signs of fraud in insurance claims.")
policy_agent = _agent("policy", check_policy, "You check what an insurance policy covers and what it pays.")

_eligibility_runner = Runner(
    app=App(name="eligibility", root_agent=eligibility_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)
_fraud_runner = Runner(
    app=App(name="fraud", root_agent=fraud_agent, plugins=[RestatePlugin()]),
    session_service=RestateSessionService(),
)
_policy_sessions = InMemorySessionService()  # type: ignore[no-untyped-call]
_policy_runner = Runner(
    app=App(name="policy", root_agent=policy_agent, plugins=[RestatePlugin()]),
    session_service=_policy_sessions,
    auto_create_session=True,
)


def _require_key(ctx: restate.ObjectContext, expected: str, field: str, service: str) -> None:
    if ctx.key() != expected:
        raise restate.TerminalError(
            f"call {service} with the claim's {field} as the key: /{service}/{expected}/check, not /{ctx.key()}/",
            status_code=400,
        )


async def _verdict_of(runner: Runner, specialist: str, claim: Claim, *, user_id: str, session_id: str) -> Verdict:
    findings, note = await consult(
        runner,
        claim,
        user_id=user_id,
        session_id=session_id,
        prompt=_prompt(claim, specialist),
        specialists=[specialist],
    )
    return Verdict(specialist=specialist, note=note, **findings[specialist].model_dump())


eligibility_service = restate.VirtualObject("EligibilityAgent")


@eligibility_service.handler(name="check", input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def eligibility_check(ctx: restate.ObjectContext, claim: dict[str, Any]) -> Verdict:
    """Check a claim's eligibility; the key is the claim's policy id."""
    c = require_claim(claim)
    _require_key(ctx, c.policy_id, "policy_id", "EligibilityAgent")
    return await _verdict_of(_eligibility_runner, "eligibility", c, user_id=ctx.key(), session_id=c.claim_id)


fraud_service = restate.VirtualObject("FraudAgent")


@fraud_service.handler(name="check", input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def fraud_check(ctx: restate.ObjectContext, claim: dict[str, Any]) -> Verdict:
    """Look for fraud in a claim; the key is the claim's customer id."""
    c = require_claim(claim)
    _require_key(ctx, c.customer_id, "customer_id", "FraudAgent")
    return await _verdict_of(_fraud_runner, "fraud", c, user_id=ctx.key(), session_id=c.claim_id)


policy_service = restate.Service("PolicyAgent")


@policy_service.handler(name="check", input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
async def policy_check(ctx: restate.Context, claim: dict[str, Any]) -> Verdict:
    """Check a claim's coverage and payout (a stateless service: its session lives for this call only)."""
    c = require_claim(claim)
    session_id = ctx.request().id
    await _policy_sessions.delete_session(app_name="policy", user_id=c.customer_id, session_id=session_id)
    try:
        return await _verdict_of(_policy_runner, "policy", c, user_id=c.customer_id, session_id=session_id)
    finally:
        await _policy_sessions.delete_session(app_name="policy", user_id=c.customer_id, session_id=session_id)
