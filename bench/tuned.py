"""The seed's weather agent under another service name, with bench-only tunings applied in its process.

A bench prototype of changes to files the bench does not own (agent_lib/ledger.py,
agent_lib/serving.py): it patches them in the agent process only, so one run can
measure "as shipped" and "tuned" side by side. Served as "bench.tuned:weather_service";
the environment says what to apply:

- BENCH_SERVICE: the service name (default "WeatherAgentTuned").
- BENCH_TUNING: a comma list of
  - "ledger-cache": open the SQLite ledger once per process and keep its connection;
  - "no-ledger": record no model call at all (to measure what recording costs);
  - "uvloop": run the agent's event loop on uvloop;
  - "h2": hypercorn's HTTP/2 limits raised (1000 streams, no GOAWAY after 1000 requests);
  - "quiet": drop ADK's per-call "Skipping missing token usage metadata" warning;
  - "warm": import, before the process listens, the ADK modules ADK otherwise imports on the
    first turn (fastapi, authlib, the workflow runner: about 1 s of CPU), so the first turn after
    a restart does not pay for them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import restate

from agent_lib._zygote import ADK_LAZY_MODULES  # what ADK 2.13 imports lazily during a process's first turn
from agent_lib.agents import weather
from agent_lib.agents._common import JSON_INPUT, LESSON_RETRY_POLICY

__all__ = ["ADK_LAZY_MODULES", "TUNINGS", "apply", "chat_services", "ledger_kept_open", "tunings", "weather_service"]

TUNINGS = ("ledger-cache", "no-ledger", "uvloop", "h2", "quiet", "warm")


def tunings() -> list[str]:
    """Return the tunings named in BENCH_TUNING, refusing unknown ones."""
    names = [t.strip() for t in os.environ.get("BENCH_TUNING", "").split(",") if t.strip()]
    unknown = sorted(set(names) - set(TUNINGS))
    if unknown:
        raise ValueError(f"unknown BENCH_TUNING {unknown}: choose from {', '.join(TUNINGS)}")
    return names


@contextlib.contextmanager
def ledger_kept_open() -> Iterator[None]:
    """Apply "ledger-cache" in this process for the duration of a block (the bench's plain ADK runs)."""
    from agent_lib import ledger, models

    saved = (ledger.Ledger._connect, ledger.default_ledger, models.default_ledger)
    _cache_ledger()
    try:
        yield
    finally:
        ledger.Ledger._connect, ledger.default_ledger, models.default_ledger = saved  # type: ignore[method-assign]


def _cache_ledger() -> None:
    from agent_lib import ledger, models

    local = threading.local()

    def connect(self: ledger.Ledger) -> sqlite3.Connection:
        pool = local.__dict__.setdefault("connections", {})
        db = pool.get(self.path)
        if db is None:
            db = pool[self.path] = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    class _Kept:
        """Make `with self._connect() as db` keep the connection open."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            return self.db

        def __exit__(self, *exc: object) -> None:
            return None

    ledger.Ledger._connect = lambda self: _Kept(connect(self))  # type: ignore[method-assign,assignment,return-value]
    cached = functools.lru_cache(maxsize=8)(lambda path: ledger.Ledger(path))
    default = lambda: cached(str(os.environ.get("AGENT_LEDGER") or Path(ledger.data_dir()) / "ledger.sqlite"))  # noqa: E731
    ledger.default_ledger = default
    models.default_ledger = default


def _no_ledger() -> None:
    from agent_lib import models

    def count_in_memory_only(self: models._CountsCalls, model: str) -> None:
        self._calls += 1

    models._CountsCalls._count_call = count_in_memory_only  # type: ignore[method-assign]


def _uvloop() -> None:
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _h2() -> None:
    from hypercorn.config import Config

    Config.h2_max_concurrent_streams = 1000
    Config.keep_alive_max_requests = 2**31
    Config.backlog = 1024


def _quiet() -> None:
    class _NoUsageWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith("Skipping missing token usage")

    logging.getLogger("google_adk.google.adk.telemetry._metrics").addFilter(_NoUsageWarning())


def _warm() -> None:
    import importlib

    for name in ADK_LAZY_MODULES:
        importlib.import_module(name)


def apply(names: list[str]) -> None:
    """Apply the named tunings to this process."""
    steps = {"ledger-cache": _cache_ledger, "no-ledger": _no_ledger, "uvloop": _uvloop, "h2": _h2}
    steps |= {"quiet": _quiet, "warm": _warm}
    for name in names:
        steps[name]()


apply(tunings())

weather_service = restate.VirtualObject(os.environ.get("BENCH_SERVICE", "WeatherAgentTuned"))
weather_service.handler("run", input_serde=JSON_INPUT, invocation_retry_policy=LESSON_RETRY_POLICY)(weather.run)


def chat_services() -> list[str]:
    """Return the lesson-03 chat agents' targets, if agent_lib.agents.chat exists."""
    try:
        import agent_lib.agents.chat  # noqa: F401
    except ImportError:
        return []
    return ["agent_lib.agents.chat:chat_service", "agent_lib.agents.chat:compact_chat_service"]
