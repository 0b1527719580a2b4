"""Phoenix, the viewer `make tracing` runs, shows one durable turn's trace: in headless Chromium, with a screenshot.

A private Restate server and the traced weather agent send their spans to a `TraceCollector`, which forwards them to
a real Phoenix (from the tracing extra, `.venv-tracing/`). The test checks that Phoenix stored the whole turn, opens
the trace in Phoenix's own UI, waits until the page shows the turn's spans, and saves a screenshot to
`.restate-xdist/screenshots/` (CI keeps it).

Marked `full`: it needs the tracing extra, which `make test-all` installs first (`make setup-tracing`). Elsewhere
it skips, saying so, when the extra or Chromium is missing; in `make test-all` (KIT_TEST_ALL=1) or CI it fails.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from agent_lib import viewer
from agent_lib.agent_process import AgentProcess
from agent_lib.clients import Admin, Ingress
from agent_lib.server import RestateServer, free_port
from agent_lib.tracing import TraceCollector
from agent_lib.viewer import PhoenixViewer, ViewerError
from tests.helpers import wait_for
from tests.jupyter_browser import SKIP_REASON, chromium, chromium_path

pytestmark = [pytest.mark.full, pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / ".restate-xdist" / "screenshots"
SHOWN = ("invoke_agent", "execute_tool get_weather", "generate_content", "invocation-attempt")
"""Span names the page must show: ADK's agent run, the tool, a model call, and the server's attempt."""


def _need(ok: bool, reason: str) -> None:
    """Skip with `reason` if not `ok`, except in `make test-all` or CI, where this test must run: fail there."""
    if ok:
        return
    if os.environ.get("KIT_TEST_ALL") or os.environ.get("CI"):
        pytest.fail(f"{reason} (make test-all and CI run this test: `make setup-tracing` installs the extra)")
    pytest.skip(reason)


def _phoenix_spans(phoenix: PhoenixViewer, trace_id: str) -> list[dict[str, Any]]:
    """Return the spans Phoenix stored for one trace, through its REST API."""
    answer = httpx.get(
        f"{phoenix.url}/v1/projects/default/spans", params={"trace_id": trace_id, "limit": 1000}, timeout=10.0
    )
    answer.raise_for_status()
    return list(answer.json()["data"])


def _trace_page(phoenix: PhoenixViewer, trace_id: str) -> str:
    """Return the address of one trace's page in Phoenix's UI (`/projects/<project id>/traces/<trace id>`)."""
    projects = httpx.get(f"{phoenix.url}/v1/projects", timeout=10.0).json()["data"]
    (project,) = [p for p in projects if p["name"] == "default"]
    return f"{phoenix.url}/projects/{project['id']}/traces/{trace_id}"


def _widen_the_tree(page: Page) -> None:
    """Drag the trace panel's two dividers so the span tree, with its durations, fills half the page."""
    dividers = page.locator("[role=separator][aria-orientation=vertical]")
    for index, x in ((0, 240), (1, 900)):
        if dividers.count() > index and (box := dividers.nth(index).bounding_box()):
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 300)
            page.mouse.down()
            page.mouse.move(x, box["y"] + 300, steps=10)
            page.mouse.up()


def test_phoenix_shows_one_durable_turn_as_one_trace(tmp_path: Path) -> None:
    try:
        viewer.phoenix_binary()
    except ViewerError as err:
        _need(False, str(err))
    _need(chromium_path() is not None, SKIP_REASON)

    started = time.monotonic()
    with PhoenixViewer(free_port(), working_dir=tmp_path / "phoenix") as phoenix:
        ready = time.monotonic() - started
        with TraceCollector(forward_to=phoenix.endpoint) as traces:
            ports = {"ingress_port": free_port(), "admin_port": free_port(), "node_port": free_port()}
            with RestateServer(tmp_path / "restate", env=traces.server_env(), **ports) as server:
                admin, ingress = Admin(server.admin_url), Ingress(server.ingress_url)
                agent = AgentProcess(
                    ["agent_lib.agents.traced:traced_service"],
                    admin=admin,
                    env=traces.agent_env(),
                    name="viewer-traced",
                )
                with agent:
                    sent = ingress.send("TracedWeather", "run", "What is the weather in Paris?", key=uuid.uuid4().hex)
                    answer = ingress.attach(sent.invocation_id)
                    turn = traces.wait_for_turn(
                        sent.invocation_id, names=["invocation-end", "execute_tool get_weather"]
                    )
        assert "Paris" in answer
        assert traces.forward_errors == 0, f"Phoenix refused some batches: {phoenix.log_tail()}"
        trace_id = turn[0].trace_id
        stored = wait_for(
            f"Phoenix stores the turn's {len(turn)} spans",
            lambda: (found := _phoenix_spans(phoenix, trace_id)) and len(found) >= len(turn) and found,
            timeout=60,
        )
        assert sorted(s["name"] for s in stored) == sorted(s.name for s in turn), "Phoenix holds the very same spans"
        ids = {s["context"]["span_id"]: s["name"] for s in stored}
        under = {s["name"]: ids.get(s["parent_id"] or "", "") for s in stored}
        assert under["execute_tool get_weather"].startswith("invocation-attempt"), "the tool hangs under the attempt"
        root = [s.name for s in turn if s.parent_id not in {t.span_id for t in turn}]
        assert len(root) == 1 and [n for n, parent in under.items() if not parent] == root, "one root: one tree"

        shot = tmp_path / "phoenix-trace.png"
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            try:
                page.goto(_trace_page(phoenix, trace_id))
                for name in SHOWN:
                    page.get_by_text(name).first.wait_for(timeout=60_000)
                _widen_the_tree(page)
                page.get_by_text("execute_tool get_weather").first.click()
                page.get_by_text("All Attributes").first.wait_for(timeout=10_000)
                page.wait_for_timeout(500)
                body = page.inner_text("body")
            finally:
                page.screenshot(path=str(shot))
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                kept = Path(shutil.copy(shot, SCREENSHOTS / shot.name))
                print(f"\nPhoenix ready in {ready:.1f} s; the trace of {sent.invocation_id} in Phoenix: {kept}")
    for name in SHOWN:
        assert name in body, f"Phoenix's page does not show {name!r}"
    assert kept.stat().st_size > 10_000
