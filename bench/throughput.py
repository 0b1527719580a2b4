"""Figure 2: turns per second with many sessions at once.

Each of `concurrency` sessions (distinct object keys) sends a turn, waits for the reply and
sends the next, until the level's turn budget or time budget is spent. Plain ADK runs the
same number of sessions as asyncio tasks in this process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from .agents import plain_runner, plain_turn
from .common import summary
from .latency import QUESTION, durable_turn

__all__ = ["measure_throughput"]


async def _level(
    concurrency: int, max_turns: int, max_seconds: float, service: str | None, url: str | None
) -> dict[str, Any]:
    runner = plain_runner() if service is None else None
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    http = httpx.AsyncClient(base_url=url or "http://unused", limits=limits, timeout=600)
    run = uuid.uuid4().hex[:8]
    issued = completed = errors = 0
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + max_seconds

    async def session(i: int) -> None:
        nonlocal issued, completed, errors
        key = f"tp-{run}-{i}"
        while issued < max_turns and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                if service is None:
                    await plain_turn(runner, key, QUESTION)
                else:
                    await durable_turn(http, service, key)
            except (RuntimeError, httpx.HTTPError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)
            completed += 1

    try:
        await asyncio.gather(*(session(i) for i in range(concurrency)))
    finally:
        await http.aclose()
    seconds = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "turns": completed,
        "errors": errors,
        "seconds": seconds,
        "turns_per_s": completed / seconds if seconds > 0 else 0.0,
        "latency": summary(latencies) if latencies else None,
    }


async def measure_throughput(
    targets: dict[str, tuple[str | None, str | None]],
    levels: list[int],
    *,
    max_turns: int,
    max_seconds: float,
) -> dict[str, list[dict[str, Any]]]:
    """For each target label -> (service or None for plain, ingress url), measure each concurrency level.

    Levels run one after another; at each level the targets take turns, so load from others hits all alike.
    A level sends at most max(max_turns, concurrency) turns, so every session sends at least one.
    """
    out: dict[str, list[dict[str, Any]]] = {label: [] for label in targets}
    for level in levels:
        turns = max(max_turns, level)
        for label, (service, url) in targets.items():
            out[label].append(await _level(level, turns, max_seconds, service, url))
    return out
