"""Does a server setting change the durable turn? Each setting gets its own private server.

    .venv/bin/python bench/server_settings.py --turns 40

The same agent (the weather agent as shipped, under a bench name) runs against servers that
differ in one setting; turns are interleaved, and the server's CPU per turn is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from agent_lib.serving import AgentProcess  # noqa: E402
from bench.common import private_server  # noqa: E402
from bench.latency import Variant, measure_latency  # noqa: E402

SETTINGS = {
    "as in agent_lib.server (4 partitions)": {},
    "1 partition": {"RESTATE_DEFAULT_NUM_PARTITIONS": "1"},
    "no WAL fsync (NOT durable on power loss)": {"RESTATE_BIFROST__LOCAL__ROCKSDB_DISABLE_WAL_FSYNC": "true"},
    "rocksdb statistics off": {"RESTATE_ROCKSDB_DISABLE_STATISTICS": "true"},
}


def main() -> int:
    """Start one server per setting, interleave turns across them, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        variants = [Variant("plain")]
        for label, env in SETTINGS.items():
            bench = stack.enter_context(private_server(env))
            proc = AgentProcess(
                "bench.tuned:weather_service", admin=bench.admin, env={"BENCH_SERVICE": "W", "BENCH_TUNING": ""}
            ).start(timeout=180)
            stack.callback(proc.stop)
            variants.append(Variant(label, "W", bench.server.ingress_url, proc.pid, bench.server.pid))
        results = asyncio.run(measure_latency(variants, turns=args.turns, warmup=10))
    print("| server setting | median ms | p95 ms | ratio | server CPU ms/turn | agent CPU ms/turn |")
    print("|---|---|---|---|---|---|")
    for label, s in results.items():
        c = s["cpu_ms_per_turn"]
        print(
            f"| {label} | {s['median_ms']:.1f} | {s['p95_ms']:.1f} | {s.get('ratio_median', 1):.2f}× | "
            f"{c['server']:.1f} | {c['agent']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
