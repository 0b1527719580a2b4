"""Figure 4: recovery after a SIGKILL mid-turn.

The bench arms a gate at the agent's second model call (after the first model call and the
weather lookup are journaled), sends a turn, waits until the agent stops there, kills the
process with SIGKILL and starts it again. Recovery time is from the process listening again
to the turn's reply. Ways compared on interleaved kills:

- "as shipped": the lesson retry policy (100 ms, doubling, at most 1 s between attempts), in a
  process that imports ADK's lazy modules on its first turn (as every agent process does today);
- "warm": the same, in a process that imported those modules before it listened;
- "warm + resume on restart": and the restarter asks the server to retry at once
  (PATCH /invocations/{id}/resume fires a backing-off invocation's retry timer);
- "warm + fast retry policy": the retry timer waits at most 250 ms.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from agent_lib.clients import Admin, Ingress
from agent_lib.gates import Gate
from agent_lib.serving import AgentProcess

from .agents import GATE_PREFIX
from .latency import ANSWER, QUESTION

__all__ = ["Mode", "measure_recovery", "recovery_modes"]


@dataclass(frozen=True)
class Mode:
    """One way to recover: which process and service, and whether the restarter resumes at once."""

    label: str
    process: str
    service: str
    resume: bool


def recovery_modes() -> list[Mode]:
    """Return the compared modes; process "cold" serves suffix "", process "warm" suffix "Warm"."""
    return [
        Mode("as shipped", "cold", "BenchRecoveryAgent", False),
        Mode("warm", "warm", "BenchRecoveryAgentWarm", False),
        Mode("warm + resume on restart", "warm", "BenchRecoveryAgentWarm", True),
        Mode("warm + fast retry policy", "warm", "BenchFastRecoveryAgentWarm", False),
    ]


def _one(proc: AgentProcess, ingress: Ingress, admin: Admin, mode: Mode) -> dict[str, Any]:
    gate = Gate(f"{GATE_PREFIX}.model.before").arm(skip=1)
    sent = ingress.send(mode.service, "run", QUESTION, key=f"rec-{uuid.uuid4().hex[:12]}")
    gate.wait_reached(timeout=300, alive=lambda: proc.running)
    killed = time.perf_counter()
    proc.kill()
    proc.start(register=False)
    back = time.perf_counter()
    if mode.resume:
        admin.resume(sent.invocation_id)
    reply = ingress.attach(sent.invocation_id)
    done = time.perf_counter()
    if reply != ANSWER:
        raise RuntimeError(f"{mode.service} answered {reply!r} after the crash, not {ANSWER!r}")
    return {"restart_s": back - killed, "recovery_s": done - back}


def measure_recovery(processes: dict[str, AgentProcess], ingress: Ingress, admin: Admin, kills: int) -> dict[str, Any]:
    """Kill the agent process mid-turn `kills` times per mode (modes interleaved); summarize."""
    modes = recovery_modes()
    runs: dict[str, list[dict[str, Any]]] = {m.label: [] for m in modes}
    for _ in range(kills):
        for mode in modes:
            runs[mode.label].append(_one(processes[mode.process], ingress, admin, mode))
    out: dict[str, Any] = {}
    for label, rows in runs.items():
        rec = [r["recovery_s"] for r in rows]
        out[label] = {
            "kills": len(rows),
            "median_recovery_ms": 1000 * statistics.median(rec),
            "max_recovery_ms": 1000 * max(rec),
            "median_restart_ms": 1000 * statistics.median(r["restart_s"] for r in rows),
            "recovery_ms": [round(1000 * r, 1) for r in rec],
        }
    return out
