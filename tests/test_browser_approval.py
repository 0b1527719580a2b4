"""Lesson 04 in a real browser: JupyterLab in headless Chromium, and a real click on Approve.

The test runs the notebook up to the cell tagged ``approve-checkpoint`` (the claim waits, the
agent process was killed and restarted meanwhile), types a reason into the panel, clicks
Approve, and checks through the server that the waiting invocation completed with the
approval it clicked. Then it runs the rest of the notebook, which takes the clicked decision.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer
from agent_lib.widgets import pending_requests
from tests.jupyter_browser import LabPage, jupyter_lab

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK = "04_human_approval.ipynb"
CHECKPOINT = "approve-checkpoint"
APPROVALS = "Lesson04ClaimApprovals"
REASON = "clicked in headless Chromium"

# Run a notebook command on the cell at `index` and record when it is done (window.__approvalRun).
_RUN_FROM_JS = """([path, index, command]) => {
  const app = window.jupyterapp;
  const p = app.shell.widgets('main').find(w => w.context && w.context.path === path && w.content);
  window.__approvalRun = {done: false, ok: null, error: null};
  app.shell.activateById(p.id);
  p.content.activeCellIndex = index;
  app.commands.execute(command, {widgetId: p.id}).then(
    ok => { window.__approvalRun = {done: true, ok: ok !== false, error: null}; },
    err => { window.__approvalRun = {done: true, ok: false, error: String(err)}; });
}"""


def checkpoint_index(path: Path) -> int:
    """Return the index of the cell tagged `approve-checkpoint` (the cell that uses the click)."""
    cells = json.loads(path.read_text())["cells"]
    found = [i for i, c in enumerate(cells) if CHECKPOINT in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"{path.name} needs exactly one cell tagged {CHECKPOINT!r}, found {found}"
    return found[0]


def run_command(nb: LabPage, command: str, index: int, timeout: float) -> bool:
    """Run `notebook:run-all-above` or `-below` at cell `index`; False if a cell raised."""
    nb.wait_ready()
    nb.page.evaluate(_RUN_FROM_JS, [nb.path, index, command])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = nb.page.evaluate("() => window.__approvalRun")
        if run["done"]:
            assert not run["error"], run["error"]
            nb.wait_idle(max(1.0, deadline - time.monotonic()))
            return bool(run["ok"])
        time.sleep(0.5)
    raise AssertionError(f"{command} did not finish within {timeout:.0f}s")


def test_clicking_approve_completes_the_waiting_claim(
    restate_server: RestateServer, browser: Browser, tmp_path: Path
) -> None:
    admin, ingress = Admin(restate_server.admin_url), Ingress(restate_server.ingress_url)
    env = {"RESTATE_INGRESS_URL": restate_server.ingress_url, "RESTATE_ADMIN_URL": restate_server.admin_url}
    checkpoint = checkpoint_index(NOTEBOOKS / NOTEBOOK)
    with jupyter_lab(NOTEBOOKS, env=env) as lab:
        nb = LabPage.open(browser, lab, NOTEBOOK)
        try:
            assert run_command(nb, "notebook:run-all-above", checkpoint, timeout=600), nb.errors()
            assert not nb.errors()
            waiting = pending_requests(admin, APPROVALS)
            assert len(waiting) == 1 and waiting[0].customer == "Alice", waiting
            claim = waiting[0]
            assert claim.invocation_id and admin.status(claim.invocation_id) == "suspended"

            row = nb.page.locator(f".approval-claim-{claim.claim}").first
            row.locator("input").fill(REASON)
            row.get_by_role("button", name="Approve").click()
            nb.wait_for_text(f"Approved by maria: {REASON}", timeout=60)

            result = ingress.attach(claim.invocation_id)
            assert result["status"] == "approved", result
            assert (result["approver"], result["reason"]) == ("maria", REASON)
            assert admin.status(claim.invocation_id) == "completed"
            assert pending_requests(admin, APPROVALS) == []

            assert run_command(nb, "notebook:run-all-below", checkpoint, timeout=600), nb.errors()
            assert not nb.errors()
        finally:
            nb.screenshot(tmp_path / "04_human_approval.png")
            nb.close()
