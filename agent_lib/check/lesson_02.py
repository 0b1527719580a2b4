"""Checks for lesson 02's exercises: a crash at a safe point, a terminal error the model reads, once-only effects.

Each check reads the server's invocation table and journal, and the ledger the agents write their effects to.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..clients import Admin, Ingress
from ..ledger import Ledger
from ..models import uses_gemini
from ._core import completed, effects_of, exercise, output, require

__all__ = ["exercise_1", "exercise_2", "exercise_3"]

_KILL_HINT = (
    "arm Gate('orders.book_payment.before_effect'), send the order, gate.wait_reached(), process.kill(), "
    "process.start(), then ingress.attach(id)"
)


def _pids(invocation_id: str, ledger: Ledger | None) -> set[int]:
    effects = effects_of("model_call", invocation_id=invocation_id, ledger=ledger)
    effects += effects_of("inventory_call", invocation_id=invocation_id, ledger=ledger)
    return {e.pid for e in effects}


@exercise(2, 1)
def exercise_1(
    admin: Admin, invocation_id: str, *, service: str = "OrderAgentNoKeys", ledger: Ledger | None = None
) -> str:
    """An order to the agent without idempotency keys, killed before its payment: still exactly one payment."""
    row = completed(admin, invocation_id, success=True)
    require(
        row["target_service_name"] == service,
        f"invocation {invocation_id} went to {row['target_service_name']}, not {service}",
        f"send the order to {service}: the exercise is about the agent without keys",
    )
    pids = _pids(invocation_id, ledger)
    require(len(pids) >= 2, "the order ran in one process only: no crash happened during it", _KILL_HINT)
    payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
    require(
        len(payments) == 1,
        f"the order made {len(payments)} payments",
        "kill it *before* the effect (book_payment.before_effect); after the effect, a key is needed",
    )
    calls = effects_of("model_call", invocation_id=invocation_id, ledger=ledger)
    if not uses_gemini():
        require(
            len(calls) == 4,
            f"the model was called {len(calls)} times for this order, not 4",
            "the calls journaled before the crash are replayed, not made again: did the same invocation resume?",
        )
    return (
        f"one payment, made by the process that resumed the order after the crash ({len(pids)} processes, "
        f"{len(calls)} model calls in all). Nothing had been paid before the kill, so there was nothing to repeat."
    )


@exercise(2, 2)
def exercise_2(ingress: Ingress, admin: Admin, invocation_id: str, *, ledger: Ledger | None = None) -> str:
    """An order the bank declines: the TerminalError becomes an answer; nothing is paid, nobody is emailed."""
    completed(admin, invocation_id, success=True)
    steps = admin.steps(invocation_id)
    require(
        "book payment" in steps,
        f"the order never tried to pay (steps: {steps})",
        "order more than the card limit allows, e.g. 'Order 3 desks for you@example.com' (over $1000)",
    )
    require(
        steps.count("book payment") == 1,
        f"the payment step appears {steps.count('book payment')} times in the journal",
    )
    answer = output(ingress, invocation_id)
    require(
        isinstance(answer, str) and "declined" in answer.lower(),
        f"the agent answered {answer!r}: that is not the bank's refusal",
        "order something that costs more than orders.CARD_LIMIT",
    )
    payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
    emails = effects_of("email", invocation_id=invocation_id, ledger=ledger)
    require(
        not payments and not emails,
        f"the declined order still caused {len(payments)} payment(s) and {len(emails)} email(s)",
    )
    return f"the step failed once, was not retried, and the model told the customer: {answer!r}"


@exercise(2, 3)
def exercise_3(
    admin: Admin, invocation_ids: Sequence[str], *, service: str = "OrderAgent", ledger: Ledger | None = None
) -> str:
    """Orders to the agent with keys, each killed at a different hook point: each has one payment and one email."""
    ids = list(dict.fromkeys(invocation_ids))
    require(
        len(ids) >= 3,
        f"{len(ids)} distinct orders given: kill the agent at three hook points or more",
        "loop over orders.GATES: arm the gate, send an order, wait_reached, kill, start, attach",
    )
    crashed = 0
    for invocation_id in ids:
        row = completed(admin, invocation_id, success=True)
        require(
            row["target_service_name"] == service,
            f"order {invocation_id} went to {row['target_service_name']}, not {service}",
        )
        payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
        emails = effects_of("email", invocation_id=invocation_id, ledger=ledger)
        require(
            len(payments) == 1 and len(emails) == 1,
            f"order {invocation_id} caused {len(payments)} payment(s) and {len(emails)} email(s), not one of each",
            "OrderAgent records both under an idempotency key: did this order go to OrderAgentNoKeys?",
        )
        crashed += len(_pids(invocation_id, ledger)) >= 2
    require(crashed >= 1, "none of these orders ran in two processes: the agent was never killed mid-order", _KILL_HINT)
    return f"{len(ids)} orders, {crashed} of them across a kill mid-run, each with exactly one payment and one email"
