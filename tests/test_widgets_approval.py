"""The approval panel without a browser: what it reads, what it shows, what its buttons send."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess
from agent_lib.widgets import ApprovalPanel, ApprovalRequest, Decision, format_amount, pending_requests
from agent_lib.widgets.approval import invocation_statuses, status_badge
from tests.helpers import wait_for

SECRET = "sign_1SeCrEtAwAkEaBlE"


def pending_row(claim: str, customer: str = "Alice", amount: float = 1800.0, inv: str = "inv_1") -> dict[str, str]:
    value = {
        "customer": customer,
        "amount": amount,
        "currency": "EUR",
        "description": "hotel, 5 nights",
        "claim": claim,
        "invocation_id": inv,
        "awakeable_id": SECRET,
    }
    return {"service_key": claim, "value_utf8": json.dumps(value)}


class FakeAdmin:
    """Answers the panel's two SQL queries from canned rows, and remembers them."""

    def __init__(self, rows: list[dict[str, str]], statuses: dict[str, str] | None = None) -> None:
        self.rows = rows
        self.statuses = statuses or {}
        self.queries: list[str] = []

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.queries.append(sql)
        if "FROM state" in sql:
            return list(self.rows)
        return [{"id": i, "status": s} for i, s in self.statuses.items() if f"'{i}'" in sql]


class FakeIngress:
    """Records decisions; refuses approvers not in `allowed` with a 403, like the real handler."""

    def __init__(self, admin: FakeAdmin, allowed: tuple[str, ...] = ("maria",)) -> None:
        self.admin = admin
        self.allowed = allowed
        self.sent: list[tuple[str, str, Any, str | None]] = []

    def _decide(self, service: str, handler: str, body: Any, key: str | None) -> dict[str, Any]:
        self.sent.append((service, handler, body, key))
        if body["approver"] not in self.allowed:
            raise RestateError(403, f"{body['approver']!r} is not allowed", method="POST", url=f"/{service}")
        self.admin.rows = [r for r in self.admin.rows if r["service_key"] != key]
        return {"decision": "approved" if body["approve"] else "rejected"}

    def call(self, service: str, handler: str, body: Any = None, *, key: str | None = None) -> Any:
        return self._decide(service, handler, body, key)

    async def acall(self, service: str, handler: str, body: Any = None, *, key: str | None = None) -> Any:
        return self._decide(service, handler, body, key)


def panel_with(rows: list[dict[str, str]], statuses: dict[str, str] | None = None) -> tuple[ApprovalPanel, Any]:
    admin = FakeAdmin(rows, statuses)
    ingress = FakeIngress(admin)
    panel = ApprovalPanel("DemoApprovals", approver="maria", admin=admin, ingress=ingress)  # type: ignore[arg-type]
    return panel, ingress


def rendered(panel: ApprovalPanel) -> str:
    """All the HTML the panel shows right now."""
    texts: list[str] = []

    def walk(widget: Any) -> None:
        if hasattr(widget, "value") and isinstance(widget.value, str):
            texts.append(widget.value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(panel.widget)
    return "\n".join(texts)


# ------------------------------------------------------------------ pure pieces


def test_format_amount() -> None:
    assert format_amount(1800, "EUR") == "1,800.00 EUR"
    assert format_amount(42.5, "USD") == "42.50 USD"


def test_status_badge_escapes_and_colours() -> None:
    assert "suspended" in status_badge("suspended") and "#fff1d6" in status_badge("suspended")
    assert "unknown" in status_badge(None)
    assert "<b>" not in status_badge("<b>")


def test_a_request_never_carries_the_awakeable_id() -> None:
    rows = [pending_row("c1"), {"service_key": "broken", "value_utf8": "{not json"}]
    requests = pending_requests(FakeAdmin(rows), "DemoApprovals")  # type: ignore[arg-type]
    assert requests == [ApprovalRequest("c1", "Alice", 1800.0, "EUR", "hotel, 5 nights", "inv_1")]
    assert SECRET not in repr(requests)


def test_statuses_query_quotes_ids_and_skips_empty_lists() -> None:
    admin = FakeAdmin([], {"inv_1": "suspended"})
    assert invocation_statuses(admin, []) == {}  # type: ignore[arg-type]
    assert admin.queries == []
    assert invocation_statuses(admin, ["inv_1", "it's"]) == {"inv_1": "suspended"}  # type: ignore[arg-type]
    assert "'it''s'" in admin.queries[0]


def test_decision_text() -> None:
    assert Decision("c1", True, "maria", "ok", accepted=True).text == "Approved by maria: ok"
    assert Decision("c1", False, "sam", "", accepted=True).text == "Rejected by sam"
    refused = Decision("c1", True, "eve", "", accepted=False, status_code=403, message="'eve' is not allowed")
    assert refused.text == "Refused (403): 'eve' is not allowed"


# ----------------------------------------------------------------- the panel


def test_the_panel_lists_several_pending_claims_with_their_status() -> None:
    rows = [pending_row("c1", "Alice", 1800, "inv_1"), pending_row("c2", "Dave <script>", 2400, "inv_2")]
    panel, _ = panel_with(rows, {"inv_1": "suspended", "inv_2": "running"})
    panel.refresh()
    assert panel.pending_claims == ["c1", "c2"]
    assert panel.status_of("c1") == "suspended" and panel.status_of("c2") == "running"
    html = rendered(panel)
    assert "1,800.00 EUR" in html and "2,400.00 EUR" in html and "hotel, 5 nights" in html
    assert "Dave &lt;script&gt;" in html and "<script>" not in html
    assert "2 waiting" in html
    assert SECRET not in html


def test_an_empty_panel_says_so() -> None:
    panel, _ = panel_with([])
    panel.refresh()
    assert "No claim is waiting for approval" in rendered(panel) and "nothing waiting" in rendered(panel)


def _row(panel: ApprovalPanel, claim: str) -> Any:
    return panel._rows[claim]


def test_clicking_approve_sends_the_reason_typed_in_the_row() -> None:
    panel, ingress = panel_with([pending_row("c1"), pending_row("c2", inv="inv_2")], {"inv_1": "suspended"})
    panel.refresh()
    row = _row(panel, "c1")
    row.reason.value = "receipts checked"
    row.approve.click()
    assert ingress.sent == [
        ("DemoApprovals", "decide", {"approver": "maria", "approve": True, "reason": "receipts checked"}, "c1")
    ]
    assert panel.decisions["c1"].accepted and panel.pending_claims == ["c2"]
    assert row.controls.layout.display == "none"
    assert "Approved by maria: receipts checked" in rendered(panel)
    assert _row(panel, "c2").controls.layout.display == ""


def test_a_refused_decision_is_shown_and_the_claim_stays() -> None:
    panel, ingress = panel_with([pending_row("c1")])
    panel.refresh()
    panel.approver.value = "eve"
    _row(panel, "c1").reject.click()
    assert ingress.sent[0][2] == {"approver": "eve", "approve": False, "reason": ""}
    assert "c1" not in panel.decisions and panel.pending_claims == ["c1"]
    assert not panel.history[-1].accepted and panel.history[-1].status_code == 403
    assert "Refused (403)" in rendered(panel)
    assert not _row(panel, "c1").approve.disabled


def test_adecide_is_what_the_buttons_call_and_names_the_approver() -> None:
    panel, ingress = panel_with([pending_row("c1")])
    decision = asyncio.run(panel.adecide("c1", approve=True, reason="ok", approver="maria"))
    assert decision == Decision("c1", True, "maria", "ok", accepted=True)
    assert panel.decisions == {"c1": decision}
    sync = panel.decide("c9", approve=False, reason="late", approver="eve")
    assert not sync.accepted and sync.status_code == 403


def test_a_claim_that_leaves_without_a_decision_is_marked() -> None:
    panel, _ = panel_with([pending_row("c1")])
    panel.refresh()
    panel.admin.rows = []  # type: ignore[attr-defined]
    panel.refresh()
    assert "timed out or was decided elsewhere" in rendered(panel)
    assert _row(panel, "c1").controls.layout.display == "none"


def test_watch_refreshes_in_the_background_and_stops() -> None:
    panel, _ = panel_with([pending_row("c1")])

    async def scenario() -> int:
        panel.watch(every=0.05)
        await asyncio.sleep(0.5)
        panel.stop()
        seen = len(panel.admin.queries)  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        assert len(panel.admin.queries) == seen  # type: ignore[attr-defined]
        return seen

    assert asyncio.run(scenario()) >= 4
    assert panel.pending_claims == ["c1"]


def test_wait_for_times_out_with_what_it_saw() -> None:
    panel, _ = panel_with([pending_row("c1")])
    with pytest.raises(TimeoutError, match=r"claim 'c7' to ask for approval.*\['c1'\]"):
        asyncio.run(panel.wait_for_request("c7", timeout=0.3, every=0.05))


def test_an_unreachable_admin_api_is_shown_not_raised() -> None:
    panel = ApprovalPanel("DemoApprovals", admin=Admin("http://127.0.0.1:9"), ingress=Ingress("http://127.0.0.1:9"))
    asyncio.run(panel.arefresh())
    assert "cannot read the admin API" in rendered(panel)


# ------------------------------------------------- the real thing, no browser


@pytest.fixture(scope="module")
def claims(restate_server: RestateServer, _kit_data: Path) -> Iterator[AgentProcess]:
    env = {"CLAIMS_SERVICE_PREFIX": "PanelTest", "CLAIMS_APPROVAL_TIMEOUT": "60s"}
    targets = ["agent_lib.agents.claims:claims_service", "agent_lib.agents.claims:approvals_service"]
    with AgentProcess(targets, admin=Admin(restate_server.admin_url), env=env, name="panel-claims") as proc:
        yield proc


def test_the_approve_button_completes_a_real_waiting_claim(
    ingress: Ingress, admin: Admin, claims: AgentProcess, key: str
) -> None:
    sent = ingress.send(
        "PanelTestClaimsAgent", "run", {"customer": "Alice", "amount": 5000, "description": "x"}, key=key
    )
    panel = ApprovalPanel("PanelTestClaimApprovals", approver="sam", ingress=ingress, admin=admin)
    request = asyncio.run(panel.wait_for_request(key))
    assert request.invocation_id == sent.invocation_id and request.amount == 5000
    _row(panel, key).reason.value = "fine"
    _row(panel, key).approve.click()
    result = ingress.attach(sent.invocation_id)
    assert (result["status"], result["approver"], result["reason"]) == ("approved", "sam", "fine")
    wait_for(f"the panel to show {key} completed", lambda: panel.refresh().status_of(key) == "completed", 30)
    assert key not in panel.pending_claims and "Approved by sam: fine" in rendered(panel)
