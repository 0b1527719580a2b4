"""What missing bytecode costs: an agent process's start and a plain ADK turn, with and without `.pyc`, side by side.

    .venv/bin/python bench/bytecode.py              # about a minute
    .venv/bin/python bench/bytecode.py --turns 300

Each variant runs in a fresh subprocess:

- `written by Python` (the reference): bytecode that Python wrote itself, in a run before (into a fresh
  PYTHONPYCACHEPREFIX), as on a machine where nothing stops it;

and with PYTHONDONTWRITEBYTECODE=1 (as this machine, CI and many Docker images set it), so nothing is kept:

- `bytecode`: the `.pyc` files `make setup` wrote (`scripts/warm_bytecode.py`) are read;
- `no bytecode`: PYTHONPYCACHEPREFIX points at an empty folder, so no `.pyc` is found and every module is
  compiled from source, as after an install without bytecode;
- `no bytecode, ADK's a2a import retried`: the same, with agent_lib's fail-fast for ADK's impossible optional
  import undone (agent_lib/_imports.py), as before issue 21.

It prints, for each: the wall and CPU time to import what an agent process imports (agent_lib.agents,
agent_lib.serving, hypercorn), and the CPU per plain turn (the seed's weather agent, in memory, offline model)
after a warm-up; then each variant's ratio to `bytecode`. Figures mean little above a load of 2: it prints the
load too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_PROBE = r"""
import json, os, sys, time, asyncio
t0, c0 = time.perf_counter(), time.process_time()
import agent_lib.agents, agent_lib.serving, hypercorn.asyncio
start_wall, start_cpu = time.perf_counter() - t0, time.process_time() - c0
if os.environ.get("BENCH_UNDO_HALT"):
    for name in agent_lib._imports.HALTED:
        sys.modules.pop(name, None)
from bench.agents import plain_runner, plain_turn
turns = int(sys.argv[1])

async def main():
    runner = plain_runner()
    for i in range(5):
        await plain_turn(runner, f"warm-{i}", "What is the weather in Paris?")
    c = time.process_time()
    for i in range(turns):
        await plain_turn(runner, f"user-{i}", "What is the weather in New York?")
    return (time.process_time() - c) / turns

per_turn = asyncio.run(main())
print(json.dumps({"start_wall": start_wall, "start_cpu": start_cpu, "turn_cpu": per_turn,
                  "halted": list(agent_lib._imports.HALTED)}))
"""


def bytecode_present() -> bool:
    """Say whether the installed google-adk has compiled bytecode next to its sources."""
    import google.adk

    root = Path(google.adk.__file__).parent
    return any(root.glob("__pycache__/*.pyc"))


def _variant(turns: int, *, pyc: bool, undo_halt: bool, empty: str, write: bool = False) -> dict[str, float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    env.pop("PYTHONPYCACHEPREFIX", None)
    if write:
        env.pop("PYTHONDONTWRITEBYTECODE")
    if not pyc or write:
        env["PYTHONPYCACHEPREFIX"] = empty
    if undo_halt:
        env["BENCH_UNDO_HALT"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(turns)], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the probe failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=150, help="plain turns timed per variant (default 150)")
    args = parser.parse_args()
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"bytecode installed with google-adk: {'yes' if bytecode_present() else 'NO (run make sync)'}")
    with tempfile.TemporaryDirectory() as written, tempfile.TemporaryDirectory() as empty:
        _variant(5, pyc=True, undo_halt=False, empty=written, write=True)
        variants = {
            "written by Python": _variant(args.turns, pyc=True, undo_halt=False, empty=written, write=True),
            "bytecode": _variant(args.turns, pyc=True, undo_halt=False, empty=empty),
            "no bytecode": _variant(args.turns, pyc=False, undo_halt=False, empty=empty),
            "no bytecode, ADK's a2a import retried": _variant(args.turns, pyc=False, undo_halt=True, empty=empty),
        }
    base = variants["written by Python"]
    print(f"{'variant':40} {'start wall':>11} {'start CPU':>10} {'CPU/turn':>9}   ratios to written by Python")
    for name, v in variants.items():
        ratios = "  ".join(f"{v[k] / base[k]:.2f}x" for k in ("start_wall", "start_cpu", "turn_cpu"))
        print(f"{name:40} {v['start_wall']:10.2f}s {v['start_cpu']:9.2f}s {v['turn_cpu'] * 1000:7.1f}ms   {ratios}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
