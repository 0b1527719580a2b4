"""Figure 2: turns per second with many sessions at once.

`concurrency` users at once each send a turn, wait for the reply and send the next, until the
level's turn budget or time budget is spent. Each turn opens a new session (a new object key),
as in figure 1, so every level does the same work per turn: with one session per user, a level
with fewer users would give each a longer conversation, whose turns cost more (ADK re-reads the
history), and the levels would not compare. Plain ADK runs the same users as asyncio tasks in
this process.

Each durable session has its own HTTP client (one connection), as each user of a real
deployment would. One shared httpx client for all sessions was the bench's own bottleneck:
its connection pool scans every connection on every request and every release, so with
1000 connections this process spent about 12 ms of CPU per turn just picking connections
(`bench/collapse.py` shows it), and durable throughput seemed to collapse at 1000 sessions.

Besides turns/s, the CPU each process spent per turn is read from /proc: the client (this
process), the agent (its process, or its supervisor and workers) and the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx

from .agents import plain_runner, plain_turn
from .common import summary
from .latency import QUESTION, cpu_seconds, durable_turn

__all__ = ["Target", "gc_tuned", "measure_throughput", "session_client"]

_TLS = ssl.create_default_context()
"""One TLS context for every session's client: building one per client costs milliseconds (certifi)."""


def session_client(url: str | None) -> httpx.AsyncClient:
    """Return the HTTP client of one session: one connection of its own, as one user of the agent has."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=url or "http://unused", limits=limits, timeout=600, verify=_TLS)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """Tune this process's garbage collector as the kit's agent processes do (serving.tune_gc), for a block."""
    from agent_lib.serving import tune_gc

    saved = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


@dataclass
class Target:
    """What a throughput level drives: plain ADK in this process (no service), or a durable service."""

    service: str | None = None
    url: str | None = None
    agent_pids: Callable[[], list[int]] = field(default=lambda: [])
    """The agent's processes (an AgentProcess's pid, or its supervisor and workers), for their CPU time."""
    server_pid: int | None = None
    pooled_client: bool = False
    """Send every user's turns through one shared httpx client (the bench before its fix; bench/collapse.py)."""
    kept_sessions: bool = False
    """Keep one session per user instead of a new session per turn (the bench before its fix; bench/collapse.py)."""
    around: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    """What to wrap the level in (plain ADK runs in this process: e.g. gc_tuned)."""


def _cpu(target: Target) -> dict[str, float]:
    return {
        "client": time.process_time(),
        "agent": sum(cpu_seconds(pid) for pid in target.agent_pids()),
        "server": cpu_seconds(target.server_pid),
    }


async def _level(concurrency: int, max_turns: int, max_seconds: float, target: Target) -> dict[str, Any]:
    with target.around():
        return await _run_level(concurrency, max_turns, max_seconds, target)


async def _run_level(concurrency: int, max_turns: int, max_seconds: float, target: Target) -> dict[str, Any]:
    runner = plain_runner() if target.service is None else None
    shared = None
    if target.pooled_client and target.service is not None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        shared = httpx.AsyncClient(base_url=target.url or "", limits=limits, timeout=600)
    run = uuid.uuid4().hex[:8]
    issued = completed = errors = 0
    latencies: list[float] = []
    before = _cpu(target)
    start = time.perf_counter()
    deadline = start + max_seconds

    async def session(i: int) -> None:
        nonlocal issued, completed, errors
        http = shared or (session_client(target.url) if target.service is not None else None)
        try:
            while issued < max_turns and time.perf_counter() < deadline:
                issued += 1
                key = f"tp-{run}-{i}" if target.kept_sessions else f"tp-{run}-{i}-{issued}"
                t0 = time.perf_counter()
                try:
                    if http is None:
                        await plain_turn(runner, key, QUESTION)
                    else:
                        await durable_turn(http, target.service or "", key)
                except (RuntimeError, httpx.HTTPError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                completed += 1
        finally:
            if http is not None and http is not shared:
                await http.aclose()

    try:
        await asyncio.gather(*(session(i) for i in range(concurrency)))
    finally:
        if shared is not None:
            await shared.aclose()
    seconds = time.perf_counter() - start
    after = _cpu(target)
    cpu = {k: 1000 * (after[k] - before[k]) / completed if completed else 0.0 for k in before}
    cpu["total"] = sum(cpu.values())
    return {
        "concurrency": concurrency,
        "turns": completed,
        "errors": errors,
        "seconds": seconds,
        "turns_per_s": completed / seconds if seconds > 0 else 0.0,
        "latency": summary(latencies) if latencies else None,
        "cpu_ms_per_turn": cpu,
    }


async def measure_throughput(
    targets: dict[str, Target], levels: list[int], *, max_turns: int, max_seconds: float
) -> dict[str, list[dict[str, Any]]]:
    """For each labelled target, measure each concurrency level.

    Levels run one after another; at each level the targets take turns, so load from others hits all alike.
    A level sends at most max(max_turns, concurrency) turns, so every session sends at least one.
    """
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
    for level in levels:
        turns = max(max_turns, level)
        for label, target in targets.items():
            out[label].append(await _level(level, turns, max_seconds, target))
    return out
