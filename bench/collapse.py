"""Where does durable throughput go at 1000 sessions? The same load, one change at a time.

    .venv/bin/python bench/collapse.py                        # every variant at 100 and 1000 sessions
    .venv/bin/python bench/collapse.py --spy                  # + py-spy of the agent and this client
    .venv/bin/python bench/collapse.py --variants 1,2 --levels 1000 --turns 1000

Variants, each one change on top of the one before:

1. as filed: one shared httpx client for every user, one session per user, one agent process;
2. a client per user (one connection each, as real users have);
3. a new session per turn, so every level does the same work per turn;
4. the agent process's garbage collector tuned (`agent_lib.serving.tune_gc`; 1-3 run with AGENTS_GC=default);
5. two worker processes (`AgentProcess(..., workers=2)`).

For each level it prints turns/s, the CPU each process spent per turn, how long each process
waited for a CPU while runnable (schedstat: on a busy machine, the neighbours' share), the most
connections the server held open to the agent (per process, from `ss`), the server's own pool
metrics (connections opened, time spent waiting for a free HTTP/2 stream), and the agent's memory.
With --spy it records the agent process (or first worker) and this process with py-spy, and
prints where their samples went (bench/profile.py's summary).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from agent_lib.serving import GC_ENV, AgentProcess  # noqa: E402
from bench.common import private_server  # noqa: E402
from bench.profile import summarize  # noqa: E402
from bench.throughput import Target, _level  # noqa: E402

WEATHER = "agent_lib.agents.weather:weather_service"
VARIANTS = {
    1: ("as filed: shared client, a session per user, 1 process", {"pooled_client": True, "kept_sessions": True}, 1),
    2: ("+ a client per user", {"kept_sessions": True}, 1),
    3: ("+ a new session per turn", {}, 1),
    4: ("+ the agent's garbage collector tuned (serving.tune_gc)", {}, 1),
    5: ("+ 2 workers", {}, 2),
}
GC_DEFAULT = {1, 2, 3}
"""Variants whose agent runs with Python's default garbage collector settings (AGENTS_GC=default)."""


def schedstat(pids: list[int]) -> tuple[float, float]:
    """Return (CPU seconds, seconds runnable but waiting for a CPU) summed over the processes' threads."""
    cpu = wait = 0
    for pid in pids:
        for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                a, b, _ = path.read_text().split()
            except (OSError, ValueError):
                continue
            cpu, wait = cpu + int(a), wait + int(b)
    return cpu / 1e9, wait / 1e9


def rss_mib(pids: list[int]) -> float:
    """Return the resident memory of the processes, in MiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def connections(port: int) -> dict[int, int]:
    """Return the established connections to `port`, by the pid that holds them."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=False
    ).stdout
    return {int(pid): n for pid, n in collections.Counter(re.findall(r"pid=(\d+)", out)).items()}


def pool_metrics(node_port: int) -> dict[str, float]:
    """Return the server's HTTP/2 pool counters (from its Prometheus endpoint on the node port)."""
    text = httpx.get(f"http://127.0.0.1:{node_port}/metrics", timeout=10).text
    wanted = (
        "restate_connection_pool_connection_opened_total",
        "restate_connection_pool_acquire_stream_duration_seconds_sum",
        "restate_connection_pool_stream_opened_total",
    )
    out = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def measure(agent: AgentProcess, bench: Any, level: int, turns: int, options: dict[str, Any], spy: str | None) -> str:
    """Run one level against one agent and return a report line (and py-spy summaries)."""
    pids = {"client": [os.getpid()], "agent": agent.worker_pids + ([agent.pid] if agent.workers > 1 else [])}
    pids["server"] = [bench.server.pid]
    target = Target(agent.env["WEATHER_SERVICE_NAME"], bench.server.ingress_url, lambda: pids["agent"], None)
    for key, value in options.items():
        setattr(target, key, value)
    seen: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid, n in connections(agent.port).items():
                seen[pid] = max(seen.get(pid, 0), n)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    recorders = []
    if spy:
        for who, pid in (("agent", agent.worker_pids[0]), ("client", os.getpid())):
            out = REPO_ROOT / "bench" / "results" / f"collapse-{who}-{level}.txt"
            cmd = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "100", "--nonblocking"]
            recorders.append((who, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(1.0)
    before = {k: schedstat(v) for k, v in pids.items()}
    metrics = pool_metrics(bench.server.node_port)
    result = asyncio.run(_level(level, max(turns, level), 60.0, target))
    after = {k: schedstat(v) for k, v in pids.items()}
    metrics = {k: v - metrics[k] for k, v in pool_metrics(bench.server.node_port).items()}
    for _, _, recorder in recorders:
        recorder.send_signal(2)
        recorder.wait(60)
    stop.set()
    watcher.join()
    n, secs = max(result["turns"], 1), result["seconds"]
    used = {k: 1000 * (after[k][0] - before[k][0]) / n for k in pids}
    waited = {k: 100 * (after[k][1] - before[k][1]) / secs for k in pids}
    cpu = " ".join(f"{k} {used[k]:.1f} ms/turn (waited {waited[k]:.0f}%)" for k in pids)
    median = result["latency"]["median_ms"] if result["latency"] else float("nan")
    lines = [
        f"  {level:5d} sessions: {result['turns_per_s']:6.1f} turns/s ({result['turns']} turns, "
        f"{result['errors']} errors, median {median:.0f} ms); CPU {cpu}; "
        f"connections to the agent {dict(seen) or '?'}; server pool: "
        f"{metrics['restate_connection_pool_connection_opened_total']:.0f} connections opened, "
        f"{metrics['restate_connection_pool_acquire_stream_duration_seconds_sum']:.2f} s waiting for a stream; "
        f"agent RSS {rss_mib(pids['agent']):.0f} MiB; load {os.getloadavg()[0]:.1f}"
    ]
    for who, out, _ in recorders:
        lines.append(f"    py-spy, {who} at {level} sessions ({out.name}):")
        lines += ["      " + line for line in summarize(out).splitlines()[-13:]]
    return "\n".join(lines)


def main() -> int:
    """Run the chosen variants at the chosen levels on a private server and print what each change did."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="1,2,3,4,5", help=f"comma list of {sorted(VARIANTS)}")
    parser.add_argument("--levels", default="100,1000")
    parser.add_argument("--turns", type=int, default=300, help="turns per level (at least one per session)")
    parser.add_argument("--spy", action="store_true", help="record the agent and this client with py-spy")
    args = parser.parse_args()
    spy = None
    if args.spy:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            parser.error("py-spy is missing: .venv/bin/pip install py-spy (profiling only, not in requirements.txt)")
    levels = [int(x) for x in args.levels.split(",")]
    print(f"load average at the start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with private_server() as bench:
        agents: dict[tuple[int, str], AgentProcess] = {}
        try:
            for number in (int(v) for v in args.variants.split(",")):
                label, options, workers = VARIANTS[number]
                gc = "default" if number in GC_DEFAULT else "tuned"
                if (workers, gc) not in agents:
                    service = f"CollapseWeather{workers}{gc.title()}"
                    env = {"WEATHER_SERVICE_NAME": service, GC_ENV: gc}
                    agent = AgentProcess(WEATHER, admin=bench.admin, env=env, workers=workers).start(180)
                    agents[workers, gc] = agent
                    agent.wait_for_workers()
                    asyncio.run(_level(10, 30, 30.0, Target(service, bench.server.ingress_url)))
                print(f"{number}. {label}", flush=True)
                for level in levels:
                    print(measure(agents[workers, gc], bench, level, args.turns, options, spy), flush=True)
        finally:
            for agent in agents.values():
                agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
