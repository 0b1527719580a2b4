"""Gates: named hook points where an agent can be stopped on purpose, so a crash hits the same spot every time.

Lesson 02 introduces them. Agent code marks its hook points with ``await hit("orders.model.before")``.
A hook point does nothing (one `stat` of a file) unless a gate is *armed* there. An armed gate is an
on-disk rendezvous between two processes:

1. the controller (a notebook, a test) arms it: ``gate = Gate("orders.model.before").arm()``;
2. the agent process reaches the hook point, marks the gate *reached* and waits;
3. the controller sees it reached (``gate.wait_reached()``) and then kills the process, or lets it go on
   (``gate.open()``).

A gate stops one hit, then it is spent: a restarted process runs through the same point. ``arm(skip=n)``
lets the first `n` hits pass (e.g. stop at the second model call). A process can also be armed from its
environment, ``AGENT_GATES="orders.model.before,orders.model.after@1"`` (``@n`` skips n hits), once
per process. Gate files live in ``AGENT_GATE_DIR``, else ``<RESTATE_KIT_DATA>/gates``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events.event import Event
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins import BasePlugin

from ._paths import data_dir

__all__ = ["Gate", "GatePlugin", "GateTimeout", "gate_dir", "hit", "hit_sync"]

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_POLL = 0.05
_env_armed: dict[str, int] | None = None


class GateTimeout(TimeoutError):
    """A gate was not reached in time."""


def gate_dir() -> Path:
    """Return the directory of gate files: `AGENT_GATE_DIR`, else `<RESTATE_KIT_DATA>/gates`."""
    explicit = os.environ.get("AGENT_GATE_DIR")
    return Path(explicit) if explicit else data_dir() / "gates"


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"gate name {name!r} may use only letters, digits, '_', '.' and '-'")
    return name


def _paths(name: str, directory: Path | None = None) -> tuple[Path, Path, Path]:
    base = directory or gate_dir()
    return base / f"{name}.armed", base / f"{name}.reached", base / f"{name}.open"


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, default=str))
    os.replace(tmp, path)


def _parse_env(value: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, skip = item.partition("@")
        armed[_check_name(name)] = int(skip or 0)
    return armed


def _claim_env(name: str) -> bool:
    global _env_armed
    if _env_armed is None:
        _env_armed = _parse_env(os.environ.get("AGENT_GATES", ""))
    if name not in _env_armed:
        return False
    if _env_armed[name] > 0:
        _env_armed[name] -= 1
        return False
    del _env_armed[name]
    return True


def _claim_file(armed: Path) -> bool:
    if not armed.exists():
        return False
    claimed = armed.with_name(f"{armed.name}.{os.getpid()}.claim")
    try:
        os.replace(armed, claimed)
    except FileNotFoundError:
        return False
    try:
        skip = int(json.loads(claimed.read_text() or "{}").get("skip", 0))
    except (ValueError, AttributeError):
        skip = 0
    if skip > 0:
        _write_json(claimed, {"skip": skip - 1})
        os.replace(claimed, armed)
        return False
    claimed.unlink(missing_ok=True)
    return True


def _reach(name: str, info: dict[str, Any]) -> tuple[Path, float] | None:
    """Claim the gate at `name` if it is armed; mark it reached and return (open path, deadline)."""
    armed, reached, opened = _paths(name)
    if not (_claim_env(name) or _claim_file(armed)):
        return None
    reached.parent.mkdir(parents=True, exist_ok=True)
    _write_json(reached, {"name": name, "pid": os.getpid(), "at": time.time(), **info})
    _log.warning("gate %s reached (pid %s): waiting until it is opened", name, os.getpid())
    return opened, time.monotonic() + float(os.environ.get("AGENT_GATE_TIMEOUT", "600"))


def _pass(name: str, opened: Path) -> None:
    if opened.exists():
        opened.unlink(missing_ok=True)
    else:
        _log.warning("gate %s was not opened within AGENT_GATE_TIMEOUT: going on", name)


async def hit(name: str, **info: Any) -> None:
    """Mark the hook point `name`: if a gate is armed here, report it reached and wait until it is opened."""
    claim = _reach(name, info)
    if claim is None:
        return
    opened, deadline = claim
    while not opened.exists() and time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
    _pass(name, opened)


def hit_sync(name: str, **info: Any) -> None:
    """Mark the hook point `name` in synchronous code (blocks the thread while the gate is closed)."""
    claim = _reach(name, info)
    if claim is None:
        return
    opened, deadline = claim
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(_POLL)
    _pass(name, opened)


class Gate:
    """The controller's side of one named gate: arm it, wait until an agent reaches it, open or disarm it."""

    def __init__(self, name: str, directory: str | os.PathLike[str] | None = None) -> None:
        self.name = _check_name(name)
        self.directory = Path(directory) if directory is not None else gate_dir()
        self._armed, self._reached, self._open = _paths(name, self.directory)

    def arm(self, skip: int = 0) -> Gate:
        """Arm the gate so that it stops the hit after the first `skip` hits (forgetting any earlier hit)."""
        if skip < 0:
            raise ValueError("skip counts the hits to let pass first: use 0 or more")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._reached.unlink(missing_ok=True)
        self._open.unlink(missing_ok=True)
        _write_json(self._armed, {"skip": skip})
        return self

    def disarm(self) -> None:
        """Forget the gate: not armed, not reached, not open."""
        for path in (self._armed, self._reached, self._open):
            path.unlink(missing_ok=True)

    @property
    def armed(self) -> bool:
        """True while the gate waits for its hit."""
        return self._armed.exists()

    @property
    def reached(self) -> dict[str, Any] | None:
        """What the process that reached the gate reported (pid, at, ...), or None."""
        try:
            return dict(json.loads(self._reached.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def wait_reached(self, timeout: float = 120.0, *, alive: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Wait until a process reaches the gate and return its report; `alive` lets a dead process fail fast."""
        deadline = time.monotonic() + timeout
        while (report := self.reached) is None:
            if alive is not None and not alive():
                raise GateTimeout(
                    f"the process is not running: it was stopped, or it died before it reached gate {self.name!r}. "
                    "Start it (process.start()) and send again, or read its log"
                )
            if time.monotonic() > deadline:
                raise GateTimeout(
                    f"no process reached gate {self.name!r} within {timeout:.0f}s: is the gate's hook point on the"
                    f" agent's path, and does the agent see the same gate dir ({self.directory})?"
                )
            time.sleep(_POLL)
        return report

    def open(self) -> None:
        """Let the process that waits at the gate go on."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open.touch()

    def __repr__(self) -> str:
        state = "reached" if self.reached else "armed" if self.armed else "idle"
        return f"Gate({self.name!r}, {state})"


class GatePlugin(BasePlugin):
    """An ADK plugin with hook points around model calls and before the session is stored.

    Put it before RestatePlugin in the app's plugins: its hooks then run before the model step
    (`<prefix>.model.before`), after it (`<prefix>.model.after`, on the model's event) and before
    the session is stored (`<prefix>.store_session.before`).
    """

    def __init__(self, prefix: str, *, invocation_id: Callable[[], str | None] = lambda: None) -> None:
        super().__init__(name=f"gates_{prefix}")
        self.prefix = _check_name(prefix)
        self._invocation_id = invocation_id

    async def before_model_callback(
        self, *, callback_context: CallbackContext, llm_request: LlmRequest
    ) -> LlmResponse | None:
        """Hook `<prefix>.model.before`."""
        await hit(f"{self.prefix}.model.before", invocation_id=self._invocation_id())
        return None

    async def on_event_callback(self, *, invocation_context: InvocationContext, event: Event) -> Event | None:
        """Hook `<prefix>.model.after` on each event the model produced."""
        if event.author != "user" and not event.partial and not event.get_function_responses():
            await hit(f"{self.prefix}.model.after", invocation_id=self._invocation_id())
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Hook `<prefix>.store_session.before`."""
        await hit(f"{self.prefix}.store_session.before", invocation_id=self._invocation_id())
