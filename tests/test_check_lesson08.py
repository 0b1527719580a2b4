"""Lesson 08's checks against right and wrong answers, on one 3-node cluster for the whole module."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from agent_lib import check
from agent_lib.agents.expenses import SERVICE, Accounting, approve, wait_pending
from agent_lib.clients import Admin, Ingress, RestateError
from agent_lib.cluster import RestateCluster, free_base_port
from agent_lib.serving import AgentProcess
from tests.helpers import begin, failed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateCluster]:
    with RestateCluster(tmp_path_factory.mktemp("l08-cluster"), base_port=free_base_port()) as running:
        yield running


@pytest.fixture(scope="module")
def accounting(tmp_path_factory: pytest.TempPathFactory) -> Accounting:
    return Accounting(tmp_path_factory.mktemp("l08-accounting"))


@pytest.fixture(scope="module")
def agent(cluster: RestateCluster, accounting: Accounting) -> Iterator[AgentProcess]:
    proc = AgentProcess(
        "agent_lib.agents.expenses:expense_service",
        admin=Admin(cluster.admin_url),
        env={"EXPENSE_ACCOUNTING_DIR": str(accounting.directory)},
        name="l08-check-expenses",
    )
    with proc:
        cluster.wait_for_services([SERVICE])
        yield proc


@pytest.fixture
def node3(cluster: RestateCluster, agent: AgentProcess) -> Iterator[Ingress]:
    """Node 3's ingress; every node is running again after the test."""
    yield Ingress(cluster.nodes[2].ingress_url)
    if not cluster.running:
        cluster.start()


def _claim(node: Ingress, accounting: Accounting, *, key: str | None = None, idempotency_key: str | None = None) -> str:
    key = key or f"emp-{uuid.uuid4().hex[:6]}"
    receipt = f"R-{uuid.uuid4().hex[:6]}"
    accounting.release(receipt)
    message = f"Reimburse receipt {receipt}: 12.50 EUR for a taxi"
    return node.send(SERVICE, "run", message, key=key, idempotency_key=idempotency_key).invocation_id


def _decide(node: Ingress, admin: Admin, invocation_id: str, *, by: str = "maria", approved: bool = True) -> str:
    key = str((admin.invocation(invocation_id) or {})["target_service_key"])
    approve(node, wait_pending(node, [key]), by=by, approved=approved)
    return str(node.attach(invocation_id))


def test_node_1_down_fails_for_the_wrong_node_and_times_then_passes(
    cluster: RestateCluster, accounting: Accounting, node3: Ingress
) -> None:
    admin = Admin(cluster.nodes[2].admin_url)
    begin(8, admin, cluster)
    cluster.nodes[1].kill()
    cluster.wait_ready()
    while_node_2_down = _claim(node3, accounting)
    _decide(node3, admin, while_node_2_down)
    failed(check.lesson_08.exercise_1.sync(admin, [while_node_2_down], cluster), "you killed node 2")
    cluster.nodes[1].start()
    cluster.wait_ready()

    cluster.nodes[0].kill()
    cluster.wait_ready()
    while_node_1_down = _claim(node3, accounting)
    _decide(node3, admin, while_node_1_down)
    failed(check.lesson_08.exercise_1.sync(admin, [while_node_1_down], cluster), "not back: ['node-1']")
    cluster.nodes[0].start()
    cluster.wait_ready()
    result = check.lesson_08.exercise_1.sync(admin, [while_node_1_down], cluster)
    assert result.ok, result
    both = [while_node_2_down, while_node_1_down]
    failed(check.lesson_08.exercise_1.sync(admin, both, cluster), f"{while_node_2_down} ran from", "not while node 1")
    begin(8, admin, cluster)
    failed(check.lesson_08.exercise_1.sync(admin, [while_node_1_down], cluster), "before you began the exercises")


def test_two_nodes_down_passes_with_one_key_and_fails_with_one_node_down(
    cluster: RestateCluster, accounting: Accounting, node3: Ingress
) -> None:
    admin = Admin(cluster.nodes[2].admin_url)
    begin(8, admin, cluster)
    cluster.nodes[0].kill()
    cluster.wait_ready()
    one_down = f"claim-{uuid.uuid4().hex[:6]}"
    _decide(node3, admin, _claim(node3, accounting, key=one_down, idempotency_key=one_down))
    failed(check.lesson_08.exercise_2.sync(admin, one_down), "no two nodes were down at the same time")

    cluster.nodes[1].kill()
    idem = f"claim-{uuid.uuid4().hex[:6]}"
    with contextlib.suppress(httpx.HTTPError, RestateError, ConnectionError):
        _claim(Ingress(cluster.nodes[2].ingress_url, timeout=10), accounting, key=idem, idempotency_key=idem)
    cluster.nodes[0].start()
    cluster.wait_ready()
    again = _claim(node3, accounting, key=idem, idempotency_key=idem)
    _decide(node3, admin, again)
    still_down = check.lesson_08.exercise_2.sync(admin, idem)
    failed(still_down, "still down", "node-2")
    assert "start the other node" in still_down.hint
    cluster.nodes[1].start()
    cluster.wait_ready()
    result = check.lesson_08.exercise_2.sync(admin, idem)
    assert result.ok, result
    failed(check.lesson_08.exercise_2.sync(admin, idem.upper()), "no ExpenseAgent invocation has the idempotency key")
    begin(8, admin, cluster)
    failed(check.lesson_08.exercise_2.sync(admin, idem), "before you began the exercises")


def test_rejection_passes_for_li_and_fails_for_an_approval_or_another_approver(
    cluster: RestateCluster, accounting: Accounting, node3: Ingress
) -> None:
    admin = Admin(cluster.nodes[2].admin_url)
    begin(8, admin, cluster)
    waiting = _claim(node3, accounting)
    wait_pending(node3, [str((admin.invocation(waiting) or {})["target_service_key"])])
    failed(check.lesson_08.exercise_3.sync(node3, admin, waiting), "still waits for its approval")
    _decide(node3, admin, waiting, by="li", approved=False)
    result = check.lesson_08.exercise_3.sync(node3, admin, waiting)
    assert result.ok, result
    approved = _claim(node3, accounting)
    _decide(node3, admin, approved, by="li")
    failed(check.lesson_08.exercise_3.sync(node3, admin, approved), "not a rejection")
    by_maria = _claim(node3, accounting)
    _decide(node3, admin, by_maria, by="maria", approved=False)
    failed(check.lesson_08.exercise_3.sync(node3, admin, by_maria), "not li's")


def test_a_check_without_begin_on_this_cluster_says_to_run_begin(cluster: RestateCluster, node3: Ingress) -> None:
    admin = Admin(cluster.nodes[2].admin_url)
    begin(8, admin)
    other = RestateCluster(cluster.base_dir / "unused", base_port=free_base_port())
    result = check.lesson_08.exercise_1.sync(admin, ["inv_1abc"], other)
    failed(result, "does not watch this cluster's nodes")
    assert "check.lesson_08.begin(admin, cluster)" in result.hint


def test_a_claim_waiting_for_accounting_is_named_with_its_receipt_and_no_blocking_hint(
    cluster: RestateCluster, accounting: Accounting, node3: Ingress
) -> None:
    """Issue 19/20: with the receipt not released, the hint was `ingress.attach(id)`, which hung for 120 s."""
    admin = Admin(cluster.nodes[2].admin_url)
    begin(8, admin, cluster)
    receipt = f"R-{uuid.uuid4().hex[:6]}"
    key = f"emp-{uuid.uuid4().hex[:6]}"
    held = node3.send(SERVICE, "run", f"Reimburse receipt {receipt}: 8.00 EUR for a bus", key=key).invocation_id
    accounting.wait_for([receipt])
    try:
        started = time.monotonic()
        result = check.lesson_08.exercise_3.sync(node3, admin, held)
        failed(result, "Check receipt", f"accounting has not released receipt {receipt}")
        assert f'accounting.release("{receipt}")' in result.hint and "attach" not in result.hint
        assert time.monotonic() - started < check.lesson_08.exercise_3.deadline
    finally:
        accounting.release(receipt)
    _decide(node3, admin, held, by="li", approved=False)
    assert check.lesson_08.exercise_3.sync(node3, admin, held).ok
