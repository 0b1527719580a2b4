"""Checks for lesson 08's exercises: no invocation lost to a node kill, once-only under two dead nodes, a rejection.

Pass an `Admin` of any running node (`Admin(cluster.admin_url)`): every node's admin API sees the whole cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..clients import Admin, Ingress
from ._core import completed, exercise, output, require

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@exercise(8, 1)
def exercise_1(admin: Admin, invocation_ids: Sequence[str], cluster: Any = None) -> str:
    """Claims sent while a node (node 1, say) was down: every one completed, and the node is back."""
    ids = list(dict.fromkeys(invocation_ids))
    require(ids, "no invocation given: pass the ids of the claims you sent while the node was down")
    for invocation_id in ids:
        completed(admin, invocation_id, success=True)
    if cluster is not None:
        down = [h.node for h in cluster.health() if not h.alive]
        require(not down, f"these nodes are not back: {down}", "start the node you killed: cluster.nodes[i].start()")
    return f"all {len(ids)} invocation(s) completed with a node down: none was lost"


@exercise(8, 2)
def exercise_2(admin: Admin, idempotency_key: str, *, service: str = "ExpenseAgent") -> str:
    """A claim sent with an idempotency key while two nodes were down, then again: it ran once, and finished."""
    rows = admin.query(
        "SELECT id, status, completion_result FROM sys_invocation "
        f"WHERE target_service_name = {_sql(service)} AND idempotency_key = {_sql(idempotency_key)}"
    )
    require(
        rows,
        f"no {service} invocation has the idempotency key {idempotency_key!r}",
        "send the claim with ingress.call(..., idempotency_key=...) (a timeout is fine), then again with the same key",
    )
    require(len(rows) == 1, f"{len(rows)} invocations carry that key: it ran more than once")
    completed(admin, rows[0]["id"], success=True)
    return f"one invocation ({rows[0]['id']}) for the key {idempotency_key!r}, completed: the retry attached to it"


@exercise(8, 3)
def exercise_3(ingress: Ingress, admin: Admin, invocation_id: str) -> str:
    """An expense whose approval was rejected: the agent finished and told the customer so."""
    completed(admin, invocation_id, success=True)
    answer = output(ingress, invocation_id)
    require(
        isinstance(answer, str) and "rejected" in answer.lower(),
        f"the agent answered {answer!r}: not a rejection",
        'resolve its approval with approve(ingress, approvals, by="li", approved=False)',
    )
    return f"the agent answered {answer!r}"
