"""What every exercise check shares: the result, the way a check runs, and small helpers.

A check is written as a plain function that talks to the real server (the ingress and
the admin API) and raises `Fail` when something is not as the exercise asks. `exercise`
turns it into an awaitable: the work runs in a worker thread, so the kernel's event loop
stays free to serve a learner's agent that runs in the kernel (lesson 01), and every
error becomes a `CheckResult` that says what is wrong and what to try.

A check never raises and never hangs. It has a deadline: the helpers below (`call`, `send`,
`attach`, `wait_until`, `completed`) stop waiting when it passes, and if the check's body still
has not returned a little after it, the check gives up on it and fails. Every invocation the
check started through `send` or `call` is tracked, and the ones that did not finish are killed
(through the admin API) when the check ends.

A check judges the exercise's own work. `begin(lesson, admin)` (each lesson module has its own
`begin(admin)`) records the server's time when the learner starts the exercises; `require_new`
refuses an invocation created before it (an id borrowed from the lesson's cells), and
`require_new_deployment` refuses a service whose deployment was registered before it (the
lesson's, an earlier run's, or someone else's under the same name).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx

from .. import progress
from ..clients import Admin, Ingress, RestateError, transient
from ..ledger import Effect, Ledger, default_ledger

__all__ = [
    "Began",
    "Check",
    "CheckResult",
    "Fail",
    "attach",
    "begin",
    "began",
    "call",
    "completed",
    "created_at",
    "deployment_of",
    "effects_of",
    "exercise",
    "fresh_key",
    "listening",
    "output",
    "remaining",
    "require",
    "rerun_hint",
    "rerun_of_begin",
    "require_new",
    "require_new_deployment",
    "require_not_stuck",
    "require_served",
    "require_service",
    "send",
    "track",
    "wait_until",
]

DEFAULT_DEADLINE = 60.0
"""Seconds a check may take, unless its `exercise(...)` says otherwise."""

_GRACE = 3.0
"""Seconds past its deadline that a check's body gets to return, before the check gives up on it."""

_ATTEMPTS = 3
"""Failed attempts after which a check stops waiting for an invocation that its (running) process keeps failing."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one exercise check: passed, or what is wrong and a hint; which lesson and exercise it judged."""

    title: str
    ok: bool
    message: str
    hint: str = ""
    lesson: int = 0
    """The lesson's number (0: not a lesson's exercise)."""
    exercise: int = 0
    """The exercise's number within its lesson (0: not a lesson's exercise)."""

    def __bool__(self) -> bool:
        return self.ok

    def assert_ok(self) -> CheckResult:
        """Raise AssertionError (with the message and the hint) unless the check passed."""
        if not self.ok:
            raise AssertionError(str(self))
        return self

    def __str__(self) -> str:
        if self.ok:
            return f"PASS {self.title}: {self.message}"
        return f"FAIL {self.title}: {self.message}" + (f"\nHint: {self.hint}" if self.hint else "")

    def _repr_markdown_(self) -> str:
        if self.ok:
            return f"✅ **{self.title} passed.** {_md(self.message)}"
        text = f"❌ **FAILED · {self.title}: not yet.** {_md(self.message)}"
        return text + (f"\n\n💡 **Hint:** {_md(self.hint)}" if self.hint else "")

    def _repr_html_(self) -> str:
        if self.ok:
            return (
                '<div style="border-left:6px solid #1e6b34;background:#e3f6e8;color:#0f3d1d;padding:6px 10px">'
                f"<b>✅ {html.escape(self.title)}: passed.</b> {html.escape(self.message)}</div>"
            )
        hint = f'<div style="margin-top:6px"><b>💡 Hint:</b> {html.escape(self.hint)}</div>' if self.hint else ""
        return (
            '<div style="border:2px solid #b91c1c;border-left:10px solid #b91c1c;background:#fde8e8;'
            'color:#450a0a;padding:8px 12px;margin:4px 0">'
            f'<div style="color:#b91c1c;font-weight:bold;font-size:1.15em">❌ FAILED · {html.escape(self.title)}:'
            f" not yet.</div><div>{html.escape(self.message)}</div>{hint}</div>"
        )


def _md(text: str) -> str:
    return text.replace("\n", "  \n")


class Fail(Exception):
    """Raised inside a check: the exercise is not done yet; `hint` says what to try."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass
class _Run:
    """One run of a check: its deadline, the invocations it started, and whether it was given up."""

    title: str
    lesson: int
    deadline: float
    budget: float
    admin: Admin | None
    started: list[str] = field(default_factory=list)
    gave_up: threading.Event = field(default_factory=threading.Event)
    waiting_for: str = ""
    attempts: dict[str, int] = field(default_factory=dict)


_local = threading.local()


def _run() -> _Run | None:
    return getattr(_local, "run", None)


def _find_admin(args: Iterable[Any]) -> Admin | None:
    return next((a for a in args if isinstance(a, Admin)), None)


class Check[**P]:
    """An exercise check: `await check(...)` runs it in a worker thread; `check.sync(...)` runs it here."""

    def __init__(
        self,
        title: str,
        body: Callable[P, str],
        *,
        lesson: int = 0,
        number: int = 0,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.title = title
        self.body = body
        self.lesson = lesson
        self.number = number
        self.deadline = deadline
        functools.update_wrapper(self, body)

    def sync(self, *args: P.args, **kwargs: P.kwargs) -> CheckResult:
        """Run the check and wait for its result (from a script or a test; never for an agent served here)."""
        run = _Run(
            self.title,
            self.lesson,
            time.monotonic() + self.deadline,
            self.deadline,
            _find_admin([*args, *kwargs.values()]),
        )
        box: list[CheckResult] = []

        def work() -> None:
            _local.run = run
            try:
                box.append(self._judge(*args, **kwargs))
            finally:
                _local.run = None

        worker = threading.Thread(target=work, name=f"check {self.title}", daemon=True)
        worker.start()
        worker.join(self.deadline + _GRACE)
        if box:
            result = box[0]
        else:
            run.gave_up.set()
            waiting = f" while it waited for {run.waiting_for}" if run.waiting_for else ""
            result = CheckResult(
                self.title,
                False,
                f"the check gave up after {self.deadline:g} s{waiting}",
                "is the agent's process running, and is the server answering? look at the invocation in the "
                "Restate UI, then run the check again",
            )
        result = replace(_clean_up(run, result), lesson=self.lesson, exercise=self.number)
        return progress.record_result(result)  # only a pass the learner sees is recorded

    def _judge(self, *args: P.args, **kwargs: P.kwargs) -> CheckResult:
        try:
            return CheckResult(self.title, True, self.body(*args, **kwargs))
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
        except (TimeoutError, httpx.TimeoutException) as err:
            return CheckResult(
                self.title,
                False,
                f"no answer in time: {err or type(err).__name__}",
                "is the agent's process running? look at its log_tail() and at the invocation in the Restate UI",
            )
        except httpx.HTTPError as err:
            return CheckResult(
                self.title,
                False,
                f"the check could not talk to Restate: {type(err).__name__}: {err}",
                "is the server running (`python -m agent_lib status`)? pass the Ingress/Admin your notebook uses",
            )
        except Exception as err:  # a check never raises: anything else is a failed result too
            return CheckResult(
                self.title,
                False,
                f"the check stopped on {type(err).__name__}: {err}",
                "check the arguments you passed (the ids, keys and names the exercise asks for); if they are "
                "right, this is a bug in the check: report it with this message",
            )

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> CheckResult:
        """Run the check without blocking the event loop (agents served in this kernel keep answering)."""
        return await asyncio.to_thread(self.sync, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<check {self.title!r}: await it>"


def _clean_up(run: _Run, result: CheckResult) -> CheckResult:
    """Kill the invocations the check started that did not finish; say so in the result."""
    if not run.started:
        return result
    admin = Admin(run.admin.url if run.admin is not None else None, timeout=5.0)
    killed = []
    try:
        for invocation_id in dict.fromkeys(run.started):
            with contextlib.suppress(RestateError, ConnectionError, httpx.HTTPError):
                row = admin.invocation(invocation_id)
                if row is not None and row["status"] != "completed":
                    admin.kill(invocation_id)
                    killed.append(invocation_id)
    finally:
        admin.close()
    if not killed:
        return result
    note = f" (the check killed {len(killed)} invocation(s) it had started and left unfinished: {', '.join(killed)})"
    return replace(result, message=result.message + note)


def exercise[**P](
    lesson: int, number: int, *, deadline: float = DEFAULT_DEADLINE
) -> Callable[[Callable[P, str]], Check[P]]:
    """Make a check of exercise `number` of lesson `lesson` from a function that returns a pass message."""

    def wrap(body: Callable[P, str]) -> Check[P]:
        return Check(f"Lesson {lesson:02d} · exercise {number}", body, lesson=lesson, number=number, deadline=deadline)

    return wrap


def require(condition: object, message: str, hint: str = "") -> None:
    """Fail with `message` and `hint` unless `condition` holds."""
    if not condition:
        raise Fail(message, hint)


def fresh_key(prefix: str = "check") -> str:
    """Return a new object key, so a check never reuses a learner's session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def remaining(what: str = "the server") -> float:
    """Return the seconds left before the running check's deadline; fail once it has passed (or was given up)."""
    run = _run()
    if run is None:
        return DEFAULT_DEADLINE
    run.waiting_for = what
    left = run.deadline - time.monotonic()
    if left <= 0 or run.gave_up.is_set():
        raise Fail(
            f"the check gave up after {run.budget:g} s while it waited for {what}",
            "is the agent's process running? look at the invocation in the Restate UI, then run the check again",
        )
    return left


# --- the exercise's own work: begun when the learner starts the exercises ---


@dataclass(frozen=True)
class Began:
    """When the learner began a lesson's exercises, in the server's clock (UTC)."""

    lesson: int
    at: datetime

    def __repr__(self) -> str:
        return (
            f"Lesson {self.lesson:02d}: exercises begun at {self.at:%H:%M:%S} UTC (server time). The checks judge "
            "only the invocations, claims and deployments you create from now on."
        )


_began: dict[int, Began] = {}

_begun: dict[int, list[datetime]] = {}
"""Every begin() of each lesson, in this kernel, oldest first: tells a re-run begin() cell from a borrowed id."""

RERUN_WINDOW = timedelta(minutes=5)
"""Work this little older than the latest begin() is taken for work done before the begin() cell was run again."""

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?")


def created_at(value: str) -> datetime:
    """Read a timestamp of the server's tables ("2026-01-02T03:04:05.678Z") as a naive UTC datetime."""
    match = _STAMP.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a server timestamp")
    micros = (match[2] or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{match[1]}.{micros}")


_CLOCK_SLACK = timedelta(milliseconds=5)
"""The server may stamp an invocation sent right after begin() a millisecond before begin() read (seen: 1 ms)."""


def _server_now(admin: Admin) -> datetime:
    rows = admin.query("SELECT now() AS now")
    now = created_at(rows[0]["now"])
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # the tables keep milliseconds


def _unanswered(admin: Admin) -> str:
    return (
        f"the Restate server at {admin.url} does not answer, so the start of the exercises cannot be recorded: "
        "start it (`make lab`, or `python -m agent_lib up`; a lesson that runs a server of its own: "
        "`server.start()`), then run this cell again"
    )


def begin(lesson: int, admin: Admin) -> Began:
    """Record that the learner begins lesson `lesson`'s exercises now (server time); return the record.

    A server that does not answer fails within a few seconds, with how to start it: a new client does not ask again
    after a refused connection, where `admin`, which the server answered before, would for half a minute.
    """
    probe = Admin(admin.url, timeout=5.0, retry_for=admin.retry_for)
    try:
        now = _server_now(probe)
    except (ConnectionError, httpx.HTTPError, RestateError) as err:
        raise ConnectionError(_unanswered(admin)) from err
    finally:
        probe.close()
    began_ = Began(lesson, now)
    _began[lesson] = began_
    _begun.setdefault(lesson, []).append(now)
    return began_


def rerun_of_begin(lesson: int, made: datetime) -> str:
    """Say that begin() was run again after work made at `made` (in this kernel), or return "" if it was not."""
    times = _begun.get(lesson, [])
    if len(times) < 2 or made >= times[-1] - _CLOCK_SLACK:
        return ""
    earlier = [t for t in times[:-1] if t <= made + _CLOCK_SLACK]
    if not earlier and times[-1] - made > RERUN_WINDOW:
        return ""
    first = f", after your first begin() at {earlier[0]:%H:%M:%S}" if earlier else ""
    return (
        f"you ran check.lesson_{lesson:02d}.begin(admin) again at {times[-1]:%H:%M:%S} UTC ({len(times)} times in "
        f"all), after this work was done (at {made:%H:%M:%S}{first}): the checks judge only what you do after the "
        "latest begin()"
    )


def rerun_hint(lesson: int) -> str:
    """Tell how to recover from a begin() cell run again after the work."""
    return (
        f"do the exercise's steps again now (with a new key or id), and run the check; from now on leave the "
        f"check.lesson_{lesson:02d}.begin(admin) cell alone (run it once per lesson)"
    )


def began(lesson: int | None = None) -> Began:
    """Return when the exercises of `lesson` (default: the running check's) began; fail if nobody said."""
    run = _run()
    number = lesson if lesson is not None else (run.lesson if run is not None else 0)
    record = _began.get(number)
    require(
        record is not None,
        f"the start of lesson {number:02d}'s exercises is not recorded, so the check cannot tell your work from the "
        "lesson's",
        f"run `check.lesson_{number:02d}.begin(admin)` (the first line of the exercise cell), then do the exercise "
        "again, after it",
    )
    assert record is not None
    return record


def require_new(
    admin: Admin, invocation: str | dict[str, Any], what: str = "invocation", hint: str = ""
) -> dict[str, Any]:
    """Fail unless the invocation (an id or its sys_invocation row) was created after the exercises began."""
    row = invocation if isinstance(invocation, dict) else _invocation_row(admin, invocation)
    start = began()
    made = created_at(row["created_at"])
    rerun = rerun_of_begin(start.lesson, made)
    if rerun:
        hint = rerun_hint(start.lesson) + (f" ({hint})" if hint else "")
    require(
        made >= start.at - _CLOCK_SLACK,
        f"{what} {row['id']} was created at {made:%H:%M:%S}, before you began the exercises ({start.at:%H:%M:%S} "
        "UTC): " + (rerun or "it is the lesson's own (or an earlier run's), not the exercise's"),
        hint
        or f"do the exercise's steps yourself, after check.lesson_{start.lesson:02d}.begin(admin), and pass the id "
        "they give you",
    )
    return row


def _invocation_row(admin: Admin, invocation_id: str) -> dict[str, Any]:
    require(
        isinstance(invocation_id, str) and invocation_id.startswith("inv_"),
        f"{invocation_id!r} is not an invocation id",
        "pass an id like 'inv_1abc...', as `ingress.send(...).invocation_id` gave it",
    )
    try:
        row = admin.invocation(invocation_id)
    except RestateError as err:
        require(
            err.status >= 500 and "valid invocation id" not in str(err),
            f"{invocation_id!r} is not a valid invocation id",
            "pass an id like 'inv_1abc...', as `ingress.send(...).invocation_id` gave it",
        )
        raise
    require(
        row is not None,
        f"the server has no invocation {invocation_id!r}",
        "pass the id that `ingress.send(...).invocation_id` gave you, on this same server",
    )
    assert row is not None
    return row


# --- services and their deployments ---


def require_service(admin: Admin, service: str) -> None:
    """Fail unless the server lists `service`."""
    services = admin.services()
    require(
        service in services,
        f"the server does not list a service named {service!r} (it lists {', '.join(sorted(services)) or 'none'})",
        "serve it and register it first (serve_in_kernel or AgentProcess), and pass the name you gave it",
    )


def deployment_of(admin: Admin, service: str | None = None, *, deployment_id: str | None = None) -> dict[str, Any]:
    """Return the deployment (id, uri, created_at, services) that serves `service` now, or the one with that id."""
    if deployment_id is None:
        require(service, "name a service or a deployment", "pass the service's name")
        assert service is not None
        deployment_id = str(admin.service(service)["deployment_id"])
    return admin.deployment(deployment_id)


def listening(uri: str, timeout: float = 1.0) -> bool | None:
    """Return whether something accepts connections at a deployment's uri (None: this machine cannot tell)."""
    parts = urlparse(uri)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return None


def require_served(admin: Admin, service: str, hint: str = "") -> dict[str, Any]:
    """Fail unless `service` is registered and its deployment's process accepts connections; return the deployment."""
    require_service(admin, service)
    dep = deployment_of(admin, service)
    require(
        listening(str(dep.get("uri", ""))) is not False,
        f"{service} is registered, but nothing listens at {dep.get('uri')}: the process that serves it is stopped",
        hint or "start it again (process.start(), or serve it again in this kernel), then run the check again",
    )
    return dep


def require_new_deployment(admin: Admin, service: str, hint: str = "") -> dict[str, Any]:
    """Fail unless `service`'s current deployment was registered after the exercises began; return it."""
    require_service(admin, service)
    dep = deployment_of(admin, service)
    start = began()
    made = created_at(dep["created_at"])
    rerun = rerun_of_begin(start.lesson, made)
    require(
        made >= start.at - _CLOCK_SLACK,
        f"{service} is served by a deployment registered at {made:%H:%M:%S}, before you began the exercises "
        f"({start.at:%H:%M:%S} UTC): "
        + (rerun or "that is the lesson's, an earlier run's or someone else's, not the one you serve now"),
        (f"serve your {service} again now, then run the check; " + rerun_hint(start.lesson) if rerun else hint)
        or f"serve your {service} after check.lesson_{start.lesson:02d}.begin(admin), then run the check again",
    )
    return dep


# --- calling: every invocation a check starts is tracked, every wait is bounded ---


def track(invocation_id: str) -> str:
    """Count an invocation as started by the running check: killed at its end if it did not finish."""
    run = _run()
    if run is not None:
        run.started.append(invocation_id)
    return invocation_id


def send(
    ingress: Ingress,
    service: str,
    handler: str,
    body: Any = None,
    *,
    key: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """Start a handler without waiting for it (tracked); return its invocation id."""
    left = remaining(f"the server to accept a call to {service}/{handler}")
    with Ingress(ingress.url, timeout=min(left, ingress.timeout)) as bounded:
        sent = bounded.send(service, handler, body, key=key, idempotency_key=idempotency_key)
    return track(sent.invocation_id)


def attach(ingress: Ingress, invocation_id: str, what: str = "") -> Any:
    """Wait for an invocation's result, within the check's deadline; fail early if its process is stopped."""
    what = what or f"invocation {invocation_id}"
    run = _run()
    while True:
        left = remaining(what)
        if run is None:
            return ingress.attach(invocation_id)
        try:
            return ingress.attach(invocation_id, timeout=min(left, 3.0))
        except httpx.TimeoutException:
            pass
        require_not_stuck(run.admin or Admin(), invocation_id, what)


def require_not_stuck(admin: Admin, invocation_id: str, what: str = "") -> None:
    """Fail if an unfinished invocation cannot finish by itself: its process is stopped, or it is paused."""
    what = what or f"invocation {invocation_id}"
    row = admin.invocation(invocation_id)
    if row is None or row["status"] == "completed":
        return
    service = row["target_service_name"]
    if row["status"] == "paused":
        raise Fail(
            f"{what} is paused after failing: {_gist(row.get('last_failure'))}",
            "fix the cause, then resume it (admin.resume(id)) or kill it",
        )
    dep_id = row.get("pinned_deployment_id") or None
    dep = deployment_of(admin, service, deployment_id=dep_id)
    reachable = listening(str(dep.get("uri", "")))
    attempts = int(row.get("retry_count") or 0)
    run = _run()
    seen = run.attempts.get(invocation_id) if run is not None else None
    if run is not None and row["status"] == "backing-off" and reachable:
        run.attempts[invocation_id] = attempts
    # Still failing while its process runs, and more often than when we last looked: the code fails, not the network.
    if row["status"] == "backing-off" and reachable and attempts >= _ATTEMPTS and seen is not None and attempts > seen:
        raise Fail(
            f"{what} keeps failing ({attempts} attempts so far); its last failure: {_gist(row.get('last_failure'))}",
            "read the failure, fix your code and serve it again, then run the check again",
        )
    if reachable is False:
        raise Fail(
            f"{what} cannot finish: the process that serves {service} is stopped (nothing listens at {dep.get('uri')})",
            "start it again (process.start(), or serve it again in this kernel), then run the check again",
        )


def _gist(failure: object, limit: int = 400) -> str:
    """Shorten a failure with a traceback to its first line and its last (the exception and its message)."""
    lines = [line.strip() for line in str(failure or "").splitlines() if line.strip()]
    if not lines:
        return "(none recorded)"
    last = lines[-1].partition(": ")[2] or lines[-1]
    text = lines[0] if len(lines) == 1 or last in lines[0] else f"{lines[0]} … {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call(ingress: Ingress, service: str, handler: str, body: Any = None, *, key: str | None = None) -> tuple[str, Any]:
    """Send a request (tracked), wait for its result within the check's deadline; return (invocation id, result)."""
    invocation_id = send(ingress, service, handler, body, key=key)
    return invocation_id, attach(ingress, invocation_id, f"an answer from {service}/{handler}")


def completed(admin: Admin, invocation_id: str, *, success: bool | None = None, stopped: str = "") -> dict[str, Any]:
    """Return the sys_invocation row of a finished invocation (optionally: that succeeded, or failed).

    If it has not finished and the process that serves it is stopped, fail with `stopped` as the hint.
    """
    try:
        row = admin.invocation(invocation_id)  # Admin itself asks again while a cluster's partitions move
    except RestateError as err:
        row = None
        require(transient(err), f"{invocation_id!r} is not a valid invocation id", "pass an id like 'inv_1abc...'")
        require(False, f"the server could not answer for {invocation_id!r}: {err}", "wait until it is ready")
    require(
        row is not None,
        f"the server has no invocation {invocation_id!r}",
        "pass the id that `ingress.send(...).invocation_id` gave you, on this same server",
    )
    assert row is not None
    if row["status"] != "completed":
        dep_id = row.get("pinned_deployment_id") or None
        with contextlib.suppress(RestateError):
            dep = deployment_of(admin, row["target_service_name"], deployment_id=dep_id)
            require(
                listening(str(dep.get("uri", ""))) is not False,
                f"invocation {invocation_id} is {row['status']!r}, not finished: the process that serves "
                f"{row['target_service_name']} is stopped (nothing listens at {dep.get('uri')})",
                stopped or "start the agent's process again, then wait for the invocation (`ingress.attach(id)`)",
            )
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
            "pass the id of the invocation that ended in an error, as the exercise asks",
        )
    return row


def output(ingress: Ingress, invocation_id: str) -> Any:
    """Return a finished invocation's result."""
    return ingress.output(invocation_id)


def effects_of(kind: str, *, invocation_id: str | None = None, ledger: Ledger | None = None) -> list[Effect]:
    """Return the ledger's effects of `kind` (of one invocation), from the given or the default ledger."""
    return (ledger or default_ledger()).effects(kind, invocation_id=invocation_id)


def wait_until(done: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll `done()` until it returns something true; return it, or raise TimeoutError naming `what`.

    Inside a check, it also stops at the check's deadline (with a failed result that names `what`).
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining(what)
        value = done()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        time.sleep(every)
