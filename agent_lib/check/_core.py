"""What every exercise check shares: the result, the way a check runs, and small helpers.

A check is written as a plain function that talks to the real server (the ingress and
the admin API) and raises `Fail` when something is not as the exercise asks. `exercise`
turns it into an awaitable: the work runs in a worker thread, so the kernel's event loop
stays free to serve a learner's agent that runs in the kernel (lesson 01), and every
error becomes a `CheckResult` that says what is wrong and what to try.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import progress
from ..clients import Admin, Ingress, RestateError
from ..ledger import Effect, Ledger, default_ledger

__all__ = [
    "Check",
    "CheckResult",
    "Fail",
    "call",
    "completed",
    "effects_of",
    "exercise",
    "fresh_key",
    "output",
    "require",
    "require_service",
    "wait_until",
]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check: passed, or what is wrong and a hint."""

    exercise: str
    ok: bool
    message: str
    hint: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def assert_ok(self) -> CheckResult:
        """Raise AssertionError (with the message and the hint) unless the check passed."""
        if not self.ok:
            raise AssertionError(str(self))
        return self

    def __str__(self) -> str:
        if self.ok:
            return f"PASS {self.exercise}: {self.message}"
        return f"FAIL {self.exercise}: {self.message}" + (f"\nHint: {self.hint}" if self.hint else "")

    def _repr_markdown_(self) -> str:
        if self.ok:
            return f"✅ **{self.exercise} passed.** {_md(self.message)}"
        text = f"❌ **{self.exercise}: not yet.** {_md(self.message)}"
        return text + (f"\n\n💡 **Hint:** {_md(self.hint)}" if self.hint else "")

    def _repr_html_(self) -> str:
        color, bg = ("#1e6b34", "#e3f6e8") if self.ok else ("#9b1c1c", "#fde8e8")
        head = "passed" if self.ok else "not yet"
        hint = f"<div><b>Hint:</b> {html.escape(self.hint)}</div>" if self.hint and not self.ok else ""
        return (
            f'<div style="border-left:4px solid {color};background:{bg};padding:6px 10px">'
            f"<b>{html.escape(self.exercise)}: {head}.</b> {html.escape(self.message)}{hint}</div>"
        )


def _md(text: str) -> str:
    return text.replace("\n", "  \n")


class Fail(Exception):
    """Raised inside a check: the exercise is not done yet; `hint` says what to try."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Check[**P]:
    """An exercise check: `await check(...)` runs it in a worker thread; `check.sync(...)` runs it here."""

    def __init__(self, title: str, body: Callable[P, str]) -> None:
        self.title = title
        self.body = body
        functools.update_wrapper(self, body)

    def sync(self, *args: P.args, **kwargs: P.kwargs) -> CheckResult:
        """Run the check in this thread (from a script or a test; never for an agent served in this kernel)."""
        try:
            return progress.record_result(CheckResult(self.title, True, self.body(*args, **kwargs)))
        except Fail as fail:
            return CheckResult(self.title, False, fail.message, fail.hint)
        except RestateError as err:
            return CheckResult(
                self.title,
                False,
                f"Restate answered {err.status}: {err.message}",
                "read Restate's message: a 404 names a service or handler that is not registered (serve and "
                "register it first); a 4xx from your handler is your own validation speaking",
            )
        except ConnectionError as err:
            return CheckResult(self.title, False, str(err), "pass the same Ingress/Admin your notebook uses")
        except TimeoutError as err:
            return CheckResult(
                self.title, False, str(err), "is the agent's process running? look at its log_tail() and the UI"
            )

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> CheckResult:
        """Run the check without blocking the event loop (agents served in this kernel keep answering)."""
        return await asyncio.to_thread(self.sync, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<check {self.title!r}: await it>"


def exercise[**P](lesson: int, number: int) -> Callable[[Callable[P, str]], Check[P]]:
    """Make a check of exercise `number` of lesson `lesson` from a function that returns a pass message."""

    def wrap(body: Callable[P, str]) -> Check[P]:
        return Check(f"Lesson {lesson:02d} · exercise {number}", body)

    return wrap


def require(condition: object, message: str, hint: str = "") -> None:
    """Fail with `message` and `hint` unless `condition` holds."""
    if not condition:
        raise Fail(message, hint)


def fresh_key(prefix: str = "check") -> str:
    """Return a new object key, so a check never reuses a learner's session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def require_service(admin: Admin, service: str) -> None:
    """Fail unless the server lists `service`."""
    services = admin.services()
    require(
        service in services,
        f"the server does not list a service named {service!r} (it lists {', '.join(sorted(services)) or 'none'})",
        "serve it and register it first (serve_in_kernel or AgentProcess), and pass the name you gave it",
    )


def call(ingress: Ingress, service: str, handler: str, body: Any = None, *, key: str | None = None) -> tuple[str, Any]:
    """Send a request, wait for its result; return (invocation id, result)."""
    sent = ingress.send(service, handler, body, key=key)
    return sent.invocation_id, ingress.attach(sent.invocation_id)


def completed(admin: Admin, invocation_id: str, *, success: bool | None = None) -> dict[str, Any]:
    """Return the sys_invocation row of a finished invocation (optionally: that succeeded, or failed)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            row = admin.invocation(invocation_id)
            break
        except RestateError as err:
            # Restate answers a malformed id with a 500 that says so; any other 5xx is the server not ready to
            # answer yet (e.g. a cluster's partitions moving after a node came back), so ask again for a while.
            invalid = err.status < 500 or "valid invocation id" in str(err)
            if invalid or time.monotonic() > deadline:
                row = None
                require(
                    not invalid,
                    f"{invocation_id!r} is not a valid invocation id",
                    "pass an id like 'inv_1abc...', as sent",
                )
                require(False, f"the server could not answer for {invocation_id!r}: {err}", "wait until it is ready")
            time.sleep(0.5)
    require(
        row is not None,
        f"the server has no invocation {invocation_id!r}",
        "pass the id that `ingress.send(...).invocation_id` gave you, on this same server",
    )
    assert row is not None
    require(
        row["status"] == "completed",
        f"invocation {invocation_id} is {row['status']!r}, not finished yet",
        "wait for it (`ingress.attach(id)`), or look at why it waits in the Restate UI",
    )
    if success is True:
        require(
            row.get("completion_result") == "success",
            f"invocation {invocation_id} failed: {row.get('completion_failure')}",
            "read the failure above, fix the cause and run it again",
        )
    if success is False:
        require(
            row.get("completion_result") != "success",
            f"invocation {invocation_id} succeeded, but the exercise asks for one that ends in an error",
        )
    return row


def output(ingress: Ingress, invocation_id: str) -> Any:
    """Return a finished invocation's result."""
    return ingress.output(invocation_id)


def effects_of(kind: str, *, invocation_id: str | None = None, ledger: Ledger | None = None) -> list[Effect]:
    """Return the ledger's effects of `kind` (of one invocation), from the given or the default ledger."""
    return (ledger or default_ledger()).effects(kind, invocation_id=invocation_id)


def wait_until(done: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll `done()` until it returns something true; return it, or raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        time.sleep(every)


def json_values(values: Iterable[str]) -> list[Any]:
    """Decode each JSON text, keeping text that is not JSON as it is."""
    decoded = []
    for value in values:
        try:
            decoded.append(json.loads(value))
        except (TypeError, ValueError):
            decoded.append(value)
    return decoded
