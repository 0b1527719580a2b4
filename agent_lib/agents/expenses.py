"""An expense agent that waits twice: on a slow receipt check, then on a human's approval. Lesson 08.

A plain Restate app, like every agent here. It checks a receipt with a tool that waits
at a file-based gate (`Accounting`: the accounting system is "slow" until you release
the receipt), then asks
a human to approve the reimbursement through an awakeable and waits for the answer.
While it waits, the invocation is in flight on the cluster: lesson 08 kills a node then.

    Reimburse receipt R-17: 42.50 EUR for a taxi
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent
from google.adk.apps import App
from restate.ext.adk import RestatePlugin, RestateSessionService, restate_object_context

from .._paths import data_dir
from ..models import Call, Reply, Turn, default_model
from ._common import LESSON_RETRY_POLICY, final_text, require_message, user_message

__all__ = [
    "APPROVAL_STATE",
    "SERVICE",
    "Accounting",
    "agent",
    "approve",
    "check_receipt",
    "expense_script",
    "expense_service",
    "request_approval",
    "runner",
    "wait_pending",
]

APPROVAL_STATE = "approval"
"""The state key under which the agent keeps the id of the approval it waits for."""

_RECEIPT = re.compile(r"\b(R-[\w-]+)", re.IGNORECASE)
_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)\s*(EUR|USD|GBP)\b", re.IGNORECASE)


class Accounting:
    """The slow accounting system, as files: a receipt's check waits at a gate until it is released.

    The agent and whoever releases receipts must agree on the directory: `EXPENSE_ACCOUNTING_DIR`,
    else `<data dir>/accounting`. Each check that starts appends a line to `<receipt>.checks`, so a
    check that ran twice (because a crash interrupted the first) counts two.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory or os.environ.get("EXPENSE_ACCOUNTING_DIR") or data_dir() / "accounting")

    def release(self, receipt: str) -> None:
        """Let the check of this receipt go through, now or whenever it starts."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{receipt}.released").touch()

    def is_released(self, receipt: str) -> bool:
        """Return True if this receipt's check may go through."""
        return (self.directory / f"{receipt}.released").exists()

    def record_check(self, receipt: str) -> None:
        """Record that a check of this receipt started (the agent's tool calls it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{receipt}.checks").open("a") as f:
            f.write(f"{os.getpid()}\n")

    def checks(self, receipt: str) -> int:
        """Return how many times a check of this receipt started."""
        path = self.directory / f"{receipt}.checks"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def waiting(self) -> list[str]:
        """Return the receipts whose check has started and waits, not yet released."""
        started = sorted(p.name.removesuffix(".checks") for p in self.directory.glob("*.checks"))
        return [r for r in started if not self.is_released(r)]

    def wait_for(self, receipts: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until the check of every one of these receipts has started and waits."""
        wanted = set(receipts)
        deadline = time.monotonic() + timeout
        while missing := wanted - set(self.waiting()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no check of {sorted(missing)} waits at accounting after {timeout:.0f}s")
            time.sleep(0.2)


def expense_script(turn: Turn) -> Reply:
    """The offline model's rules: check the receipt, then ask for approval, then report."""
    receipt = _RECEIPT.search(turn.text)
    amount = _AMOUNT.search(turn.text)
    done = {r.name: r.text for r in turn.results}
    if "request_approval" in done:
        return f"Expense {receipt.group(1) if receipt else ''}: {done['request_approval']}"
    if "check_receipt" in done:
        if not receipt or not amount or "valid" not in done["check_receipt"]:
            return done["check_receipt"]
        return [Call("request_approval", {"receipt": receipt.group(1), "amount": float(amount.group(1))})]
    if receipt and amount:
        return [Call("check_receipt", {"receipt": receipt.group(1)})]
    return "Tell me the receipt number and the amount, e.g. 'Reimburse receipt R-17: 42.50 EUR for a taxi'."


async def check_receipt(receipt: str) -> str:
    """Check a receipt with the accounting system, which can be slow.

    Args:
        receipt: The receipt number, e.g. "R-17".
    """

    async def ask_accounting() -> str:
        accounting = Accounting()
        accounting.record_check(receipt)
        while not accounting.is_released(receipt):
            await asyncio.sleep(0.2)
        return f"Receipt {receipt} is valid."

    return await restate_object_context().run_typed("Check receipt", ask_accounting)


async def request_approval(receipt: str, amount: float) -> str:
    """Ask a human to approve reimbursing this receipt, and wait for their decision.

    Args:
        receipt: The receipt number, e.g. "R-17".
        amount: The amount to reimburse.
    """
    ctx = restate_object_context()
    approval_id, decision = ctx.awakeable(type_hint=dict)
    ctx.set(APPROVAL_STATE, approval_id)
    answer = await decision
    ctx.clear(APPROVAL_STATE)
    who = answer.get("by", "someone")
    if answer.get("approved"):
        return f"{amount:.2f} reimbursed, approved by {who}."
    return f"not reimbursed: {who} rejected it."


agent = Agent(
    model=default_model(expense_script, name="expense_agent"),
    name="expense_agent",
    instruction=(
        "You reimburse expenses. First check the receipt with check_receipt. If it is valid, ask for "
        "approval with request_approval. Then answer in one sentence with the outcome."
    ),
    tools=[check_receipt, request_approval],
)

app = App(name="expenses", root_agent=agent, plugins=[RestatePlugin()])
runner = Runner(app=app, session_service=RestateSessionService())

SERVICE = "ExpenseAgent"
expense_service = restate.VirtualObject(SERVICE)


@expense_service.handler(invocation_retry_policy=LESSON_RETRY_POLICY)
async def run(ctx: restate.ObjectContext, message: str) -> str | None:
    """Handle one expense claim in the session named by this object's key."""
    text = require_message(message)
    final_response = None
    async for event in runner.run_async(user_id=ctx.key(), session_id="session", new_message=user_message(text)):
        final_response = final_text(event) or final_response
    return final_response


@expense_service.handler(kind="shared")
async def pending_approval(ctx: restate.ObjectSharedContext) -> str | None:
    """Return the id of the approval this claim waits for, or None."""
    return await ctx.get(APPROVAL_STATE, type_hint=str)


class _Ingress(Protocol):
    def call(self, service: str, handler: str, body: Any = None, *, key: str | None = None) -> Any: ...
    def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None: ...


def wait_pending(ingress: _Ingress, keys: Iterable[str], timeout: float = 120.0) -> dict[str, str]:
    """Wait until every claim in `keys` waits for approval; return {key: approval id}.

    `ingress` is an `agent_lib.clients.Ingress`. Errors while the cluster moves a
    partition to a new leader are retried until `timeout`.
    """
    found: dict[str, str] = {}
    wanted = list(keys)
    deadline = time.monotonic() + timeout
    while True:
        for key in wanted:
            if key not in found and time.monotonic() < deadline:
                try:
                    approval = ingress.call(SERVICE, "pending_approval", key=key)
                except (RuntimeError, ConnectionError, httpx.HTTPError):
                    approval = None
                if approval:
                    found[key] = str(approval)
        if len(found) == len(wanted):
            return found
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - set(found))
            raise TimeoutError(f"these claims do not wait for approval after {timeout:.0f}s: {missing}")
        time.sleep(0.3)


def approve(ingress: _Ingress, approvals: Mapping[str, str], *, by: str, approved: bool = True) -> None:
    """Resolve each approval id in {key: approval id} with a human's decision."""
    for approval_id in approvals.values():
        ingress.resolve_awakeable(approval_id, {"approved": approved, "by": by})
