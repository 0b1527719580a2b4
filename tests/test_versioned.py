"""The versioned refund agent: v1 and v2 side by side, draining, the fix path, and an incompatible change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_lib import observe
from agent_lib.agents.versioned import SERVICE_NAME, _issue, make_service, refund_script
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.models import Call, ToolResult, Turn, uses_gemini
from agent_lib.server import RestateServer
from agent_lib.serving import AgentProcess

pytestmark = pytest.mark.agent  # a finished agent's tests: `make test-replay` runs them too

TARGET = "agent_lib.agents.versioned:"


@pytest.fixture(scope="module")
def versions(restate_server: RestateServer, _kit_data: Path) -> Iterator[dict[str, AgentProcess]]:
    """v1 then v2 of the agent, each its own deployment on its own port (v2 registered last)."""
    admin = Admin(restate_server.admin_url)
    procs = {"v1": AgentProcess(TARGET + "service_v1", admin=admin, name="test-v1").start()}
    yield procs
    for proc in procs.values():
        proc.stop()


def _version(versions: dict[str, AgentProcess], version: str, admin: Admin) -> AgentProcess:
    """Return the running deployment of `version`, starting (and registering) it the first time."""
    if version not in versions:
        versions[version] = AgentProcess(TARGET + f"service_{version}", admin=admin, name=f"test-{version}").start()
    return versions[version]


def _turn(text: str, results: tuple[ToolResult, ...] = ()) -> Turn:
    return Turn(text=text, results=results, tools=("request_refund",), history=(), past_results=())


def test_scripts_ask_for_the_refund_then_report_it() -> None:
    script = refund_script("v1")
    assert script(_turn("Refund 40 GBP for order 1")) == [Call("request_refund", {"amount": 40.0, "currency": "GBP"})]
    assert script(_turn("x", (ToolResult("request_refund", {"result": "Refunded."}),))) == "Refunded."
    assert "ask me to refund" in str(script(_turn("hello")))


def test_versions_issue_differently_and_v2_misses_gbp() -> None:
    assert _issue("v1", 40, "GBP") == "Refunded 40.00 GBP."
    assert _issue("v3", 40, "GBP") == "Refunded 48.00 EUR (from 40.00 GBP)."
    with pytest.raises(KeyError, match="GBP"):
        _issue("v2", 40, "GBP")
    with pytest.raises(ValueError, match="choose v1, v2 or v3"):
        make_service("v9")


def _suspended(admin: Admin, ingress: Ingress, message: str) -> tuple[str, str, str]:
    key = f"test-{uuid.uuid4().hex[:10]}"
    invocation = ingress.send(SERVICE_NAME, "run", message, key=key).invocation_id
    observe.wait_for_status(admin, invocation, "suspended")
    return key, invocation, observe.wait_for_state(admin, SERVICE_NAME, key, "approval")


def test_in_flight_v1_finishes_on_v1_while_new_requests_go_to_v2(
    admin: Admin, ingress: Ingress, versions: dict[str, AgentProcess]
) -> None:
    v1 = versions["v1"]
    _, old, approval_old = _suspended(admin, ingress, "Refund 40 GBP for order 1")
    assert admin.invocation(old)["pinned_deployment_id"] == v1.deployment_id
    v2 = _version(versions, "v2", admin)
    _, new, approval_new = _suspended(admin, ingress, "Refund 30 EUR for order 2")
    assert admin.invocation(new)["pinned_deployment_id"] == v2.deployment_id
    assert observe.in_flight(admin, v1.deployment_id)["id"].tolist() == [old]
    with pytest.raises(observe.DrainError, match=f"1 invocation\\(s\\) in flight: {old} \\(suspended\\)"):
        observe.remove_drained(admin, v1.deployment_id)
    ingress.resolve_awakeable(approval_old, True)
    ingress.resolve_awakeable(approval_new, True)
    finished_old, finished_new = ingress.attach(old), ingress.attach(new)
    assert finished_old["version"] == "v1" and finished_new["version"] == "v2"
    if not uses_gemini():
        assert finished_old["answer"] == "Refunded 40.00 GBP."
        assert finished_new["answer"] == "Refunded 30.00 EUR (from 30.00 EUR)."
    observe.remove_drained(admin, v1.deployment_id)
    assert v1.deployment_id not in observe.service_deployments(admin, SERVICE_NAME)["id"].tolist()


def test_pause_deploy_the_fix_and_resume_on_it(
    admin: Admin, ingress: Ingress, versions: dict[str, AgentProcess]
) -> None:
    v2 = _version(versions, "v2", admin)
    _, invocation, approval = _suspended(admin, ingress, "Refund 40 GBP for order 3")
    ingress.resolve_awakeable(approval, True)
    stuck = observe.wait_for_retries(admin, invocation, 2)
    assert stuck["last_failure_related_command_name"] == "Issue refund" and "KeyError" in stuck["last_failure"]
    assert stuck["pinned_deployment_id"] == v2.deployment_id
    admin.pause(invocation)
    observe.wait_for_status(admin, invocation, "paused")
    v3 = _version(versions, "v3", admin)
    admin.resume(invocation, deployment_id=v3.deployment_id)
    result = ingress.attach(invocation)
    assert result["version"] == "v3"
    if not uses_gemini():
        assert result["answer"] == "Refunded 48.00 EUR (from 40.00 GBP)."
    assert admin.invocation(invocation)["pinned_deployment_id"] == v3.deployment_id


@pytest.mark.slow
def test_an_incompatible_change_in_place_is_a_journal_mismatch(
    admin: Admin, ingress: Ingress, versions: dict[str, AgentProcess]
) -> None:
    v3 = _version(versions, "v3", admin)
    _, invocation, approval = _suspended(admin, ingress, "Refund 10 USD for order 4")
    v3.stop()
    edited = AgentProcess(TARGET + "service_v3_reordered", port=v3.port, admin=admin, name="test-v3-edited")
    versions["edited"] = edited.start(register=False)
    ingress.resolve_awakeable(approval, True)
    try:
        row = observe.wait_for_retries(admin, invocation, 2)
        assert row["last_failure_error_code"] == "RT0016" and "Journal mismatch" in row["last_failure"]
        assert row["pinned_deployment_id"] == v3.deployment_id
    finally:
        admin.kill(invocation)
    with pytest.raises(RestateError, match="killed"):
        ingress.attach(invocation)
