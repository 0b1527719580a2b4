"""Checks for lesson 02's exercises: a crash at a safe point, a terminal error the model reads, once-only effects.

Each check reads the server's invocation table and journal, and the ledger the agents write their effects to.
Run `check.lesson_02.begin(admin)` before the exercises: the checks refuse orders sent before it (the lesson's).

Where an order was killed is read from the ledger: the process that ran first (the killed one) and the one that
resumed the order each leave their pid on the effects they caused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..agents.orders import GATES
from ..clients import Admin, Ingress
from ..gates import Gate
from ..ledger import Effect, Ledger
from ..models import uses_gemini
from . import _core
from ._core import Began, completed, effects_of, exercise, output, require, require_new

__all__ = ["HOOK_POINTS", "Crash", "begin", "crash_of", "exercise_1", "exercise_2", "exercise_3", "killed_at"]

_KILL_HINT = (
    "arm Gate('orders.book_payment.before_effect'), send the order, gate.wait_reached(), process.kill(), "
    "process.start(), then ingress.attach(id)"
)
_STOPPED = (
    "the lesson's last section stopped the agent process (process.stop()): start it again with process.start(), "
    "then wait for the order with ingress.attach(id)"
)

STAGES = (
    "before the stock check's effect",
    "after the stock check's effect, before its step was journaled",
    "between the stock check and the payment",
    "after the payment, before the email",
    "after the email",
)
"""Where in an order a kill can land, as the ledger tells it (the hook points in orders.GATES, grouped)."""

_STAGE_GATES = {
    STAGES[0]: "check_stock.before_effect",
    STAGES[1]: "check_stock.after_effect",
    STAGES[2]: "check_stock.after_step or book_payment.before_effect",
    STAGES[3]: "book_payment.after_effect, book_payment.after_step or send_email.before_effect",
    STAGES[4]: "send_email.after_effect or send_email.after_step",
}


HOOK_POINTS = tuple(g for g in GATES if g.endswith((".before_effect", ".after_effect", ".after_step")))
"""The hook points around the effects that exercise 3 names: one order killed at each."""

_PAUSED = (
    "Restate pauses an order once it has failed 120 times (the lessons' retry policy: about 30 s of failures, the "
    "attempts made while its process was down included), if nobody paused it by hand"
)


def begin(admin: Admin) -> Began:
    """Record that you begin lesson 02's exercises now: the checks judge only the orders you send after it."""
    return _core.begin(2, admin)


@dataclass(frozen=True)
class Crash:
    """What the ledger tells about one order: the processes that ran it, in order, and where the first one died."""

    pids: tuple[int, ...]
    model_calls_before: int
    stage: str | None

    @property
    def killed(self) -> bool:
        """True if the order ran in more than one process (the first one was killed mid-order)."""
        return len(self.pids) >= 2


def _by(effects: list[Effect], pid: int) -> list[Effect]:
    return [e for e in effects if e.pid == pid]


def crash_of(invocation_id: str, ledger: Ledger | None = None) -> Crash:
    """Read from the ledger which processes ran an order, and at which stage the first one stopped."""
    kinds = ("model_call", "inventory_call", "payment", "email")
    effects = {k: effects_of(k, invocation_id=invocation_id, ledger=ledger) for k in kinds}
    ordered = sorted((e for es in effects.values() for e in es), key=lambda e: e.seq)
    pids = tuple(dict.fromkeys(e.pid for e in ordered))
    if len(pids) < 2:
        return Crash(pids, len(effects["model_call"]), None)
    first = pids[0]
    stock, payments, emails = effects["inventory_call"], effects["payment"], effects["email"]
    if _by(emails, first):
        stage = STAGES[4]
    elif _by(payments, first):
        stage = STAGES[3]
    elif not _by(stock, first):
        stage = STAGES[0]
    elif len(stock) > len(_by(stock, first)):
        stage = STAGES[1]
    else:
        stage = STAGES[2]
    return Crash(pids, len(_by(effects["model_call"], first)), stage)


_SIGNATURES = {
    "orders.check_stock.before_effect": (STAGES[0], 1),
    "orders.check_stock.after_effect": (STAGES[1], 1),
    "orders.check_stock.after_step": (STAGES[2], 1),
    "orders.book_payment.before_effect": (STAGES[2], 2),
    "orders.book_payment.after_effect": (STAGES[3], 2),
    "orders.book_payment.after_step": (STAGES[3], 2),
    "orders.send_email.before_effect": (STAGES[3], 3),
    "orders.send_email.after_effect": (STAGES[4], 3),
    "orders.send_email.after_step": (STAGES[4], 3),
}
"""What the ledger shows of an order killed at each hook point: its stage, and the model calls made before the kill."""


def killed_at(invocation_ids: Sequence[str], ledger: Ledger | None = None) -> dict[str, str]:
    """Return {hook point: the order killed there}, read from the gates' reports, else from the ledger.

    A gate's report (`Gate(name).reached`) names the invocation and the process that waited there: the order counts
    as killed at that point if that process is the first of the order's processes, and not its last. A gate armed
    again since (for another order) has lost its report: an order then counts for that point if the ledger shows what
    a kill there leaves (its stage, and the model calls made before the kill), once per order.
    """
    crashes = {i: crash_of(i, ledger) for i in dict.fromkeys(invocation_ids)}
    found: dict[str, str] = {}
    for point in HOOK_POINTS:
        report = Gate(point).reached or {}
        crash = crashes.get(str(report.get("invocation_id")))
        if crash is not None and crash.killed and crash.pids[0] == report.get("pid"):
            found[point] = str(report["invocation_id"])
    left = [i for i, c in crashes.items() if c.killed and i not in found.values()]
    for point in HOOK_POINTS:
        match = next((i for i in left if (crashes[i].stage, crashes[i].model_calls_before) == _SIGNATURES[point]), None)
        if point not in found and match is not None:
            found[point] = match
            left.remove(match)
    return found


def _finished_order(admin: Admin, invocation_id: str, service: str, why: str = "", *, every: bool = False) -> None:
    """Fail unless the order was sent after begin(), finished with success, and went to `service`."""
    row = require_new(admin, invocation_id, "the order")
    require(
        row["status"] != "paused",
        f"order {invocation_id} is paused, not finished: {_PAUSED}",
        "start the process if it is stopped (process.start()), then admin.resume(id) and ingress.attach(id)",
    )
    row = completed(admin, invocation_id, success=True, stopped=_STOPPED)
    require(
        row["target_service_name"] == service,
        f"{'order' if every else 'invocation'} {invocation_id} went to {row['target_service_name']}, not {service}",
        f"send every order to {service}: {why}"
        if every
        else f"send the order to {service}" + (f": {why}" if why else ", as the exercise says"),
    )


@exercise(2, 1)
def exercise_1(
    admin: Admin, invocation_id: str, *, service: str = "OrderAgentNoKeys", ledger: Ledger | None = None
) -> str:
    """An order to the agent without idempotency keys, killed before its payment: still exactly one payment."""
    _finished_order(admin, invocation_id, service, "the exercise is about the agent without keys")
    crash = crash_of(invocation_id, ledger)
    require(crash.killed, "the order ran in one process only: no crash happened during it", _KILL_HINT)
    killed, resumed = crash.pids[0], crash.pids[-1]
    payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
    require(
        len(payments) == 1,
        f"the order made {len(payments)} payments, by the processes {[p.pid for p in payments]}: the kill came after "
        "the payment's effect, so the step ran again and paid again (no idempotency key)",
        "kill it *before* the effect: arm orders.book_payment.before_effect; after the effect, a key is needed",
    )
    require(
        payments[0].pid != killed,
        f"the payment was made by the process you killed (pid {killed}), before the kill: the kill came "
        f"{crash.stage}, so there was no payment left to make after it",
        "arm the gate inside the payment step, before its effect: Gate('orders.book_payment.before_effect')",
    )
    require(
        crash.stage == STAGES[2],
        f"the kill came {crash.stage}: the order had not reached its payment step yet",
        "arm the gate inside the payment step, before its effect: Gate('orders.book_payment.before_effect')",
    )
    calls = effects_of("model_call", invocation_id=invocation_id, ledger=ledger)
    if not uses_gemini():
        require(
            crash.model_calls_before == 2,
            f"the killed process made {crash.model_calls_before} model call(s): the kill came before the model asked "
            "for the payment (it asks in its second call)",
            "arm the gate inside the payment step, before its effect: Gate('orders.book_payment.before_effect')",
        )
        require(
            len(calls) == 4,
            f"the model was called {len(calls)} times for this order, not 4",
            "the calls journaled before the crash are replayed, not made again: did the same invocation resume?",
        )
    return (
        f"one payment, made by the restarted process (pid {resumed}); the killed process (pid {killed}) had checked "
        f"the stock and made {crash.model_calls_before} model calls, and paid nothing ({len(calls)} model calls in "
        "all). Nothing had been paid before the kill, so there was nothing to repeat."
    )


@exercise(2, 2)
def exercise_2(
    ingress: Ingress, admin: Admin, invocation_id: str, *, service: str = "OrderAgent", ledger: Ledger | None = None
) -> str:
    """An order the bank declines: the TerminalError becomes an answer; nothing is paid, nobody is emailed."""
    _finished_order(admin, invocation_id, service)
    steps = admin.steps(invocation_id)
    require(
        "book payment" in steps,
        f"the order never tried to pay (steps: {steps})",
        "order more than the card limit allows, e.g. 'Order 3 desks for you@example.com' (over $1000)",
    )
    require(
        steps.count("book payment") == 1,
        f"the payment step appears {steps.count('book payment')} times in the journal",
        "a declined payment is a TerminalError: journaled once; send one order, to the agent as it is",
    )
    answer = output(ingress, invocation_id)
    payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
    paid = ", ".join(f"${float(p.detail.get('amount', 0)):.2f}" for p in payments)
    require(
        not payments,
        f"the order was paid ({paid}): the bank did not decline it",
        "order something that costs more than orders.CARD_LIMIT ($1000), e.g. 3 desks",
    )
    require(
        isinstance(answer, str) and "declined" in answer.lower(),
        f"the agent answered {answer!r}: that is not the bank's refusal",
        "order something that costs more than orders.CARD_LIMIT",
    )
    emails = effects_of("email", invocation_id=invocation_id, ledger=ledger)
    require(
        not emails,
        f"the declined order still caused {len(emails)} email(s)",
        "the script stops at the first error: send the order to the agent as the lesson built it",
    )
    return f"the payment step ran once and was not retried, nothing was paid or emailed, and the model said: {answer!r}"


@exercise(2, 3)
def exercise_3(
    admin: Admin, invocation_ids: Sequence[str], *, service: str = "OrderAgent", ledger: Ledger | None = None
) -> str:
    """Orders to the agent with keys, killed at every hook point around the effects: one payment and one email each."""
    require(
        not isinstance(invocation_ids, str),
        "pass a list of invocation ids, one per order, not one id",
        "collect the ids in your loop: ids.append(sent.invocation_id)",
    )
    ids = list(dict.fromkeys(invocation_ids))
    require(
        ids,
        f"no order given: kill the agent once at each of the {len(HOOK_POINTS)} hook points around the effects",
        "loop over the hook points: arm the gate, send an order, wait_reached, kill, start, attach",
    )
    crashes = {}
    for invocation_id in ids:
        _finished_order(admin, invocation_id, service, "it records its effects under an idempotency key", every=True)
        payments = effects_of("payment", invocation_id=invocation_id, ledger=ledger)
        emails = effects_of("email", invocation_id=invocation_id, ledger=ledger)
        require(
            len(payments) == 1 and len(emails) == 1,
            f"order {invocation_id} caused {len(payments)} payment(s) and {len(emails)} email(s), not one of each",
            "order something in stock and under the card limit (e.g. 1 chair), and let every order finish",
        )
        crashes[invocation_id] = crash_of(invocation_id, ledger)
    whole = [i for i, c in crashes.items() if not c.killed]
    require(
        not whole,
        f"{len(whole)} of the {len(ids)} orders ran in one process only, never killed mid-order: {', '.join(whole)}",
        "kill the agent during every order: arm the gate before you send, wait_reached(), then process.kill()",
    )
    points = killed_at(ids, ledger)
    absent = [p for p in HOOK_POINTS if p not in points]
    require(
        not absent,
        f"your orders were killed at {len(points)} of the {len(HOOK_POINTS)} hook points around the effects; "
        f"none at {', '.join(absent)}",
        "in one loop, for each of [g for g in orders.GATES if g.endswith(('before_effect', 'after_effect', "
        "'after_step'))]: arm its gate, send an order, gate.wait_reached(), process.kill(), process.start(), "
        "ingress.attach(id); pass every id",
    )
    missing = [s for s in STAGES if s not in {c.stage for c in crashes.values()}]
    require(
        not missing,
        f"no order was killed {'; none '.join(missing)} (hook points {'; '.join(_STAGE_GATES[s] for s in missing)})",
        "kill one order at each hook point around the effects: "
        "[g for g in orders.GATES if 'effect' in g or 'after_step' in g]",
    )
    return (
        f"{len(ids)} orders, each killed mid-order, at all {len(HOOK_POINTS)} hook points around the effects (the "
        f"{len(STAGES)} stages the ledger can tell apart: {'; '.join(STAGES)}), and each order has exactly one "
        "payment and one email"
    )
