"""What an agent process costs to start: by exec (a fresh Python) against a fork of the zygote (agent_lib/_zygote.py).

    .venv/bin/python bench/spawn.py              # 8 starts each way, about a minute
    .venv/bin/python bench/spawn.py --starts 20

It starts the weather agent as an `AgentProcess` (not registered: no server needed) N times each way, alternating
the two, and kills it with SIGKILL once it listens, as a lesson or a test does. For each it records the time from
`start()` to listening and the CPU the process spent to get there; the zygote's own CPU (its imports, paid once per
process that asks) is shown apart, and added in, spread over the N starts. Figures are medians; compare the ratio,
taken in one run, not the absolute times (a shared machine: the load is printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_lib import _zygote  # noqa: E402
from agent_lib.agent_process import AgentProcess  # noqa: E402
from bench.latency import cpu_seconds  # noqa: E402
from bench.suite_time import _load  # noqa: E402


def _one(mode: str) -> tuple[float, float]:
    """Start the weather agent one way, wait until it listens, kill it; return (seconds, CPU seconds)."""
    os.environ[_zygote.SPAWN_ENV] = mode
    proc = AgentProcess("agent_lib.agents.weather:weather_service", name=f"bench-spawn-{mode}")
    started = time.monotonic()
    proc.start(register=False)
    took = time.monotonic() - started
    assert proc.pid is not None
    cpu = cpu_seconds(proc.pid)
    proc.kill()
    return took, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=8, help="starts each way (default 8)")
    args = parser.parse_args()
    if sys.platform != "linux":
        print("the zygote forks on Linux only; this bench reads /proc", file=sys.stderr)
        return 2
    print(f"cores: {os.cpu_count()}; load before: {_load()}", flush=True)
    runs: dict[str, list[tuple[float, float]]] = {"exec": [], "zygote": []}
    zygote_started = time.monotonic()
    runs["zygote"].append(_one("zygote"))  # the first fork starts the zygote: counted, like every other start
    first_wall = time.monotonic() - zygote_started
    zygote_cpu = cpu_seconds(_zygote._the_zygote().proc.pid)
    for _ in range(args.starts - 1):
        runs["exec"].append(_one("exec"))
        runs["zygote"].append(_one("zygote"))
    runs["exec"].append(_one("exec"))
    print(f"\n{'':8}{'to listen (median)':>20}{'CPU (median)':>14}{'CPU incl. zygote':>18}")
    figures = {}
    for mode, samples in runs.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        total = cpu + (zygote_cpu / len(samples) if mode == "zygote" else 0.0)
        figures[mode] = (wall, total)
        print(f"{mode:8}{wall:19.2f}s{cpu:13.2f}s{total:17.2f}s")
    print(
        f"\nthe zygote's own start: {zygote_cpu:.2f} CPU s, {first_wall:.2f} s to the first process listening\n"
        f"exec / zygote: {figures['exec'][0] / figures['zygote'][0]:.1f}x the time to listen, "
        f"{figures['exec'][1] / figures['zygote'][1]:.1f}x the CPU per start ({args.starts} starts each)"
    )
    print(f"load after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
