"""Figure 3: turn latency and stored session size as one conversation grows.

Reuses lesson 03's agents and helpers (agent_lib.agents.chat, agent_lib.sessions):
"ChatAgent" keeps every event, "CompactChatAgent" summarizes older turns and stores only
what the model still reads. Each turn's latency is noisy on a shared machine, so each
checkpoint also gets the median of the turns around it (t-2 .. t+2).
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

from agent_lib.clients import Admin, Ingress

__all__ = ["AGENTS", "measure_growth_figure"]

AGENTS = {"without compaction": "ChatAgent", "with compaction": "CompactChatAgent"}


def measure_growth_figure(ingress: Ingress, admin: Admin, checkpoints: list[int]) -> dict[str, Any]:
    """Run one conversation per agent up to the last checkpoint; report latency and size at each."""
    from agent_lib.sessions import conversation, measure_growth

    turns = max(checkpoints)
    out: dict[str, Any] = {}
    for label, service in AGENTS.items():
        frame = measure_growth(ingress, admin, service, f"growth-{uuid.uuid4().hex[:10]}", conversation(turns))
        seconds = frame["seconds"].tolist()
        sizes = frame["stored_bytes"].tolist()
        rows = []
        for t in checkpoints:
            window = seconds[max(0, t - 3) : min(turns, t + 2)]
            rows.append(
                {
                    "turn": t,
                    "latency_ms": 1000 * seconds[t - 1],
                    "window_median_ms": 1000 * statistics.median(window),
                    "stored_bytes": int(sizes[t - 1]),
                }
            )
        out[label] = {
            "service": service,
            "checkpoints": rows,
            "all_latency_ms": [round(1000 * s, 2) for s in seconds],
            "all_stored_bytes": [int(b) for b in sizes],
        }
        first, last_100 = rows[0], next((r for r in rows if r["turn"] == 100), rows[-1])
        out[label]["ratio_turn_vs_first"] = {
            "turn": last_100["turn"],
            "ratio": last_100["window_median_ms"] / first["window_median_ms"],
        }
    return out
