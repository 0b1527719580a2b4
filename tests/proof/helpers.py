"""Small waits and reads the proof tests share: bounded, polling, never asserting a time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent_lib.clients import Admin

__all__ = ["IN_FLIGHT", "in_flight", "pending_request", "wait_for", "wait_status"]

T = TypeVar("T")
IN_FLIGHT = ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "inboxed")
"""Invocation statuses that mean "not finished"."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120.0, every: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; raise AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not the case after {timeout:.0f}s")
        time.sleep(every)


def pending_request(admin: Admin, service: str, key: str) -> dict[str, Any] | None:
    """Return the approval request filed for `key` (awakeable id included), or None."""
    raw = admin.state(service, key).get("pending")
    return dict(json.loads(raw)) if raw else None


def wait_status(admin: Admin, invocation_id: str, status: str, timeout: float = 120.0) -> None:
    """Wait until an invocation has `status`."""
    wait_for(f"{invocation_id} {status}", lambda: admin.status(invocation_id) == status, timeout)


def in_flight(admin: Admin, service: str, key: str) -> list[str]:
    """Return the statuses of the invocations of `service`/`key` that are not finished."""
    rows = admin.query(
        "SELECT status FROM sys_invocation WHERE target_service_name = '{}' AND target_service_key = '{}'".format(
            service.replace("'", "''"), key.replace("'", "''")
        )
    )
    return [r["status"] for r in rows if r["status"] in IN_FLIGHT]
