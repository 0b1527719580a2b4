"""Small reads the proof tests share (their waits are tests/helpers.py's)."""

from __future__ import annotations

import json
from typing import Any

from agent_lib._sql import sql_literal
from agent_lib.clients import Admin

__all__ = ["IN_FLIGHT", "in_flight", "pending_request"]

IN_FLIGHT = ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "inboxed")
"""Invocation statuses that mean "not finished"."""


def pending_request(admin: Admin, service: str, key: str) -> dict[str, Any] | None:
    """Return the approval request filed for `key` (awakeable id included), or None."""
    raw = admin.state(service, key).get("pending")
    return dict(json.loads(raw)) if raw else None


def in_flight(admin: Admin, service: str, key: str) -> list[str]:
    """Return the statuses of the invocations of `service`/`key` that are not finished."""
    rows = admin.query(
        "SELECT status FROM sys_invocation "
        f"WHERE target_service_name = {sql_literal(service)} AND target_service_key = {sql_literal(key)}"
    )
    return [r["status"] for r in rows if r["status"] in IN_FLIGHT]
