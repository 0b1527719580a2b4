"""Lesson 02's checks against answers a learner is likely to give: the right one passes, each wrong one fails and
says what is wrong.

The orders are real: sent to the order agents in a process these tests kill at a gate and start again, after
`check.lesson_02.begin(admin)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib import check
from agent_lib.agents import orders
from agent_lib.check import _core
from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from tests.helpers import begin_again, failed, wait_status

pytestmark = pytest.mark.slow

CHAIR = "Order 1 chair for ada@example.com"
LAMPS = "Order 2 lamps for ada@example.com"
DESKS = "Order 3 desks for ada@example.com"
HOOKS = [g for g in orders.GATES if "effect" in g or "after_step" in g]


@pytest.fixture(scope="module")
def agents(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    """Begin lesson 02's exercises, then serve both order agents in a process the tests kill."""
    admin = Admin(restate_server.admin_url)
    saved = dict(_core._began)
    _core.begin(2, admin)
    proc = AgentProcess(
        ["agent_lib.agents.orders:order_service", "agent_lib.agents.orders:naive_order_service"],
        admin=admin,
        name="check-lesson02",
    )
    with proc:
        admin.register(proc.url)
        yield proc
    _core._began.clear()
    _core._began.update(saved)


def _order(ingress: Ingress, service: str, message: str = CHAIR) -> str:
    sent = ingress.send(service, "run", message, key=f"ex02-{uuid.uuid4().hex[:8]}")
    ingress.attach(sent.invocation_id)
    return sent.invocation_id


def _crash_at(agents: AgentProcess, ingress: Ingress, gate_name: str, service: str, message: str = CHAIR) -> str:
    """Send an order, kill the agent when it reaches the gate, start it again, wait for the order; return its id."""
    gate = Gate(gate_name).arm()
    sent = ingress.send(service, "run", message, key=f"ex02-{uuid.uuid4().hex[:8]}")
    report = gate.wait_reached(timeout=120, alive=lambda: agents.running)
    assert report["invocation_id"] == sent.invocation_id
    agents.kill()
    agents.start()
    ingress.attach(sent.invocation_id)
    return sent.invocation_id


@pytest.fixture(scope="module")
def no_keys_crashes(agents: AgentProcess, restate_server: RestateServer) -> dict[str, str]:
    """Orders to OrderAgentNoKeys, each killed at one hook point: exercise 1's answer and its likely slips."""
    ingress = Ingress(restate_server.ingress_url)
    gates = ["book_payment.before_effect", "send_email.before_effect", "book_payment.after_effect"]
    gates += ["check_stock.after_step", "check_stock.before_effect"]
    return {g: _crash_at(agents, ingress, f"orders.{g}", "OrderAgentNoKeys", LAMPS) for g in gates}


@pytest.fixture(scope="module")
def hook_crashes(agents: AgentProcess, restate_server: RestateServer) -> dict[str, str]:
    """Orders to OrderAgent, one killed at each hook point around the effects: exercise 3's answer."""
    ingress = Ingress(restate_server.ingress_url)
    return {gate: _crash_at(agents, ingress, gate, "OrderAgent") for gate in HOOKS}


# --- exercise 1: a safe crash point ---


def test_exercise_1_passes_a_kill_before_the_payment(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, no_keys_crashes["book_payment.before_effect"])
    assert result.ok, result
    assert "one payment, made by the restarted process" in result.message


def test_exercise_1_fails_a_kill_after_the_payment(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, no_keys_crashes["send_email.before_effect"])
    failed(result, "the payment was made by the process you killed", "after the payment, before the email")
    assert "book_payment.before_effect" in result.hint


def test_exercise_1_fails_a_kill_after_the_payments_effect(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, no_keys_crashes["book_payment.after_effect"])
    failed(result, "the order made 2 payments", "the kill came after the payment's effect")


def test_exercise_1_fails_a_kill_before_the_model_asked_to_pay(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, no_keys_crashes["check_stock.after_step"])
    failed(result, "the killed process made 1 model call(s)", "before the model asked for the payment")


def test_exercise_1_fails_a_kill_before_the_stock_check(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, no_keys_crashes["check_stock.before_effect"])
    failed(result, "the kill came before the stock check's effect", "had not reached its payment step")


def test_exercise_1_fails_an_order_that_was_never_killed(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, _order(ingress, "OrderAgentNoKeys"))
    failed(result, "the order ran in one process only")


def test_exercise_1_fails_the_agent_with_keys(hook_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_1.sync(admin, hook_crashes["orders.book_payment.before_effect"])
    failed(result, "went to OrderAgent, not OrderAgentNoKeys")


def test_exercise_1_says_the_process_is_stopped_not_dead(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    agents.stop()
    sent = ingress.send("OrderAgentNoKeys", "run", LAMPS, key=f"ex02-{uuid.uuid4().hex[:8]}")
    try:
        result = check.lesson_02.exercise_1.sync(admin, sent.invocation_id)
    finally:
        agents.start()
        ingress.attach(sent.invocation_id)
    failed(result, "not finished: the process that serves OrderAgentNoKeys is stopped")
    assert "process.start()" in result.hint and "stopped the agent process" in result.hint
    assert "died" not in result.message


def test_exercise_1_fails_an_order_from_before_begin(
    agents: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _order(ingress, "OrderAgentNoKeys")
    monkeypatch.setitem(_core._began, 2, _core._began[2])
    begin_again(2, admin)
    failed(check.lesson_02.exercise_1.sync(admin, old), "the order", "before you began the exercises")


def test_exercise_1_fails_an_id_that_is_not_one(admin: Admin) -> None:
    failed(check.lesson_02.exercise_1.sync(admin, "inv_1nosuchinvocation0000000000000000"), "not a valid")


# --- exercise 2: the bank says no ---


def test_exercise_2_passes_an_order_the_bank_declines(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_02.exercise_2.sync(ingress, admin, _order(ingress, "OrderAgent", DESKS))
    assert result.ok, result
    assert "declined" in result.message


def test_exercise_2_fails_an_order_under_the_card_limit(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_02.exercise_2.sync(ingress, admin, _order(ingress, "OrderAgent", LAMPS))
    failed(result, "the order was paid ($80.00)", "the bank did not decline it")


def test_exercise_2_fails_the_agent_without_keys(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_02.exercise_2.sync(ingress, admin, _order(ingress, "OrderAgentNoKeys", DESKS))
    failed(result, "went to OrderAgentNoKeys, not OrderAgent")


def test_exercise_2_fails_an_item_the_shop_does_not_sell(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    result = check.lesson_02.exercise_2.sync(ingress, admin, _order(ingress, "OrderAgent", "Order 3 pianos for a@b.co"))
    failed(result, "the order never tried to pay")


def test_exercise_2_fails_the_lessons_own_declined_order(
    agents: AgentProcess, ingress: Ingress, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    section_3 = _order(ingress, "OrderAgent", DESKS)
    monkeypatch.setitem(_core._began, 2, _core._began[2])
    begin_again(2, admin)
    failed(check.lesson_02.exercise_2.sync(ingress, admin, section_3), "before you began the exercises")


# --- exercise 3: every hook point ---


def test_exercise_3_passes_a_kill_at_every_hook_point(hook_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_3.sync(admin, list(hook_crashes.values()))
    assert result.ok, result
    assert f"{len(HOOKS)} orders, each killed mid-order" in result.message


def test_exercise_3_fails_when_only_one_order_of_three_was_killed(
    hook_crashes: dict[str, str], ingress: Ingress, admin: Admin
) -> None:
    whole = [_order(ingress, "OrderAgent"), _order(ingress, "OrderAgent")]
    ids = [hook_crashes["orders.book_payment.after_effect"], *whole]
    result = check.lesson_02.exercise_3.sync(admin, ids)
    failed(result, "2 of the 3 orders ran in one process only", ids[1], ids[2])


def test_exercise_3_fails_the_before_effect_points_only(hook_crashes: dict[str, str], admin: Admin) -> None:
    ids = [i for gate, i in hook_crashes.items() if gate.endswith("before_effect")]
    result = check.lesson_02.exercise_3.sync(admin, ids)
    failed(result, "killed at 3 of the 9 hook points", "orders.check_stock.after_effect", "send_email.after_step")
    assert "book_payment.before_effect" not in result.message.split("none at")[1]


def test_exercise_3_fails_six_of_the_nine_hook_points(hook_crashes: dict[str, str], admin: Admin) -> None:
    """Six kills that land in all five stages the ledger tells apart: the text asks for every hook point."""
    left_out = ["orders.check_stock.after_step", "orders.book_payment.after_step", "orders.send_email.after_step"]
    ids = [i for gate, i in hook_crashes.items() if gate not in left_out]
    result = check.lesson_02.exercise_3.sync(admin, ids)
    failed(result, "killed at 6 of the 9 hook points", "none at " + ", ".join(left_out))


def test_exercise_3_reads_the_ledger_for_a_gate_armed_again_since(
    hook_crashes: dict[str, str], agents: AgentProcess, ingress: Ingress, admin: Admin
) -> None:
    """Exercise 1 done after exercise 3 arms book_payment.before_effect again: its report names exercise 1's order."""
    _crash_at(agents, ingress, "orders.book_payment.before_effect", "OrderAgentNoKeys", LAMPS)
    result = check.lesson_02.exercise_3.sync(admin, list(hook_crashes.values()))
    assert result.ok, result


def test_exercise_1_says_a_paused_order_needs_a_resume(agents: AgentProcess, ingress: Ingress, admin: Admin) -> None:
    """Killed, then left down past the retry policy's 120 attempts, an order is paused: attach alone would hang."""
    gate = Gate("orders.book_payment.before_effect").arm()
    sent = ingress.send("OrderAgentNoKeys", "run", LAMPS, key=f"ex02-{uuid.uuid4().hex[:8]}")
    gate.wait_reached(timeout=120, alive=lambda: agents.running)
    agents.kill()
    try:
        admin.pause(sent.invocation_id)
        wait_status(admin, sent.invocation_id, "paused", timeout=30)
        result = check.lesson_02.exercise_1.sync(admin, sent.invocation_id)
    finally:
        agents.start()
        admin.resume(sent.invocation_id)
        ingress.attach(sent.invocation_id)
    failed(result, f"order {sent.invocation_id} is paused, not finished", "120 times")
    assert "admin.resume(id)" in result.hint


def test_exercise_3_fails_orders_to_the_agent_without_keys(no_keys_crashes: dict[str, str], admin: Admin) -> None:
    result = check.lesson_02.exercise_3.sync(admin, list(no_keys_crashes.values()))
    failed(result, "went to OrderAgentNoKeys, not OrderAgent")


def test_exercise_3_fails_one_id_instead_of_a_list(hook_crashes: dict[str, str], admin: Admin) -> None:
    failed(check.lesson_02.exercise_3.sync(admin, hook_crashes[HOOKS[0]]), "pass a list of invocation ids")


def test_exercise_3_fails_orders_from_before_begin(
    hook_crashes: dict[str, str], admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_core._began, 2, _core._began[2])
    begin_again(2, admin)
    failed(check.lesson_02.exercise_3.sync(admin, list(hook_crashes.values())), "before you began the exercises")
