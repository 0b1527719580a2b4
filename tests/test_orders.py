"""The order agent: its offline script, its hook points, and its tools over HTTP (retries, terminal errors)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib.agents import orders
from agent_lib.agents.orders import CARD_LIMIT, CATALOG, GATES, order_script
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.ledger import Ledger
from agent_lib.models import Call, ToolResult, Turn
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

TOOLS = ("book_payment", "check_stock", "send_email")


def _turn(text: str, *results: tuple[str, str]) -> Turn:
    return Turn(
        text=text,
        results=tuple(ToolResult(name, {"result": value}) for name, value in results),
        tools=TOOLS,
        history=(),
        past_results=(),
    )


def test_script_checks_stock_then_pays_then_emails_then_answers() -> None:
    text = "Please order 2 lamps for alice@example.com"
    assert order_script(_turn(text)) == [Call("check_stock", {"item": "lamp", "quantity": 2})]
    stock = ("check_stock", "2 lamp(s) in stock, $80.00 in total")
    assert order_script(_turn(text, stock)) == [
        Call("book_payment", {"customer": "alice@example.com", "item": "lamp", "quantity": 2})
    ]
    paid = ("book_payment", "$80.00 charged to alice@example.com")
    reply = order_script(_turn(text, stock, paid))
    assert isinstance(reply, list) and reply[0].name == "send_email" and reply[0].args["to"] == "alice@example.com"
    emailed = ("send_email", "confirmation emailed to alice@example.com")
    answer = order_script(_turn(text, stock, paid, emailed))
    assert answer == (
        "Your order of 2 lamp(s) is placed: $80.00 charged to alice@example.com; "
        "confirmation emailed to alice@example.com."
    )


def test_script_stops_at_the_first_error_and_says_why() -> None:
    text = "order a desk for bob@example.com"
    assert order_script(_turn(text)) == [Call("check_stock", {"item": "desk", "quantity": 1})]
    declined = ("book_payment", "error: the card was declined")
    stock = ("check_stock", "ok")
    assert order_script(_turn(text, stock, declined)) == "Sorry, I could not place your order: the card was declined."


def test_script_explains_itself_without_an_order() -> None:
    assert "Order 2 lamps" in str(order_script(_turn("hello")))


def test_gates_name_every_journal_boundary_in_order() -> None:
    assert GATES[:2] == ("orders.model.before", "orders.model.after")
    assert GATES[-1] == "orders.store_session.before"
    for tool in orders.TOOLS:
        points = [g for g in GATES if g.startswith(f"orders.{tool}.")]
        assert points == [f"orders.{tool}.before_effect", f"orders.{tool}.after_effect", f"orders.{tool}.after_step"]
    assert len(set(GATES)) == len(GATES) == 12


def test_catalog_leaves_room_for_both_outcomes() -> None:
    assert CATALOG["lamp"] * 2 <= CARD_LIMIT < CATALOG["desk"] * 3
    assert set(orders.FLAKY_ITEMS) <= set(CATALOG)


def test_outside_restate_the_tools_run_plainly_without_keys(ledger: Ledger) -> None:
    from agent_lib.agents.plain_orders import run_order

    answer = asyncio.run(run_order("Order 1 umbrella for plain@example.com"))
    assert answer is not None and "placed" in answer
    payment = [e for e in ledger.effects("payment") if e.detail["customer"] == "plain@example.com"]
    assert len(payment) == 1 and payment[0].idempotency_key is None and payment[0].invocation_id is None


@pytest.fixture(scope="module")
def order_agents(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """Both order services, in a process of their own on the session server."""
    proc = AgentProcess(
        ["agent_lib.agents.orders:order_service", "agent_lib.agents.orders:naive_order_service"],
        admin=Admin(restate_server.admin_url),
        name="test-orders",
    )
    with proc:
        yield proc


def test_an_order_over_http(
    ingress: Ingress, admin: Admin, ledger: Ledger, order_agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("OrderAgent", "run", "Order 2 lamps for alice@example.com", key=key)
    assert "placed" in ingress.attach(sent.invocation_id)
    assert admin.steps(sent.invocation_id) == [
        "call LLM",
        "check stock",
        "call LLM",
        "book payment",
        "call LLM",
        "send email",
        "call LLM",
        "store session",
    ]
    assert ledger.count("model_call", invocation_id=sent.invocation_id) == 4
    (payment,) = ledger.effects("payment", invocation_id=sent.invocation_id)
    assert payment.detail["amount"] == 80.0
    assert payment.idempotency_key is not None and payment.idempotency_key.startswith(
        f"{sent.invocation_id}:book payment:"
    )


def test_without_keys_effects_carry_none(
    ingress: Ingress, ledger: Ledger, order_agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("OrderAgentNoKeys", "run", "Order 1 chair for bob@example.com", key=key)
    assert "placed" in ingress.attach(sent.invocation_id)
    (payment,) = ledger.effects("payment", invocation_id=sent.invocation_id)
    assert payment.idempotency_key is None


def test_a_flaky_step_is_retried_until_it_answers(
    ingress: Ingress, admin: Admin, ledger: Ledger, order_agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("OrderAgent", "run", "Order 1 umbrella for carol@example.com", key=key)
    assert "placed" in ingress.attach(sent.invocation_id)
    assert ledger.count("inventory_call", invocation_id=sent.invocation_id) == orders.FLAKY_ITEMS["umbrella"] + 1
    assert admin.steps(sent.invocation_id).count("check stock") == 1


def test_a_terminal_error_is_journaled_once_and_reaches_the_model(
    ingress: Ingress, admin: Admin, ledger: Ledger, order_agents: AgentProcess, key: str
) -> None:
    sent = ingress.send("OrderAgent", "run", "Order 3 desks for dave@example.com", key=key)
    answer = ingress.attach(sent.invocation_id)
    assert answer == (
        "Sorry, I could not place your order: the card was declined: $1050.00 is over its $1000.00 limit."
    )
    assert admin.steps(sent.invocation_id).count("book payment") == 1
    assert any('"code":402' in (row["entry_json"] or "") for row in admin.journal(sent.invocation_id))
    assert ledger.count("payment", invocation_id=sent.invocation_id) == 0
    assert ledger.count("email", invocation_id=sent.invocation_id) == 0
    assert admin.status(sent.invocation_id) == "completed"


def test_an_unknown_item_is_an_answer_not_a_failure(ingress: Ingress, order_agents: AgentProcess, key: str) -> None:
    answer = ingress.call("OrderAgent", "run", "Order 2 pianos for erin@example.com", key=key)
    assert answer.startswith("Sorry, I could not place your order: we do not sell pianos")


@pytest.mark.parametrize(
    ("body", "message"),
    [(42, "must be a JSON string"), ("", "the message is empty"), (b'{"unterminated', "not valid JSON")],
)
def test_bad_input_is_a_clear_400(
    ingress: Ingress, order_agents: AgentProcess, key: str, body: object, message: str
) -> None:
    with pytest.raises(RestateError, match=message) as err:
        ingress.call("OrderAgent", "run", body, key=key, raw=isinstance(body, bytes))
    assert err.value.status == 400
