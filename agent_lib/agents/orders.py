"""An order-taking agent whose tools touch the outside world: lesson 02 and the crash proofs.

To place an order the agent checks stock, books the payment, then emails the customer: one
model call before each tool and one for the answer, so four model calls per order. Each tool's
work is one durable step (`run_typed`) with its own retry options; its external effects
(an inventory call, a payment, an email) go to the ledger, so a lesson can count them.

Two services share the code and differ in one thing:
- "OrderAgent" records each payment and email under an idempotency key derived from the
  invocation id and the tool call, so a step that runs twice still has its effect once;
- "OrderAgentNoKeys" records them without a key, to show what at-least-once means.

Every journal boundary is a named hook point (see `agent_lib.gates`); `GATES` lists them in
the order an order reaches them. They do nothing unless a gate is armed there.

Lesson 02 serves both in a process it kills; while it runs:

    curl localhost:8080/OrderAgent/alice/run --json '"Order 2 lamps for alice@example.com"'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import restate
from google.adk import Runner
from google.adk.agents.llm_agent import Agent, ToolUnion
from google.adk.apps import App
from google.adk.tools.tool_context import ToolContext
from restate.ext.adk import RestatePlugin, RestateSessionService
from restate.extensions import current_context

from ..gates import GatePlugin, hit
from ..ledger import default_ledger
from ..models import Call, Reply, Turn, default_model
from ._common import JSON_INPUT, LESSON_RETRY_POLICY, final_text, require_message, user_message

__all__ = [
    "CARD_LIMIT",
    "CATALOG",
    "FLAKY_ITEMS",
    "GATES",
    "INSTRUCTION",
    "INVENTORY_RETRY",
    "PREFIX",
    "STEP_RETRY",
    "TOOLS",
    "effect_key",
    "make_order_agent",
    "naive_order_service",
    "order_script",
    "order_service",
    "order_tools",
]

CATALOG = {"lamp": 40.0, "chair": 120.0, "desk": 350.0, "umbrella": 15.0}
"""What the shop sells, and the price of one."""

CARD_LIMIT = 1000.0
"""The bank declines any payment above this: a TerminalError, never retried."""

FLAKY_ITEMS = {"umbrella": 2}
"""The inventory service times out this many times per order of the item, then answers."""

INVENTORY_RETRY: restate.RunOptions[str] = restate.RunOptions(
    max_attempts=5, initial_retry_interval=timedelta(milliseconds=100), max_retry_interval=timedelta(seconds=1)
)
"""Retry the stock check quickly (100 ms, doubling), and give up after 5 attempts."""

STEP_RETRY: restate.RunOptions[str] = restate.RunOptions(
    max_attempts=3, initial_retry_interval=timedelta(milliseconds=100), max_retry_interval=timedelta(seconds=1)
)
"""Retry a payment or an email at most 3 times."""

PREFIX = "orders"
"""The first part of every hook point's name."""

TOOLS = ("check_stock", "book_payment", "send_email")
"""The agent's tools, in the order an order calls them."""
GATES = (
    f"{PREFIX}.model.before",
    f"{PREFIX}.model.after",
    *(f"{PREFIX}.{tool}.{point}" for tool in TOOLS for point in ("before_effect", "after_effect", "after_step")),
    f"{PREFIX}.store_session.before",
)
"""The hook points of an order, in the order it reaches them.

The model hooks are hit once per model call (arm them with `skip=` to stop at a later call). A stock
check of a flaky item (`FLAKY_ITEMS`) fails on purpose; crash tests should order something else.
"""

INSTRUCTION = (
    "You take orders for a small shop. To place an order, call one tool at a time: first check_stock, "
    "then book_payment, then send_email with a short confirmation to the customer. If a tool answers "
    "with an error, stop and tell the customer what went wrong."
)

_ORDER = re.compile(
    r"\border\s+(?P<quantity>\d+|an?|one)\s+(?P<item>[a-z]+?)s?\s+for\s+(?P<customer>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    re.IGNORECASE,
)


def order_script(turn: Turn) -> Reply:
    """The offline model's rules: check stock, book the payment, email, answer; stop at the first error."""
    order = _ORDER.search(turn.text)
    if order is None:
        return "I take orders: say e.g. 'Order 2 lamps for alice@example.com'."
    quantity = int(order["quantity"]) if order["quantity"].isdigit() else 1
    item, customer = order["item"].lower(), order["customer"]
    done = {r.name: r.text for r in turn.results}
    errors = [text for text in done.values() if text.startswith("error:")]
    if errors:
        return f"Sorry, I could not place your order: {errors[-1].removeprefix('error: ')}."
    if "check_stock" not in done:
        return [Call("check_stock", {"item": item, "quantity": quantity})]
    if "book_payment" not in done:
        return [Call("book_payment", {"customer": customer, "item": item, "quantity": quantity})]
    if "send_email" not in done:
        body = f"Your order of {quantity} {item}(s) is confirmed. {done['book_payment']}."
        return [Call("send_email", {"to": customer, "subject": "Your order", "body": body})]
    return f"Your order of {quantity} {item}(s) is placed: {done['book_payment']}; {done['send_email']}."


def _context() -> restate.Context | None:
    """Return the Restate context of the running handler, or None (a plain ADK run)."""
    try:
        return current_context()
    except LookupError:
        return None


def _invocation_id() -> str | None:
    ctx = _context()
    return ctx.request().id if ctx is not None else None


def effect_key(step: str, tool_context: ToolContext) -> str | None:
    """Derive an effect's idempotency key from the invocation id, the step and the tool call (None outside Restate).

    All three are the same on every replay of the invocation: the tool call's id is part of the
    model's answer, which the "call LLM" step journaled. A plain ADK run has no such id to derive it from.
    """
    invocation_id = _invocation_id()
    if invocation_id is None:
        return None
    return f"{invocation_id}:{step}:{tool_context.function_call_id}"


async def _step(
    step: str, tool: str, action: Callable[[], Coroutine[Any, Any, str]], options: restate.RunOptions[str]
) -> str:
    """Run `action` as a durable step named `step` (a plain call outside Restate); a terminal error becomes text."""
    ctx = _context()
    try:
        result = await (action() if ctx is None else ctx.run_typed(step, action, options))
    except restate.TerminalError as err:
        result = f"error: {err.message}"
    await hit(f"{PREFIX}.{tool}.after_step", invocation_id=_invocation_id())
    return result


def _price(item: str, quantity: int) -> float:
    if item not in CATALOG:
        raise restate.TerminalError(f"we do not sell {item}s; we sell {', '.join(sorted(CATALOG))}", status_code=404)
    if quantity < 1:
        raise restate.TerminalError(f"cannot order {quantity} {item}s: order at least one", status_code=400)
    return CATALOG[item] * quantity


def order_tools(*, effect_keys: bool) -> list[ToolUnion]:
    """Build the agent's tools; with `effect_keys`, payments and emails are recorded once per key."""

    async def check_stock(item: str, quantity: int) -> str:
        """Check that the warehouse has enough of an item, and its price.

        Args:
            item: The item, singular, e.g. "lamp".
            quantity: How many the customer wants.
        """

        async def ask_inventory() -> str:
            invocation_id = _invocation_id()
            await hit(f"{PREFIX}.check_stock.before_effect", invocation_id=invocation_id)
            ledger = default_ledger()
            ledger.record("inventory_call", {"item": item, "quantity": quantity}, invocation_id=invocation_id)
            calls = sum(e.detail["item"] == item for e in ledger.effects("inventory_call", invocation_id=invocation_id))
            if invocation_id is not None and calls <= FLAKY_ITEMS.get(item, 0):
                raise ConnectionError(f"the inventory service timed out (call {calls} for {item})")
            await hit(f"{PREFIX}.check_stock.after_effect", invocation_id=invocation_id)
            return f"{quantity} {item}(s) in stock, ${_price(item, quantity):.2f} in total"

        return await _step("check stock", "check_stock", ask_inventory, INVENTORY_RETRY)

    async def book_payment(customer: str, item: str, quantity: int, tool_context: ToolContext) -> str:
        """Charge the customer's card for the order.

        Args:
            customer: The customer's email address.
            item: The item, singular, e.g. "lamp".
            quantity: How many.
        """
        key = effect_key("book payment", tool_context) if effect_keys else None

        async def charge() -> str:
            invocation_id = _invocation_id()
            await hit(f"{PREFIX}.book_payment.before_effect", invocation_id=invocation_id)
            amount = _price(item, quantity)
            if amount > CARD_LIMIT:
                raise restate.TerminalError(
                    f"the card was declined: ${amount:.2f} is over its ${CARD_LIMIT:.2f} limit", status_code=402
                )
            detail = {"customer": customer, "amount": amount, "item": item, "quantity": quantity}
            default_ledger().record("payment", detail, idempotency_key=key, invocation_id=invocation_id)
            await hit(f"{PREFIX}.book_payment.after_effect", invocation_id=invocation_id)
            return f"${amount:.2f} charged to {customer}"

        return await _step("book payment", "book_payment", charge, STEP_RETRY)

    async def send_email(to: str, subject: str, body: str, tool_context: ToolContext) -> str:
        """Send an email to the customer.

        Args:
            to: The customer's email address.
            subject: The subject line.
            body: The text of the email.
        """
        key = effect_key("send email", tool_context) if effect_keys else None

        async def send() -> str:
            invocation_id = _invocation_id()
            await hit(f"{PREFIX}.send_email.before_effect", invocation_id=invocation_id)
            detail = {"to": to, "subject": subject, "body": body}
            default_ledger().record("email", detail, idempotency_key=key, invocation_id=invocation_id)
            await hit(f"{PREFIX}.send_email.after_effect", invocation_id=invocation_id)
            return f"confirmation emailed to {to}"

        return await _step("send email", "send_email", send, STEP_RETRY)

    return [check_stock, book_payment, send_email]


def make_order_agent(*, effect_keys: bool, name: str = "order_agent") -> Agent:
    """Build the order agent (LlmAgent) on the default model, with its tools."""
    return Agent(
        model=default_model(order_script, name=name),
        name=name,
        instruction=INSTRUCTION,
        tools=order_tools(effect_keys=effect_keys),
    )


def _order_service(service_name: str, *, effect_keys: bool) -> restate.VirtualObject:
    app = App(
        name="orders",
        root_agent=make_order_agent(effect_keys=effect_keys),
        plugins=[GatePlugin(PREFIX, invocation_id=_invocation_id), RestatePlugin()],
    )
    runner = Runner(app=app, session_service=RestateSessionService())
    service = restate.VirtualObject(service_name)

    @service.handler(input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)
    async def run(ctx: restate.ObjectContext, message: str) -> str | None:
        """Take one message from the customer whose session is this object's key."""
        text = require_message(message)
        answer = None
        async for event in runner.run_async(user_id=ctx.key(), session_id="orders", new_message=user_message(text)):
            answer = final_text(event) or answer
        return answer

    return service


order_service = _order_service("OrderAgent", effect_keys=True)
"""Payments and emails recorded once per idempotency key: the way to build it."""

naive_order_service = _order_service("OrderAgentNoKeys", effect_keys=False)
"""The same agent without idempotency keys: a step that runs twice has its effect twice."""
