"""Time the suite against its budget: `make test` (12 min) and `.ci/run` (20 min), from a fresh clone, with the load.

    .venv/bin/python bench/suite_time.py --ci            # CI's run from a fresh clone of HEAD: about 15 minutes
    .venv/bin/python bench/suite_time.py                 # the main step, one by one against 4 workers (35 min)
    .venv/bin/python bench/suite_time.py --workers 3 --workers 4 --skip-serial
    .venv/bin/python bench/suite_time.py --workers 2 tests/test_ledger.py tests/test_models.py   # a quick look

`--ci` clones HEAD into a temporary directory and runs `CI=1 ./.ci/run` there, as CI does: set-up from nothing,
then `make test` (the suite, then the lessons in the combined Gemini + always-replay mode). It prints each step's
wall time beside its budget, the load average before and after, and exits 1 if a step failed or ran over budget.

Without `--ci`, it runs the suite `make test` runs first (`tests` and `notebooks`, with nbmake): once with
TEST_WORKERS=0 (one process, on a lab server started for it), then with each `--workers N` (pytest-xdist; each
worker starts a lab of its own, tests/worker_lab.py), and prints each run's wall time, its pass/fail counts, the
load before and after it, and each parallel run's ratio to the serial one.
The machine's load is printed because the figures mean little above the core count: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
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


BUDGETS = {"make test": 12 * 60, ".ci/run": 20 * 60}
"""The suite's budget in seconds on a quiet 2-core machine (README, "The suite: tiers and budget")."""


def ci_run(timeout: int) -> int:
    """Run `CI=1 ./.ci/run` in a fresh clone of HEAD; print each step against its budget; return 0 if all held."""
    where = Path(tempfile.mkdtemp(prefix="suite-time-"))
    clone = where / "kit"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True)
    print(f"cores: {os.cpu_count()}; load before: {_load()}; commit {head.stdout.strip()} in {clone}", flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "RESTATE_KIT_DATA")}
    env["CI"] = "1"
    started = time.monotonic()
    log = where / "ci.log"
    try:
        with log.open("w") as out:
            done = subprocess.run(
                ["./.ci/run"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        code = done.returncode
    except subprocess.TimeoutExpired:
        code = 124
    walls = {".ci/run": time.monotonic() - started}
    text = log.read_text(errors="replace")
    for step, seconds in re.findall(r"^== (.+?) took (\d+) s", text, flags=re.M):
        walls[step] = float(seconds)
    for line in re.findall(r"^=+ .*(?:passed|failed).* =+$", text, flags=re.M):
        print(f"  {line.strip('= ')}")
    over = False
    for step, seconds in walls.items():
        budget = BUDGETS.get(step)
        verdict = "" if budget is None else f" (budget {budget // 60} min: {'within' if seconds <= budget else 'OVER'})"
        over |= budget is not None and seconds > budget
        print(f"{step:>12}: {seconds / 60:5.1f} min{verdict}", flush=True)
    print(f"exit {code}; load after: {_load()}; log: {log}")
    if code == 0:  # .ci/run stopped what it started; keep a failed run's clone for its logs
        shutil.rmtree(clone, ignore_errors=True)
    return 1 if code != 0 or over else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, action="append", help="a parallel run with N workers (default: 4)")
    parser.add_argument("--skip-serial", action="store_true", help="time the parallel runs only")
    parser.add_argument("--timeout", type=int, default=3600, help="give up on a run after this many seconds")
    parser.add_argument("paths", nargs="*", default=["tests", "notebooks"], help="what to run (default: the suite)")
    parser.add_argument("--ci", action="store_true", help="time CI's run (`make test` within it) from a fresh clone")
    args = parser.parse_args()
    if args.ci:
        return ci_run(args.timeout)
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
