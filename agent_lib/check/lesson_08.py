"""Checks for lesson 08's exercises: no claim lost while node 1 was down, once-only under two dead nodes, a rejection.

Run `check.lesson_08.begin(admin, cluster)` before the exercises, once the cluster runs again. It records the start
(the checks then refuse the lesson's own claims) and watches, from this kernel, when each node of `cluster` stops and
starts: the checks compare the claims' times with the nodes' down times. Pass an `Admin` of any running node
(`Admin(cluster.admin_url)`): every node's admin API sees the whole cluster.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._sql import sql_literal
from ..clients import Admin, Ingress, RestateError
from ..observe import timeline
from . import _core
from ._core import Began, Fail, completed, created_at, exercise, output, remaining, require, require_new

__all__ = ["begin", "exercise_1", "exercise_2", "exercise_3"]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class _Watch:
    """Which nodes of a cluster were down, and when (naive UTC): polled from this process every 0.1 s."""

    cluster: Any
    down: dict[int, list[list[datetime | None]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._poll()
        threading.Thread(target=self._run, name="lesson 08 node watch", daemon=True).start()

    def _poll(self) -> None:
        now = _now()
        for number, node in enumerate(self.cluster.nodes, start=1):
            spans = self.down.setdefault(number, [])
            is_down = not node.running
            if is_down and (not spans or spans[-1][1] is not None):
                spans.append([now, None])
            elif not is_down and spans and spans[-1][1] is None:
                spans[-1][1] = now

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            self._poll()

    def spans(self, number: int) -> list[tuple[datetime, datetime]]:
        """Return node `number`'s down times, each (from, to); a node still down is down until now."""
        self._poll()
        return [(start, end or _now()) for start, end in self.down.get(number, []) if start is not None]

    def down_during(self, number: int, start: datetime, end: datetime) -> bool:
        return any(a <= start and end <= b for a, b in self.spans(number))

    def two_down(self) -> list[tuple[datetime, datetime]]:
        """Return the times when at least two nodes were down together."""
        nodes = list(self.down)
        found = []
        for i, first in enumerate(nodes):
            for second in nodes[i + 1 :]:
                for a1, b1 in self.spans(first):
                    for a2, b2 in self.spans(second):
                        if max(a1, a2) < min(b1, b2):
                            found.append((max(a1, a2), min(b1, b2)))
        return found


_watch: _Watch | None = None


def begin(admin: Admin, cluster: Any = None) -> Began:
    """Begin lesson 08's exercises now (server time), and watch `cluster`'s nodes stop and start from now on."""
    global _watch
    began = _core.begin(8, admin)
    if cluster is not None:
        if _watch is not None:
            _watch.stop.set()
        _watch = _Watch(cluster)
    return began


def _watching(cluster: Any = None) -> _Watch:
    require(
        _watch is not None and (cluster is None or _watch.cluster is cluster),
        "the check does not watch this cluster's nodes, so it cannot tell when a node was down",
        "run `check.lesson_08.begin(admin, cluster)` once the cluster runs, then do the exercise again after it",
    )
    assert _watch is not None
    return _watch


def _query(admin: Admin, sql: str) -> list[dict[str, Any]]:
    """Run a query, asking again for a while if the cluster answers 5xx (a node down: partitions moving)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return admin.query(sql)
        except RestateError as err:
            if err.status < 500 or time.monotonic() > deadline:
                raise
        remaining("the cluster to answer a query (a node is down, its partitions move)")
        time.sleep(0.5)


def _row(admin: Admin, invocation_id: str) -> dict[str, Any]:
    require(
        isinstance(invocation_id, str) and invocation_id.startswith("inv_"),
        f"{invocation_id!r} is not an invocation id",
        "pass an id like 'inv_1abc...', as `ingress.send(...).invocation_id` gave it",
    )
    rows = _query(admin, f"SELECT * FROM sys_invocation WHERE id = {sql_literal(invocation_id)}")
    require(rows, f"the cluster has no invocation {invocation_id!r}", "pass the id that ingress.send(...) gave you")
    return rows[0]


def _clock(at: datetime) -> str:
    return f"{at:%H:%M:%S}"


_RECEIPT = re.compile(r"\bR-[A-Za-z0-9][\w-]*")


def _receipt(admin: Admin, invocation_id: str) -> str | None:
    """Return the receipt number a claim names, read from its journal's input (the message, as bytes)."""
    rows = _query(
        admin,
        f"SELECT entry_json FROM sys_journal WHERE id = {sql_literal(invocation_id)} AND entry_type = 'Command: Input'",
    )
    for row in rows:
        try:
            payload = json.loads(str(row.get("entry_json") or "{}"))["Command"]["Input"]["payload"]
            found = _RECEIPT.search(bytes(payload).decode("utf-8", errors="replace"))
        except (ValueError, KeyError, TypeError):
            continue
        if found:
            return found[0]
    return None


def _require_finished(admin: Admin, row: dict[str, Any]) -> None:
    """Fail unless the claim has finished, saying what it waits on (read from its state and journal), never hang."""
    if row.get("status") == "completed":
        return
    invocation_id, key, status = row["id"], row.get("target_service_key"), row.get("status")
    state = _query(
        admin,
        f"SELECT key FROM state WHERE service_name = {sql_literal(row['target_service_name'])} "
        f"AND service_key = {sql_literal(str(key))} AND key = 'approval'",
    )
    if state:
        raise Fail(
            f"the claim {invocation_id} still waits for its approval (its state holds the approval's id)",
            f'decide it: approve(node, wait_pending(node, ["{key}"]), by="...") (approved=False to reject)',
        )
    steps = timeline(admin, invocation_id)
    open_steps = steps[~steps["done"]] if not steps.empty else steps
    if not open_steps.empty:
        step = str(open_steps.iloc[-1]["step"])
        if step == "Check receipt":
            receipt = _receipt(admin, invocation_id) or "R-..."
            raise Fail(
                f"the claim {invocation_id} is {status!r}: its journal shows the step 'Check receipt' started, with no "
                f"result yet: accounting has not released receipt {receipt}, and the check waits until it is",
                f'release it: accounting.release("{receipt}"); then decide its approval',
            )
        raise Fail(
            f"the claim {invocation_id} is {status!r}: its journal shows the step {step!r} started, with no result yet",
            f"read its journal (Admin(cluster.admin_url).journal({invocation_id!r})) and its last failure "
            f"(admin.invocation(id)['last_failure'])",
        )
    raise Fail(
        f"the claim {invocation_id} is {status!r}, not finished yet"
        + (f"; its last failure: {str(row.get('last_failure'))[:200]}" if row.get("last_failure") else ""),
        f"read its journal (Admin(cluster.admin_url).journal({invocation_id!r})); is the agent running "
        "(agent.start())? Run the check again once it has finished",
    )


@exercise(8, 1, deadline=90)
def exercise_1(admin: Admin, invocation_ids: Sequence[str], cluster: Any) -> str:
    """Claims sent and finished while node 1 was down: every one completed, and node 1 is back."""
    watch = _watching(cluster)
    ids = list(dict.fromkeys([invocation_ids] if isinstance(invocation_ids, str) else invocation_ids))
    require(
        ids,
        "no invocation given: pass the ids of the claims you sent while node 1 was down",
        "stop node 1, send claims with ingress.send(...) to another node, and pass their .invocation_id values",
    )
    for invocation_id in ids:
        require_new(admin, _row(admin, invocation_id), "the claim")
    node_1 = watch.spans(1)
    others = [n for n in watch.down if n != 1 and watch.spans(n)]
    require(
        node_1,
        "node 1 was never down since you began the exercises"
        + (f": you killed node {', '.join(map(str, others))}" if others else ""),
        "kill node 1, the node that provisioned the cluster: cluster.nodes[0].kill()",
    )
    for invocation_id in ids:
        _require_finished(admin, _row(admin, invocation_id))
        row = completed(admin, invocation_id, success=True, stopped="start the agent again: agent.start()")
        start, end = created_at(row["created_at"]), created_at(row["completed_at"])
        require(
            watch.down_during(1, start, end),
            f"the claim {invocation_id} ran from {_clock(start)} to {_clock(end)}, not while node 1 was down "
            f"(down: {', '.join(f'{_clock(a)}-{_clock(b)}' for a, b in node_1)} UTC)",
            "kill node 1 first, then send the claim through another node, and let it finish before you start node 1 "
            "again",
        )
    down = [h.node for h in cluster.health() if not h.alive]
    require(not down, f"these nodes are not back: {down}", "start the node you killed: cluster.nodes[0].start()")
    return f"all {len(ids)} claim(s) ran and completed while node 1 was down; node 1 is back"


@exercise(8, 2, deadline=90)
def exercise_2(admin: Admin, idempotency_key: str, *, service: str = "ExpenseAgent") -> str:
    """A claim sent with an idempotency key while two nodes were down, then again: it ran once, and finished."""
    watch = _watching()
    rows = _query(
        admin,
        "SELECT * FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} AND idempotency_key = {sql_literal(idempotency_key)}",
    )
    require(
        rows,
        f"no {service} invocation has the idempotency key {idempotency_key!r}",
        "send the claim with ingress.send(..., idempotency_key=...) (a timeout is fine), then again with the same key",
    )
    require(
        len(rows) == 1,
        f"{len(rows)} invocations carry that key: it ran more than once",
        "send both tries with the same idempotency_key to the same service and handler, and the same object key",
    )
    row = require_new(admin, rows[0], "the claim")
    windows = watch.two_down()
    require(
        windows,
        "no two nodes were down at the same time since you began the exercises: the first send did not meet a "
        "cluster without a majority",
        "kill two nodes (cluster.nodes[0].kill(), cluster.nodes[1].kill()), then send through the third",
    )
    _require_finished(admin, row)
    row = completed(admin, row["id"], success=True, stopped="start the agent again: agent.start()")
    first_outage = min(a for a, _ in windows)
    require(
        created_at(row["completed_at"]) > first_outage,
        f"the claim had finished before two nodes were down ({_clock(first_outage)} UTC)",
        "kill two nodes first, send the claim (it times out), start one node, then send it again with the same key",
    )
    same_key = _query(
        admin,
        "SELECT id, idempotency_key, created_at FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} "
        f"AND target_handler_name = {sql_literal(row['target_handler_name'])} "
        f"AND target_service_key = {sql_literal(row['target_service_key'])}",
    )
    again = [r["id"] for r in same_key if r["id"] != row["id"] and created_at(r["created_at"]) >= _core.began().at]
    require(
        not again,
        f"the claim's key {row['target_service_key']!r} ran {len(again) + 1} times: {[row['id'], *again]}; the "
        "retry did not carry the same idempotency key",
        "send the retry with the same idempotency_key= as the first try",
    )
    down = [h.node for h in watch.cluster.health() if not h.alive]
    require(
        not down,
        f"the claim ran once, but these nodes are still down: {down}",
        "start the other node too (cluster.nodes[1].start(), then cluster.wait_ready()), as the exercise says",
    )
    return (
        f"one invocation ({row['id']}) for the idempotency key {idempotency_key!r}, completed after two nodes had "
        "been down: the retry did not run the claim twice"
    )


@exercise(8, 3, deadline=90)
def exercise_3(ingress: Ingress, admin: Admin, invocation_id: str) -> str:
    """An expense whose approval was rejected: the agent finished and told the customer so."""
    row = require_new(admin, _row(admin, invocation_id), "the claim")
    _require_finished(admin, row)
    completed(admin, invocation_id, success=True, stopped="start the agent again: agent.start()")
    answer = output(ingress, invocation_id)
    text = str(answer).lower()
    require(
        isinstance(answer, str) and "rejected" in text,
        f"the agent answered {answer!r}: not a rejection",
        'resolve its approval with approve(ingress, approvals, by="li", approved=False)',
    )
    require(
        re.search(r"\bli\b", text),
        f"the agent answered {answer!r}: the rejection is not li's",
        'reject it as li: approve(ingress, approvals, by="li", approved=False)',
    )
    return f"the agent answered {answer!r}"
