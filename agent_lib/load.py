"""Generate load: many sessions sending turns to an agent at once, each turn timed (lesson 08 and bench/).

load = await drive_load(ingress_url, "WeatherAgent", "What is the weather in Paris?", sessions=50, turns=2)
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Load", "drive_load"]


@dataclass
class Load:
    """What `drive_load` measured: the turns answered, the failures, the wall time, and each turn's invocation."""

    sessions: int
    turns: int
    failed: int
    seconds: float
    answers: dict[str, list[Any]]
    """Each session's answers, in order."""
    invocation_ids: list[str]

    @property
    def turns_per_s(self) -> float:
        """Answered turns per second of wall time."""
        return self.turns / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"Load({self.sessions} sessions: {self.turns} turns answered, {self.failed} failed, "
            f"in {self.seconds:.1f}s = {self.turns_per_s:.1f} turns/s)"
        )


async def drive_load(
    ingress_url: str, service: str, message: str, *, sessions: int, turns: int, handler: str = "run"
) -> Load:
    """Send `turns` turns to each of `sessions` sessions of a virtual object at once, and time them (lesson 08).

    Each session is one user: its own connection to the ingress, one turn after another. Each turn is a call
    with an idempotency key, so the ingress answers it once even if it is sent again.
    """
    import ssl

    import httpx

    tls = ssl.create_default_context()  # one for all the sessions' clients: each costs milliseconds to build
    run = os.urandom(4).hex()
    answers: dict[str, list[Any]] = {}
    ids: list[str] = []
    failed = 0

    async def session(i: int) -> None:
        nonlocal failed
        key = f"load-{run}-{i}"
        answers[key] = []
        async with httpx.AsyncClient(base_url=ingress_url, timeout=600, verify=tls) as http:
            for turn in range(turns):
                try:
                    response = await http.post(
                        f"/{service}/{key}/{handler}", json=message, headers={"idempotency-key": f"{key}-{turn}"}
                    )
                    response.raise_for_status()
                except httpx.HTTPError:
                    failed += 1
                    continue
                answers[key].append(response.json())
                ids.append(response.headers.get("x-restate-id", ""))

    start = time.perf_counter()
    await asyncio.gather(*(session(i) for i in range(sessions)))
    seconds = time.perf_counter() - start
    return Load(sessions, sum(len(a) for a in answers.values()), failed, seconds, answers, ids)
