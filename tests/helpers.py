"""What the tests share: a refused check's assertions, bounded polls and status waits, and a begin() past the clock.

Every wait here polls with a deadline and fails with what it waited for; none asserts a time.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from agent_lib import observe
from agent_lib.check import Began, CheckResult
from agent_lib.clients import Admin, RestateError

__all__ = [
    "CLOCK_SEPARATION",
    "begin",
    "begin_again",
    "failed",
    "pause",
    "wait_failure",
    "wait_for",
    "wait_pending",
    "wait_status",
]

T = TypeVar("T")

CLOCK_SEPARATION = 0.02
"""Seconds to wait after begin(): the server may stamp an invocation sent at once 1 ms before begin() read its clock."""


def failed(result: CheckResult, *words: str) -> CheckResult:
    """Assert that a check refused, that its message holds each of `words`, and that it says what to try; return it."""
    assert not result.ok and not result, f"the check passed, but should refuse: {result}"
    missing = [w for w in words if w not in result.message]
    assert not missing, f"the refusal does not say {missing}: {result.message}"
    assert result.hint.strip(), f"a refusal says what to try, but this one has no hint: {result}"
    assert str(result).startswith("FAIL "), str(result)
    return result


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120.0, every: float = 0.2) -> T:
    """Poll `probe` until it returns something true; return it, or raise AssertionError naming `what` at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not the case after {timeout:g} s")
        time.sleep(every)


def wait_status(admin: Admin, invocation_id: str, status: str, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until an invocation has `status` (observe.wait_for_status: the kit's one status wait); return its row."""
    return observe.wait_for_status(admin, invocation_id, status, timeout=timeout)


def wait_failure(admin: Admin, invocation_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until an invocation has recorded a failure (its `last_failure`); return its sys_invocation row."""

    def failing() -> dict[str, Any] | None:
        row = admin.invocation(invocation_id)
        return row if row is not None and row.get("last_failure") else None

    return wait_for(f"a failure of {invocation_id}", failing, timeout)


def pause(admin: Admin, invocation_id: str, timeout: float = 30.0) -> None:
    """Pause an invocation, asking again until it is paused (a pause asked between two attempts may not hold)."""

    def paused() -> bool:
        with contextlib.suppress(RestateError):
            admin.pause(invocation_id)
        return admin.status(invocation_id) == "paused"

    wait_for(f"{invocation_id} paused", paused, timeout, every=0.3)


def wait_pending(admin: Admin, service: str, key: str, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until `service` holds an approval request under `key` (its `pending` state); return it."""
    state = wait_for(
        f"an approval request of {service}/{key}", lambda: admin.state(service, key).get("pending"), timeout
    )
    return dict(json.loads(state))


def begin(lesson: int, admin: Admin, *args: Any) -> Began:
    """Begin lesson `lesson`'s exercises (check.lesson_NN.begin), then wait CLOCK_SEPARATION so later work is newer."""
    began = importlib.import_module(f"agent_lib.check.lesson_{lesson:02d}").begin(admin, *args)
    time.sleep(CLOCK_SEPARATION)
    assert isinstance(began, Began)
    return began


def begin_again(lesson: int, admin: Admin, *args: Any) -> Began:
    """Begin lesson `lesson`'s exercises again, a moment after the work so far: that work is then older than begin()."""
    time.sleep(0.05)
    return begin(lesson, admin, *args)
