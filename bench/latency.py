"""Figure 1: the weather agent's turn latency, plain ADK in process vs durable over ingress HTTP.

Variants are measured in interleaved batches (plain, durable as shipped, durable tuned, ...),
so a burst of load from other users of the machine hits them all alike. Each turn starts a
fresh session, so the session's size stays the same (figure 3 looks at growth). Besides wall
time, the CPU time each process spent per turn is read from /proc: on a shared machine it is
the steadier measure of where the work goes.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx

from .agents import plain_runner, plain_turn
from .common import summary

__all__ = ["QUESTION", "Variant", "cpu_seconds", "durable_turn", "measure_latency"]

QUESTION = "What is the weather in New York?"
ANSWER = "The weather in New York is sunny, 72°F"


def cpu_seconds(pid: int | None) -> float:
    """Return the user + system CPU time a process has used so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Variant:
    """One way to run the agent: plain ADK (no service), or a durable service behind an ingress."""

    label: str
    service: str | None = None
    ingress_url: str | None = None
    agent_pid: int | None = None
    server_pid: int | None = None
    around: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    """What to wrap this variant's batches in (plain ADK runs in this process, patched for a block)."""
    samples: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=lambda: {"client": 0.0, "agent": 0.0, "server": 0.0})


async def durable_turn(http: httpx.AsyncClient, service: str, key: str, text: str = QUESTION) -> Any:
    """Send one message to a durable agent's session over ingress and return its reply."""
    response = await http.post(f"/{service}/{key}/run", json=text)
    if response.status_code != 200:
        raise RuntimeError(f"{service}/{key}/run answered {response.status_code}: {response.text[:300]}")
    return response.json()


async def _batch(variant: Variant, clients: dict[str, httpx.AsyncClient], runner: Any, n: int, keep: bool) -> None:
    with variant.around():
        await _turns(variant, clients, runner, n, keep)


async def _turns(variant: Variant, clients: dict[str, httpx.AsyncClient], runner: Any, n: int, keep: bool) -> None:
    before = (time.process_time(), cpu_seconds(variant.agent_pid), cpu_seconds(variant.server_pid))
    for _ in range(n):
        key = f"bench-{uuid.uuid4().hex[:12]}"
        start = time.perf_counter()
        if variant.service is None:
            reply = await plain_turn(runner, key, QUESTION)
        else:
            reply = await durable_turn(clients[variant.label], variant.service, key)
        elapsed = time.perf_counter() - start
        if reply != ANSWER:
            raise RuntimeError(f"{variant.label} answered {reply!r}, not {ANSWER!r}")
        if keep:
            variant.samples.append(elapsed)
    if keep:
        after = (time.process_time(), cpu_seconds(variant.agent_pid), cpu_seconds(variant.server_pid))
        for name, b, a in zip(("client", "agent", "server"), before, after, strict=True):
            variant.cpu[name] += a - b


async def measure_latency(
    variants: Sequence[Variant], *, turns: int, warmup: int, batch: int = 5, baselines: dict[str, str] | None = None
) -> dict[str, Any]:
    """Measure `turns` turns of each variant after `warmup` turns, in interleaved batches.

    `baselines` maps a variant to the plain variant its ratios are taken against (default: "plain").
    """
    runner = plain_runner()
    clients = {v.label: httpx.AsyncClient(base_url=v.ingress_url, timeout=120) for v in variants if v.ingress_url}
    try:
        for v in variants:
            await _batch(v, clients, runner, warmup, keep=False)
        done = 0
        while done < turns:
            n = min(batch, turns - done)
            for v in variants:
                await _batch(v, clients, runner, n, keep=True)
            done += n
    finally:
        for c in clients.values():
            await c.aclose()
    out: dict[str, Any] = {}
    for v in variants:
        stats = summary(v.samples)
        n = len(v.samples)
        stats["cpu_ms_per_turn"] = {k: 1000 * s / n for k, s in v.cpu.items()}
        stats["cpu_ms_per_turn"]["total"] = sum(stats["cpu_ms_per_turn"].values())
        out[v.label] = stats
    for label, stats in out.items():
        plain = out.get((baselines or {}).get(label, "plain"))
        if plain:
            stats["ratio_to"] = (baselines or {}).get(label, "plain")
            stats["ratio_median"] = stats["median_ms"] / plain["median_ms"]
            stats["ratio_p95"] = stats["p95_ms"] / plain["p95_ms"]
            stats["ratio_cpu"] = stats["cpu_ms_per_turn"]["total"] / plain["cpu_ms_per_turn"]["total"]
    return out
