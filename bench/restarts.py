"""How long `python -m agent_lib up` takes: when everything runs, and to bring back a killed agent process.

    .venv/bin/python bench/restarts.py            # 3 of each, about a minute
    .venv/bin/python bench/restarts.py --runs 5

It starts a private server on free ports (a `Lab` without agents, its data in a temp dir), runs `up` once to start
the finished agents, then times `up` again N times with everything running, and N times right after a SIGKILL of
the agents' process; after each of those it times a first turn (the agents answer). It prints each time, the
median, where the time goes (the CPU the new agent process spent before it listened: importing ADK and the
agents), and the load: the figures mean little above a load of 2 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_lib._process import pid_path, port_open  # noqa: E402
from agent_lib.clients import Ingress  # noqa: E402
from agent_lib.lab import Lab, LabConfig  # noqa: E402
from bench.latency import cpu_seconds  # noqa: E402


def _up(env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "agent_lib", "up"], cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"`up` failed:\n{done.stdout}\n{done.stderr}")
    return took


def _restart(env: dict[str, str], port: int, ingress: Ingress, i: int) -> tuple[float, float, float, float]:
    """SIGKILL the agents, run `up`; return up's time, the time to listen, to a first answer, and the CPU to listen."""
    os.kill(int(pid_path("agent", port).read_text()), signal.SIGKILL)
    while port_open(port):
        time.sleep(0.01)
    started = time.monotonic()
    up = subprocess.Popen([sys.executable, "-m", "agent_lib", "up"], cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    while not port_open(port):
        time.sleep(0.005)
    listening = time.monotonic() - started
    cpu = cpu_seconds(int(pid_path("agent", port).read_text()))
    if up.wait() != 0:
        raise SystemExit("`up` failed after a kill")
    took = time.monotonic() - started
    ingress.call("WeatherAgent", "run", "What is the weather in Paris?", key=f"restart-{os.getpid()}-{i}")
    return took, listening, time.monotonic() - started, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp, Lab(LabConfig(data=Path(tmp) / "kit", agents=())) as lab:
        env = lab.environ()
        port = lab.agents_port
        ingress = Ingress(lab.ingress_url, timeout=120)
        try:
            first = _up(env)
            running = [_up(env) for _ in range(args.runs)]
            restarts = [_restart(env, port, ingress, i) for i in range(args.runs)]
        finally:
            subprocess.run([sys.executable, "-m", "agent_lib", "down"], cwd=REPO, env=env, capture_output=True)
    print(f"first `up` (starts the agents): {first:.2f} s")
    rows = [
        ("`up` when everything runs", running),
        ("`up` after a SIGKILL of the agents", [r[0] for r in restarts]),
        ("  of which: until the new agent process listens", [r[1] for r in restarts]),
        ("  its CPU until then (imports: ADK, the agents)", [r[3] for r in restarts]),
        ("kill -> `up` -> the agents' first answer", [r[2] for r in restarts]),
    ]
    for label, times in rows:
        print(f"{label}: median {statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
