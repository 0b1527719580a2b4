"""Checks for lesson 10's exercises: a third specialist, the loop killed in round 2, research in parallel then write.

Run `check.lesson_10.begin(admin)` before the exercises: the checks then judge only the invocations and deployments
made after it, and refuse the lesson's own.
"""

from __future__ import annotations

import json
from typing import Any

from .._sql import sql_literal
from ..agents.patterns import REFUND_KIND, model_call_audit, model_turns
from ..clients import Admin, Ingress
from . import _core
from ._core import Began, call, completed, effects_of, exercise, fresh_key, require, require_new, require_served
from ._core import require_new_deployment as _require_new_deployment

__all__ = ["RETURN_MESSAGE", "REFUND_MESSAGE", "begin", "exercise_1", "exercise_2", "exercise_3"]

RETURN_MESSAGE = "I want to return order AB-1003"
"""What exercise 1's check asks the desk first: it must reach `returns_agent`."""
REFUND_MESSAGE = "I was charged twice for order AB-1001: refund it, please"
"""What exercise 1's check asks the desk second: it must reach `billing_agent`."""
TOPICS = ["returns", "shipping"]
"""The topics exercise 3's check sends."""


def begin(admin: Admin) -> Began:
    """Begin lesson 10's exercises now (server time): the checks then judge only what is made after it."""
    return _core.begin(10, admin)


def _service_type(admin: Admin, service: str) -> str:
    rows = admin.query(f"SELECT ty FROM sys_service WHERE name = {sql_literal(service)}")
    return str(rows[0]["ty"]) if rows else ""


def _answer_of(result: Any, service: str) -> tuple[str, str]:
    require(
        isinstance(result, dict) and isinstance(result.get("agent"), str) and "answer" in result,
        f"{service} answered {str(result)[:200]!r}, not an object with 'agent' and 'answer'",
        'return {"agent": the final event\'s author, "answer": its text}, as HelpDesk does (patterns.Answer)',
    )
    return str(result["agent"]), str(result["answer"])


@exercise(10, 1)
def exercise_1(ingress: Ingress, admin: Admin, service: str = "ReturnsDesk", *, handler: str = "ask") -> str:
    """Your desk with a returns specialist: a return reaches returns_agent and its durable step, a refund billing."""
    require_served(admin, service)
    _require_new_deployment(admin, service, "serve your ReturnsDesk now, with serve_in_kernel([...], admin=admin)")
    require(
        "object" in _service_type(admin, service).lower(),
        f"{service} is a service, not a virtual object",
        f'declare it with restate.VirtualObject("{service}"): RestateSessionService keeps the session in its state',
    )
    returned_id, returned = call(ingress, service, handler, RETURN_MESSAGE, key=fresh_key("return"))
    agent, _ = _answer_of(returned, service)
    turns = model_turns(admin, returned_id)
    require(
        bool(turns) and turns[0].startswith("transfer_to_agent") and "returns_agent" in turns[0],
        f"asked {RETURN_MESSAGE!r}, the coordinator's first model call answered {turns[:1] or 'nothing journaled'}, "
        "not a transfer_to_agent to returns_agent",
        "give the coordinator sub_agents=[billing_agent(), returns_agent], and a script that answers a return with "
        '[Call("transfer_to_agent", {"agent_name": "returns_agent"})]',
    )
    require(
        agent == "returns_agent",
        f"asked {RETURN_MESSAGE!r}, the answer came from {agent!r}, not returns_agent",
        "name the specialist returns_agent, and return the author of the final event",
    )
    steps = admin.steps(returned_id)
    require(
        "book return" in steps,
        f"the return's journal has no durable step named 'book return': its steps are {steps}",
        'in book_return, run the work with restate_object_context().run_typed("book return", ...)',
    )
    refunded_id, refunded = call(ingress, service, handler, REFUND_MESSAGE, key=fresh_key("refund"))
    agent, _ = _answer_of(refunded, service)
    require(
        agent == "billing_agent",
        f"asked {REFUND_MESSAGE!r}, the answer came from {agent!r}, not billing_agent",
        "keep patterns.billing_agent() among the coordinator's sub_agents, and transfer refunds to it",
    )
    refunds = len(effects_of(REFUND_KIND, invocation_id=refunded_id))
    require(
        refunds == 1 and "refund order" in admin.steps(refunded_id),
        f"the refund request booked {refunds} refund(s) with steps {admin.steps(refunded_id)}, not one 'refund order'",
        "the billing agent's refund_order tool books it: let the coordinator transfer to billing_agent",
    )
    return (
        f"a return went to returns_agent (steps {steps}), and a refund to billing_agent, which booked one refund; "
        f"the coordinator's journaled answer: {turns[0]}"
    )


@exercise(10, 2)
def exercise_2(ingress: Ingress, admin: Admin, invocation_id: str) -> str:
    """DraftLoop killed in round 2: the loop finished, round 1 came from the journal, nothing was paid for twice."""
    row = require_new(admin, invocation_id, "the loop")
    require(
        (row["target_service_name"], row["target_handler_name"]) == ("DraftLoop", "improve"),
        f"{invocation_id} is a {row['target_service_name']}/{row['target_handler_name']} invocation, not "
        "DraftLoop/improve",
        'pass the id that ingress.send("DraftLoop", "improve", task, key=...) gave you',
    )
    completed(admin, invocation_id, success=True, stopped="start the agents' process again (agents.start()), then wait")
    audit = model_call_audit(admin, invocation_id)
    calls = [r for r in audit if r["service"] in ("Writer", "Reviewer")]
    repeated = [r for r in calls if r["paid"] != r["journaled"]]
    require(
        not repeated,
        f"{len(repeated)} agent call(s) paid for a model call their journal already held: "
        + ", ".join(f"{r['service']} {r['id']}: {r['paid']} paid, {r['journaled']} journaled" for r in repeated),
        "keep RestatePlugin on the agents: it journals each model call",
    )
    require(
        len(calls) >= 4,
        f"the loop made {len(calls)} agent call(s): it stopped before round 2 ended",
        "send a task of your own and let the loop run: it passes in round 3",
    )
    pids = [set(r["pids"]) for r in calls]
    require(
        len(set().union(*pids)) >= 2,
        "all of the loop's agent calls were made by one process: no kill fell between them",
        'arm Gate("patterns.loop.round2") before you send, gate.wait_reached(), then agents.kill() and agents.start()',
    )
    killed = pids[0]
    in_killed = [i for i, p in enumerate(pids) if p & killed]
    rounds = sorted({i // 2 + 1 for i in in_killed})
    require(
        in_killed == [0, 1],
        f"the first process made the agent calls of round(s) {rounds} ({len(in_killed)} of {len(calls)} calls): "
        + ("the kill came later than round 2's start" if max(rounds) > 1 else "the kill came inside round 1"),
        'arm Gate("patterns.loop.round2") (the writer of round 2 stops there), and kill once it is reached',
    )
    state = {k: json.loads(v) for k, v in admin.state("DraftLoop", row["target_service_key"]).items()}
    kept = [r["round"] for r in state.get("rounds", [])]
    require(
        kept == list(range(1, len(calls) // 2 + 1)),
        f"the loop's state holds rounds {kept}, not one entry per round it ran",
        "use a new key for your loop: another improve on the same key replaces its rounds",
    )
    return (
        f"killed in round 2, the loop resumed there: round 1's writer and reviewer ran once, in the killed process; "
        f"{len(calls) // 2} rounds in all, kept in state; no journaled model call was made twice"
    )


def _children(admin: Admin, invocation_id: str) -> list[str]:
    rows = admin.query(
        "SELECT target_service_name AS service FROM sys_invocation "
        f"WHERE invoked_by_id = {sql_literal(invocation_id)} ORDER BY created_at"
    )
    return [str(r["service"]) for r in rows]


@exercise(10, 3)
def exercise_3(ingress: Ingress, admin: Admin, service: str = "BriefWriter", *, handler: str = "brief") -> str:
    """Your BriefWriter: both research calls started before either answered, one write call after both."""
    require_served(admin, service)
    _require_new_deployment(admin, service, "serve your BriefWriter now, with serve_in_kernel([...], admin=admin)")
    invocation_id, draft = call(ingress, service, handler, TOPICS)
    children = _children(admin, invocation_id)
    require(
        sorted(children) == ["Researcher", "Researcher", "Writer"],
        f"{service} called {children or 'no agent service'}, not Researcher twice and Writer once",
        "one ctx.service_call(patterns.research, arg=topic) per topic, then one ctx.service_call(patterns.write, ...)",
    )
    journal = [r for r in admin.journal(invocation_id) if r["entry_type"] in ("Command: Call", "Notification: Call")]
    kinds = ["call" if r["entry_type"] == "Command: Call" else "result" for r in journal]
    require(
        kinds[:2] == ["call", "call"],
        f"the journal's calls and results came in the order {kinds}: the second research call started only after "
        "the first had answered",
        "create both calls first, then await restate.gather(*calls)",
    )
    require(
        children[-1] == "Writer" and kinds[-2:] == ["call", "result"] and kinds.count("result") == 3,
        f"the write call was not made after both research results: the journal's order is {kinds}",
        "await the gather, then make the write call with all the facts",
    )
    require(
        isinstance(draft, str) and draft.strip() != "",
        f"{service} returned {draft!r}, not the writer's draft",
        "return what the write call answered",
    )
    return f"two research calls started together, then one write call; the draft: {draft[:120]!r}"
