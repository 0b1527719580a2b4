"""An approval panel for claims that wait for a human: lesson 04.

The panel lists the pending approval requests of a claims approvals service (who, how much,
why, and the live status of the waiting invocation), with a reason field and Approve and
Reject buttons on each. A button calls `ApprovalPanel.adecide`, which posts the decision to
the approvals service's ``decide`` handler over the ingress API; that handler checks the
approver and resolves or rejects the agent's awakeable. A notebook run by CI, which cannot
click, calls the very same `adecide`.

The panel reads what it shows from the admin API (the ``state`` and ``sys_invocation``
tables) in a worker thread, so refreshing never blocks the kernel; `watch` keeps it live.
It never shows, and never holds, an awakeable id.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from .._sql import sql_literal
from ..clients import Admin, Ingress, RestateError

__all__ = [
    "ApprovalPanel",
    "ApprovalRequest",
    "Decision",
    "format_amount",
    "invocation_statuses",
    "pending_requests",
    "status_badge",
]

_STATUS_COLORS: dict[str, tuple[str, str]] = {
    "suspended": ("#7a4d00", "#fff1d6"),
    "running": ("#0b4f8a", "#e1efff"),
    "backing-off": ("#9b1c1c", "#fde8e8"),
    "paused": ("#5b5b5b", "#ececec"),
    "completed": ("#1e6b34", "#e3f6e8"),
    "pending": ("#5b5b5b", "#ececec"),
    "scheduled": ("#5b5b5b", "#ececec"),
    "ready": ("#5b5b5b", "#ececec"),
}


@dataclass(frozen=True)
class ApprovalRequest:
    """A claim that waits for a human decision, as approvers may see it (no awakeable id)."""

    claim: str
    customer: str
    amount: float
    currency: str
    description: str
    invocation_id: str | None = None

    @classmethod
    def from_state(cls, claim: str, value: dict[str, Any]) -> ApprovalRequest:
        """Read a request from the approvals service's ``pending`` state value."""
        return cls(
            claim=claim,
            customer=str(value.get("customer", "?")),
            amount=float(value.get("amount", 0.0)),
            currency=str(value.get("currency", "")),
            description=str(value.get("description", "")),
            invocation_id=value.get("invocation_id"),
        )

    @property
    def amount_text(self) -> str:
        """The amount with its currency, e.g. "1,800.00 EUR"."""
        return format_amount(self.amount, self.currency)


@dataclass(frozen=True)
class Decision:
    """What came of one Approve or Reject: accepted by the approvals service, or refused and why."""

    claim: str
    approve: bool
    approver: str
    reason: str
    accepted: bool
    status_code: int | None = None
    message: str = ""

    @property
    def text(self) -> str:
        """Say what happened, in one line."""
        verb = "Approved" if self.approve else "Rejected"
        if self.accepted:
            return f"{verb} by {self.approver}" + (f": {self.reason}" if self.reason else "")
        code = f" ({self.status_code})" if self.status_code else ""
        return f"Refused{code}: {self.message}"


def format_amount(amount: float, currency: str) -> str:
    """Format an amount for people, e.g. format_amount(1800, "EUR") == "1,800.00 EUR"."""
    return f"{amount:,.2f} {currency}".strip()


def pending_requests(admin: Admin, service: str) -> list[ApprovalRequest]:
    """Read every pending request of an approvals service from the server's state table."""
    rows = admin.query(
        "SELECT service_key, value_utf8 FROM state "
        f"WHERE service_name = {sql_literal(service)} AND key = 'pending' ORDER BY service_key"
    )
    requests = []
    for row in rows:
        try:
            value = json.loads(row["value_utf8"])
        except (TypeError, ValueError):
            continue
        if isinstance(value, dict):
            requests.append(ApprovalRequest.from_state(row["service_key"], value))
    return requests


def invocation_statuses(admin: Admin, invocation_ids: Iterable[str]) -> dict[str, str]:
    """Return {invocation id: status} for the given invocations (absent ones are left out)."""
    ids = sorted({i for i in invocation_ids if i})
    if not ids:
        return {}
    rows = admin.query(f"SELECT id, status FROM sys_invocation WHERE id IN ({', '.join(map(sql_literal, ids))})")
    return {r["id"]: r["status"] for r in rows}


def status_badge(status: str | None) -> str:
    """Render an invocation status as a small coloured HTML badge."""
    text = status or "unknown"
    fg, bg = _STATUS_COLORS.get(text, ("#5b5b5b", "#ececec"))
    return (
        f'<span style="color:{fg};background:{bg};border-radius:10px;padding:1px 9px;'
        f'font-size:12px;font-weight:600;white-space:nowrap">{html.escape(text)}</span>'
    )


class _Row:
    """The widgets of one claim in the panel."""

    def __init__(self, request: ApprovalRequest, on_decide: Callable[[str, bool], None]) -> None:
        self.request = request
        self.header = w.HTML()
        self.reason = w.Text(placeholder="Reason (needed to reject)", layout=w.Layout(flex="1 1 auto", width="auto"))
        self.approve = w.Button(
            description="Approve", button_style="success", icon="check", layout=w.Layout(width="110px")
        )
        self.reject = w.Button(
            description="Reject", button_style="danger", icon="times", layout=w.Layout(width="110px")
        )
        self.approve.on_click(lambda _: on_decide(request.claim, True))
        self.reject.on_click(lambda _: on_decide(request.claim, False))
        self.controls = w.HBox([self.reason, self.approve, self.reject], layout=w.Layout(gap="6px"))
        self.feedback = w.HTML()
        self.box = w.VBox(
            [self.header, self.controls, self.feedback],
            layout=w.Layout(border="1px solid #d9d9d9", padding="6px 10px", margin="4px 0", gap="4px"),
        )
        self.box.add_class("approval-row")
        self.box.add_class(f"approval-claim-{_css_name(request.claim)}")

    def show(self, status: str | None, decision: Decision | None, gone: bool) -> None:
        r = self.request
        invocation = f"invocation {html.escape(r.invocation_id)}" if r.invocation_id else "invocation unknown"
        self.header.value = (
            '<div style="display:flex;justify-content:space-between;align-items:center;gap:12px">'
            f'<div style="font-size:14px"><b>{html.escape(r.customer)}</b> claims <b>{html.escape(r.amount_text)}</b>'
            f'<span style="color:#777"> · {html.escape(r.claim)}</span></div>{status_badge(status)}</div>'
            f'<div style="margin-top:2px">“{html.escape(r.description)}”</div>'
            f'<div style="color:#888;font-size:11px">{invocation}</div>'
        )
        decided = decision is not None and decision.accepted
        self.controls.layout.display = "none" if decided or gone else ""
        if decided:
            assert decision is not None
            edge = _EDGE["approved" if decision.approve else "rejected"]
        else:
            edge = _EDGE["gone" if gone else "waiting"]
        self.box.layout.border_left = f"4px solid {edge}"
        if gone and not decided:
            self.feedback.value = f'<span style="color:#555">{_GONE}</span>'

    def say(self, decision: Decision) -> None:
        color = "#1e6b34" if decision.accepted and decision.approve else "#9b1c1c"
        self.feedback.value = f'<span style="color:{color};font-weight:600">{html.escape(decision.text)}</span>'

    def busy(self, flag: bool) -> None:
        self.approve.disabled = self.reject.disabled = flag


_EDGE = {"waiting": "#e0a100", "approved": "#2e8540", "rejected": "#c62828", "gone": "#9e9e9e"}
_GONE = "No longer waiting: it timed out or was decided elsewhere."


def _css_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


class ApprovalPanel:
    """Pending approvals with Approve and Reject buttons, deciding through the approvals service."""

    def __init__(
        self,
        service: str = "ClaimApprovals",
        *,
        approver: str = "maria",
        ingress: Ingress | None = None,
        admin: Admin | None = None,
        title: str = "Claims waiting for approval",
    ) -> None:
        self.service = service
        self.ingress = ingress or Ingress()
        self.admin = admin or Admin()
        self.requests: list[ApprovalRequest] = []
        """The pending requests as of the last refresh."""
        self.statuses: dict[str, str] = {}
        """Invocation id -> status, as of the last refresh."""
        self.decisions: dict[str, Decision] = {}
        """Claim -> the accepted decision made through this panel."""
        self.history: list[Decision] = []
        """Every decision tried through this panel, accepted or refused, in order."""
        self._rows: dict[str, _Row] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        self.approver = w.Text(value=approver, description="Approver", layout=w.Layout(width="230px"))
        refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="110px"))
        refresh.on_click(lambda _: self._spawn(self.arefresh()))
        self.summary = w.HTML()
        self._list = w.VBox()
        top = w.HBox([self.approver, refresh, self.summary], layout=w.Layout(align_items="center", gap="10px"))
        self.widget = w.VBox(
            [w.HTML(f'<div style="font-size:16px;font-weight:600">{html.escape(title)}</div>'), top, self._list],
            layout=w.Layout(border="1px solid #bfbfbf", padding="8px 12px", max_width="900px"),
        )
        self.widget.add_class("approval-panel")
        self._render("not refreshed yet")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def pending_claims(self) -> list[str]:
        """The claims pending as of the last refresh."""
        return [r.claim for r in self.requests]

    def request(self, claim: str) -> ApprovalRequest | None:
        """Return the request of a claim this panel has seen (pending or decided), or None."""
        row = self._rows.get(claim)
        return row.request if row else None

    def status_of(self, claim: str) -> str | None:
        """Return the status of the invocation that waits on (or waited on) a claim's approval."""
        request = self.request(claim)
        return self.statuses.get(request.invocation_id or "") if request else None

    # ---------------------------------------------------------------- data

    def load(self) -> tuple[list[ApprovalRequest], dict[str, str]]:
        """Read the pending requests and the statuses of their invocations (and of decided ones)."""
        requests = pending_requests(self.admin, self.service)
        ids = [r.invocation_id for r in requests] + [row.request.invocation_id for row in self._rows.values()]
        return requests, invocation_statuses(self.admin, [i for i in ids if i])

    def refresh(self) -> ApprovalPanel:
        """Read the admin API now and redraw (blocks for one round trip; `arefresh` does not)."""
        self._apply(*self.load())
        return self

    async def arefresh(self) -> ApprovalPanel:
        """Read the admin API in a worker thread and redraw, without blocking the event loop."""
        try:
            loaded = await asyncio.to_thread(self.load)
        except (RestateError, ConnectionError) as err:
            self._render(f"cannot read the admin API: {err}")
            return self
        self._apply(*loaded)
        return self

    def _apply(self, requests: list[ApprovalRequest], statuses: dict[str, str]) -> None:
        self.requests, self.statuses = requests, statuses
        self._render(time.strftime("updated %H:%M:%S"))

    def _render(self, note: str) -> None:
        pending = {r.claim: r for r in self.requests}
        for claim, request in pending.items():
            if claim not in self._rows:
                self._rows[claim] = _Row(request, self._clicked)
        for claim, row in self._rows.items():
            row.show(
                self.statuses.get(row.request.invocation_id or ""), self.decisions.get(claim), gone=claim not in pending
            )
        count = len(pending)
        waiting = f"{count} waiting" if count else "nothing waiting"
        self.summary.value = f'<span style="color:#555">{waiting} · {html.escape(note)}</span>'
        if self._rows:
            order = sorted(self._rows, key=lambda c: (c not in pending, c))
            self._list.children = [self._rows[c].box for c in order]
        else:
            self._list.children = [w.HTML('<i style="color:#777">No claim is waiting for approval.</i>')]

    # ------------------------------------------------------------ decisions

    def _body(self, approve: bool, reason: str, approver: str | None) -> tuple[str, dict[str, Any]]:
        who = (approver if approver is not None else self.approver.value).strip()
        return who, {"approver": who, "approve": approve, "reason": reason}

    def _record(self, decision: Decision) -> Decision:
        self.history.append(decision)
        if decision.accepted:
            self.decisions[decision.claim] = decision
        row = self._rows.get(decision.claim)
        if row is not None:
            row.say(decision)
            row.busy(False)
        return decision

    def decide(self, claim: str, approve: bool, reason: str = "", *, approver: str | None = None) -> Decision:
        """Post a decision to the approvals service and wait for its answer (blocking)."""
        who, body = self._body(approve, reason, approver)
        try:
            self.ingress.call(self.service, "decide", body, key=claim)
            decision = Decision(claim, approve, who, reason, accepted=True)
        except (RestateError, ConnectionError) as err:
            decision = _refused(claim, approve, who, reason, err)
        self._record(decision)
        self.refresh()
        return decision

    async def adecide(self, claim: str, approve: bool, reason: str = "", *, approver: str | None = None) -> Decision:
        """Post a decision to the approvals service without blocking: what the buttons call."""
        who, body = self._body(approve, reason, approver)
        try:
            await self.ingress.acall(self.service, "decide", body, key=claim)
            decision = Decision(claim, approve, who, reason, accepted=True)
        except (RestateError, ConnectionError) as err:
            decision = _refused(claim, approve, who, reason, err)
        self._record(decision)
        await self.arefresh()
        return decision

    def _clicked(self, claim: str, approve: bool) -> None:
        row = self._rows[claim]
        row.busy(True)
        self._spawn(self.adecide(claim, approve, row.reason.value))

    def _spawn(self, work: Awaitable[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(_as_coroutine(work))
            return
        task = loop.create_task(_as_coroutine(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------- waiting

    def watch(self, every: float = 1.0) -> asyncio.Task[None]:
        """Refresh every `every` seconds in the background until `stop` (needs a running event loop)."""
        self.stop()

        async def loop() -> None:
            while True:
                await self.arefresh()
                await asyncio.sleep(every)

        self._watch = asyncio.get_running_loop().create_task(loop())
        return self._watch

    def stop(self) -> None:
        """Stop the background refresh."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def wait_for_request(self, claim: str, timeout: float = 60.0, every: float = 0.3) -> ApprovalRequest:
        """Wait until a claim's approval request is pending; return it."""
        await self.wait_for(
            lambda: claim in self.pending_claims, f"claim {claim!r} to ask for approval", timeout, every
        )
        request = self.request(claim)
        assert request is not None
        return request

    async def wait_for_status(self, claim: str, *statuses: str, timeout: float = 60.0, every: float = 0.3) -> str:
        """Wait until the invocation behind a claim has one of `statuses`; return that status."""
        what = f"claim {claim!r} to be {' or '.join(statuses)}"
        await self.wait_for(lambda: self.status_of(claim) in statuses, what, timeout, every)
        return str(self.status_of(claim))

    async def wait_for(
        self, done: Callable[[], bool], what: str = "a condition", timeout: float = 60.0, every: float = 0.3
    ) -> None:
        """Refresh until `done()` is true, without blocking the event loop; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            await self.arefresh()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout:g}s for {what}; the panel shows {self.pending_claims}, statuses {self.statuses}"
                )
            await asyncio.sleep(every)


def _refused(claim: str, approve: bool, who: str, reason: str, err: Exception) -> Decision:
    if isinstance(err, RestateError):
        return Decision(claim, approve, who, reason, accepted=False, status_code=err.status, message=err.message)
    return Decision(claim, approve, who, reason, accepted=False, message=str(err))


async def _as_coroutine(work: Awaitable[Any]) -> Any:
    return await work
