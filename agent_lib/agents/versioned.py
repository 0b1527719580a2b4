"""A refund agent in several versions, each its own deployment: lesson 07.

Every version is a VirtualObject named "VersionedAgent" with the same handler `run`, so
they are deployments of one service. The agent asks for a refund with the tool
`request_refund`, which waits for a human's approval (an awakeable whose id it stores in
the state value `approval`), then issues the refund in a durable step "Issue refund".
The handler answers {"answer": ..., "version": ...}: the version of the code that
finished the invocation.

- `service_v1`: issues the refund in the customer's currency.
- `service_v2`: a changed prompt and tool: converts every refund to EUR first, with a
  rates table that misses GBP (a bug: a GBP refund keeps failing in "Issue refund").
- `service_v3`: v2 with the bug fixed (GBP added).
- `service_v3_reordered`: v3 with a new durable step "Check fraud score" *before* the
  model call: an incompatible change for invocations that started on v3.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from .._modes import suspend_after
from ..models import Call, Reply, Script, Turn, default_model
from ._common import final_text, require_message, user_message

__all__ = [
    "INSTRUCTIONS",
    "RATES",
    "SERVICE_NAME",
    "SUSPEND_AFTER",
    "VERSIONED_RETRY_POLICY",
    "make_service",
    "refund_script",
    "service_v1",
    "service_v2",
    "service_v3",
    "service_v3_reordered",
]

SERVICE_NAME = "VersionedAgent"

VERSIONED_RETRY_POLICY = restate.InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    exponentiation_factor=2.0,
    max_interval=timedelta(seconds=1),
    max_attempts=300,
    on_max_attempts="pause",
)
"""Retry about once a second for about five minutes, then pause."""

SUSPEND_AFTER = suspend_after(2)
"""Suspend an invocation that waits (for an approval) this long, instead of the server's default minute.

0 in the always-replay mode (`make test-replay`): there it suspends at every await.
"""

INSTRUCTIONS = {
    "v1": "You handle refunds. Call request_refund with the amount and currency the customer asks for.",
    "v2": "You handle refunds. Call request_refund with the amount and currency; refunds are paid in EUR.",
}

RATES: dict[str, dict[str, float]] = {
    "v2": {"EUR": 1.0, "USD": 0.9},
    "v3": {"EUR": 1.0, "USD": 0.9, "GBP": 1.2},
}
"""The exchange rates to EUR each version uses (v1 converts nothing; v2 forgot GBP)."""

_AMOUNT = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<currency>[A-Z]{3})")


def refund_script(version: str) -> Script:
    """Return the offline model's rules for one version: ask for the refund, then report it."""

    def script(turn: Turn) -> Reply:
        if turn.results:
            return " ".join(r.text for r in turn.results)
        match = _AMOUNT.search(turn.text)
        if match and "refund" in turn.text.lower():
            return [Call("request_refund", {"amount": float(match["amount"]), "currency": match["currency"]})]
        return "I handle refunds: ask me to refund an amount, e.g. 'Refund 40 EUR for order 17'."

    script.__name__ = f"refund_script_{version}"
    return script


def _issue(version: str, amount: float, currency: str) -> str:
    if version == "v1":
        return f"Refunded {amount:.2f} {currency}."
    rate = RATES[version][currency]
    return f"Refunded {amount * rate:.2f} EUR (from {amount:.2f} {currency})."


def _make_tool(version: str) -> Any:
    async def request_refund(amount: float, currency: str) -> str:
        """Ask a human to approve a refund, then issue it.

        Args:
            amount: The amount to refund, e.g. 40.
            currency: The ISO currency code, e.g. "EUR".
        """
        ctx = restate_object_context()
        awakeable_id, approval = ctx.awakeable(type_hint=bool)
        ctx.set("approval", awakeable_id)
        approved = await approval
        ctx.clear("approval")
        if not approved:
            return f"The refund of {amount:.2f} {currency} was not approved."

        async def issue() -> str:
            return _issue(version, amount, currency)

        return await ctx.run_typed("Issue refund", issue)

    return request_refund


def make_service(version: str, *, reordered: bool = False) -> restate.VirtualObject:
    """Build the "VersionedAgent" service of one version (reordered=True adds a step before the model call)."""
    if version not in ("v1", "v2", "v3"):
        raise ValueError(f"unknown version {version!r}: choose v1, v2 or v3")
    agent = Agent(
        model=default_model(refund_script(version), name=f"refund_agent_{version}"),
        name=f"refund_agent_{version}",
        instruction=INSTRUCTIONS["v1" if version == "v1" else "v2"],
        tools=[_make_tool(version)],
    )
    runner = Runner(
        app=App(name="refunds", root_agent=agent, plugins=[RestatePlugin()]),
        session_service=RestateSessionService(),
    )
    label = version + ("-reordered" if reordered else "")
    service = restate.VirtualObject(SERVICE_NAME)

    @service.handler(invocation_retry_policy=VERSIONED_RETRY_POLICY, inactivity_timeout=SUSPEND_AFTER)
    async def run(ctx: restate.ObjectContext, message: str) -> dict[str, Any]:
        """Handle one refund request; answer with the reply and the version that finished it."""
        text = require_message(message)
        if reordered:

            async def fraud_score() -> float:
                return 0.1

            await ctx.run_typed("Check fraud score", fraud_score)
        answer = None
        async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
            answer = final_text(event) or answer
        return {"answer": answer, "version": label}

    return service


service_v1 = make_service("v1")
service_v2 = make_service("v2")
service_v3 = make_service("v3")
service_v3_reordered = make_service("v3", reordered=True)
