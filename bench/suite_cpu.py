"""Where the suite's CPU goes: run a command and add up the CPU of every process it starts, by kind.

    .venv/bin/python bench/suite_cpu.py                        # make test's first step (about 12 min on 2 cores)
    .venv/bin/python bench/suite_cpu.py -- make test-modes
    .venv/bin/python bench/suite_cpu.py -- .venv/bin/python -m pytest -n 4 tests/test_clients.py

On 2 cores the suite is CPU-bound: its wall time is about its CPU time over 2, so only less CPU makes it faster.
This tells which processes spend it: the Restate servers, the agent processes (by the agents they serve), the
notebook kernels, the pytest workers. It reads /proc every 0.25 s and keeps, for each process whose command line
names this checkout (and for the command itself), the last CPU time it saw; a process that lives less than
0.25 s, or the CPU a process spends after the last look, is not counted, so the totals are a little low. Linux
only. It prints the load too: the figures are CPU seconds, so they move less with the neighbours than wall times
do, but a loaded machine still inflates them (cache misses, context switches).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.suite_time import _load  # noqa: E402

MAIN_STEP = [
    str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-n", "4", "--dist", "loadfile", "-m", "not full",
    "--nbmake", "--nbmake-timeout=900", "-q", "-p", "no:cacheprovider", "tests", "notebooks",
]  # fmt: skip


def kind(cmdline: str) -> str:
    """Name the kind of a process from its command line."""
    if "restate-server" in cmdline:
        return "restate-server"
    if "ipykernel" in cmdline:
        return "notebook kernel"
    if "agent_lib serve" in cmdline:
        agents = sorted(set(re.findall(r"agents\.(\w+):", cmdline))) or ["other services"]
        return "agent process: " + (agents[0] if len(agents) == 1 else f"{len(agents)} agent modules (a lab)")
    if "_zygote.py" in cmdline:
        return "agent process forked by a zygote (or the zygote)"
    if "_watchdog" in cmdline:
        return "watchdog"
    if "pytest" in cmdline or "exec(eval(sys.stdin.readline()))" in cmdline:
        return "pytest (controller and workers)"
    if "mypy" in cmdline:
        return "mypy"
    words = cmdline.split()
    return " ".join([Path(words[0]).name, *words[1:3]]) if words else "?"


def started_by(pid: str) -> str:
    """The test file whose test was running when `pid` was started (its PYTEST_CURRENT_TEST at exec), or "-"."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return "-"
    for entry in environ:
        if entry.startswith(b"PYTEST_CURRENT_TEST="):
            return entry.split(b"=", 1)[1].decode(errors="replace").split("::", 1)[0]
    return "-"


def sample(command: list[str], every: float = 0.25) -> tuple[dict[int, tuple[str, float]], dict[int, str], float, int]:
    """Run `command` in the repo; return {pid: (kind, CPU seconds)} of the processes it started, {pid: the test file
    that started it}, its wall time, its exit code."""
    hz = os.sysconf("SC_CLK_TCK")
    seen: dict[int, tuple[str, float]] = {}
    origin: dict[int, str] = {}
    mark = str(REPO)
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO)
    while proc.poll() is None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if mark not in cmdline and int(entry) != proc.pid:
                    continue
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry) not in origin:
                origin[int(entry)] = started_by(entry)
            seen[int(entry)] = (kind(cmdline), (int(fields[11]) + int(fields[12])) / hz)
        time.sleep(every)
    return seen, origin, time.monotonic() - started, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="*", help="the command to run (default: make test's first step)")
    parser.add_argument(
        "--by-test",
        type=int,
        default=0,
        metavar="N",
        help="also list the N test files whose tests started the most CPU (servers, agents, kernels)",
    )
    args = parser.parse_args()
    if sys.platform != "linux":
        print("bench/suite_cpu.py reads /proc: Linux only", file=sys.stderr)
        return 2
    print(f"cores: {os.cpu_count()}; load before: {_load()}", flush=True)
    seen, origin, wall, code = sample(args.command or MAIN_STEP)
    cpu: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()
    for name, seconds in seen.values():
        cpu[name] += seconds
        count[name] += 1
    total = sum(cpu.values())
    print(f"\n{'CPU s':>8}  {'share':>5}  {'procs':>5}  {'CPU s each':>10}  kind")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"{seconds:8.1f}  {seconds / (total or 1):5.0%}  {count[name]:5d}  {seconds / count[name]:10.2f}  {name}")
    print(f"{total:8.1f}  total CPU; wall {wall:.0f} s, so {total / wall:.2f} cores busy on average (exit {code})")
    if args.by_test:
        started: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        for pid, (name, seconds) in seen.items():
            if origin.get(pid, "-") != "-" and name != "pytest (controller and workers)":
                started[origin[pid]][0] += seconds
                started[origin[pid]][1] += 1
        print(f"\n{'CPU s':>8}  {'procs':>5}  the processes a test file's tests started")
        for path, (seconds, procs) in sorted(started.items(), key=lambda item: -item[1][0])[: args.by_test]:
            print(f"{seconds:8.1f}  {procs:5.0f}  {path}")
    print(f"load after: {_load()}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
