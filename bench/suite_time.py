"""The wall time of `make test`'s main step, one by one against in parallel, side by side in one run.

    .venv/bin/python bench/suite_time.py                 # about 35 minutes on 2 cores: serial, then 4 workers
    .venv/bin/python bench/suite_time.py --workers 3 --workers 4 --skip-serial
    .venv/bin/python bench/suite_time.py --workers 2 tests/test_ledger.py tests/test_models.py   # a quick look

Runs the suite `make test` runs first (`tests` and `notebooks`, with nbmake): once with TEST_WORKERS=0 (one
process, on a lab server started for it, as before the suite ran in parallel), then with each `--workers N`
(pytest-xdist; each worker starts a lab of its own, tests/worker_lab.py). Prints each run's wall time, its
pass/fail counts, the load average before and after it, and each parallel run's ratio to the serial one.
The machine's load is printed because the figures mean little above the core count: run it on a quiet machine.
The Gemini and always-replay modes are separate steps of CI and are not timed here.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _run(workers: int, timeout: int, paths: list[str]) -> tuple[float, str, int]:
    env = {**os.environ}
    if workers == 0:
        subprocess.run([PY, "-m", "agent_lib", "up"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    cmd = [PY, "-m", "pytest", "-n", str(workers), "--dist", "loadfile", "--nbmake", "--nbmake-timeout=900"]
    cmd += ["-q", "-p", "no:cacheprovider", *paths]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        wall = time.monotonic() - started
    finally:
        if workers == 0:
            subprocess.run([PY, "-m", "agent_lib", "down"], cwd=REPO, stdout=subprocess.DEVNULL)
    summary = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return wall, (summary[-1].strip("= ") if summary else done.stdout[-500:]), done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, action="append", help="a parallel run with N workers (default: 4)")
    parser.add_argument("--skip-serial", action="store_true", help="time the parallel runs only")
    parser.add_argument("--timeout", type=int, default=3600, help="give up on a run after this many seconds")
    parser.add_argument("paths", nargs="*", default=["tests", "notebooks"], help="what to run (default: the suite)")
    args = parser.parse_args()
    counts = [0] if not args.skip_serial else []
    counts += args.workers or [4]
    print(f"cores: {os.cpu_count()}; load before: {_load()}", flush=True)
    walls: dict[int, float] = {}
    failed = False
    for n in counts:
        label = "one by one" if n == 0 else f"{n} workers"
        wall, summary, code = _run(n, args.timeout, args.paths)
        walls[n] = wall
        failed |= code != 0
        ratio = f"; {wall / walls[0]:.2f}x the serial run" if n and 0 in walls else ""
        print(f"{label:>12}: {wall:7.0f} s  ({summary}; exit {code}){ratio}; load after: {_load()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
