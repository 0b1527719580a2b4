"""How long `python -m agent_lib up` takes: when everything runs, and to bring back a killed agent process.

    .venv/bin/python bench/restarts.py            # 3 of each, about a minute
    .venv/bin/python bench/restarts.py --runs 5

It starts a private server on free ports (its data in a temp dir), runs `up` once to start the finished agents,
then times `up` again N times with everything running, and N times right after a SIGKILL of the agents' process.
It prints each time, the median, and the load: the figures mean little above a load of 2 on 2 cores.
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

from agent_lib.server import RestateServer, free_port  # noqa: E402


def _up(env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "agent_lib", "up"], cwd=REPO, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"`up` failed:\n{done.stdout}\n{done.stderr}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        server = RestateServer(
            Path(tmp) / "server", ingress_port=free_port(), admin_port=free_port(), node_port=free_port()
        )
        server.start()
        agents_port = free_port()
        env = {
            **os.environ,
            "RESTATE_INGRESS_URL": server.ingress_url,
            "RESTATE_ADMIN_URL": server.admin_url,
            "AGENTS_PORT": str(agents_port),
            "RESTATE_KIT_DATA": str(Path(tmp) / "kit"),
        }
        pid_file = Path(tmp) / "kit" / "pids" / f"agent-{agents_port}.pid"
        try:
            first = _up(env)
            running = [_up(env) for _ in range(args.runs)]
            killed = []
            for _ in range(args.runs):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                time.sleep(0.2)
                killed.append(_up(env))
        finally:
            subprocess.run([sys.executable, "-m", "agent_lib", "down"], cwd=REPO, env=env, capture_output=True)
            server.stop()
    print(f"first `up` (starts the agents): {first:.2f} s")
    for label, times in (("everything runs", running), ("after a SIGKILL of the agents", killed)):
        print(f"`up` when {label}: median {statistics.median(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
