"""Profile one durable agent process with py-spy while it answers turns: where does the time go?

    .venv/bin/pip install py-spy        # for profiling only; not in requirements.txt
    .venv/bin/python bench/profile.py --turns 150 [--tuning ledger-cache,uvloop,h2,quiet,warm]

Writes bench/results/profile-<name>.txt (py-spy's collapsed stacks; the committed ones are gzipped,
and `bench/profile.py --summarize FILE[.gz]` summarizes one again) and prints the share of
samples in the frames that matter (the ledger, socket writes, the Restate SDK, pydantic...),
plus the CPU each process spent per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from agent_lib.serving import AgentProcess  # noqa: E402
from bench.common import private_server  # noqa: E402
from bench.latency import Variant, cpu_seconds, measure_latency  # noqa: E402

FRAMES = {
    "ledger (_count_call: open SQLite, insert, close)": r"_count_call|_record_call",
    "socket writes from hypercorn's HTTP/2 send task": r"H2Protocol\._flush|H2Protocol\.send_task",
    "RestatePlugin 'call LLM' runs (model call + journaling)": r"_generate_content_async",
    "RestateSessionService 'store session'": r"flush_session_state",
    "ADK lazy import retried each turn (a2a, not installed)": r"remote_a2a_agent",
}
"""Inclusive shares: samples with such a frame anywhere on the stack."""

PACKAGES = {
    "socket send (syscall)": r"selector_events\.py|StreamWriter\.write",
    "event loop / epoll": r"selectors\.py|asyncio/",
    "SQLite ledger": r"agent_lib/ledger\.py|sqlite3",
    "Restate SDK (python + rust VM)": r"[(/]restate/",
    "hypercorn + h2": r"[(/](hypercorn|h2|hpack|hyperframe|priority)/",
    "pydantic": r"[(/]pydantic",
    "ADK + genai": r"[(/](google|adk|genai)/",
    "agent_lib (offline model, agents)": r"agent_lib/",
    "imports": r"importlib|<frozen",
}
"""Self time: the leaf frame of each sample, by where its code lives (first match wins)."""


def summarize(path: Path) -> str:
    """Return the share of samples in each of FRAMES, and the top leaf frames."""
    rows = []
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            rows.append((stack.split(";"), int(count)))
    total = sum(n for _, n in rows) or 1
    lines = [f"{total} samples"]
    lines.append("inclusive (frame anywhere on the stack):")
    for label, pattern in FRAMES.items():
        rx = re.compile(pattern)
        share = sum(n for frames, n in rows if any(rx.search(f) for f in frames))
        lines.append(f"{100 * share / total:5.1f}%  {label}")
    lines.append("self time by package (leaf frame):")
    by_package: Counter[str] = Counter()
    for frames, n in rows:
        label = next((k for k, rx in PACKAGES.items() if re.search(rx, frames[-1])), "other")
        by_package[label] += n
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in by_package.most_common()]
    leaves: Counter[str] = Counter()
    for frames, n in rows:
        leaves[re.sub(r" \(/.*?/site-packages/", " (", frames[-1])] += n
    lines.append("top leaf frames:")
    lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(12)]
    return "\n".join(lines)


def _cli_summary() -> int:
    print(summarize(Path(sys.argv[2])))
    return 0


def main() -> int:
    """Serve the weather agent, record it with py-spy during the turns, and summarize."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=150)
    parser.add_argument("--tuning", default="", help="BENCH_TUNING for the agent process (see bench/tuned.py)")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    name = args.name or ("shipped" if not args.tuning else args.tuning.replace(",", "+"))
    out = REPO_ROOT / "bench" / "results" / f"profile-{name}.txt"
    with private_server() as bench:
        proc = AgentProcess(
            "bench.tuned:weather_service", admin=bench.admin, env={"BENCH_SERVICE": "W", "BENCH_TUNING": args.tuning}
        ).start(timeout=180)
        try:
            variant = Variant("durable", "W", bench.server.ingress_url, proc.pid, bench.server.pid)
            asyncio.run(measure_latency([variant], turns=10, warmup=10))
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(proc.pid), "-o", str(out), "-f", "raw", "-r", "200", "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
            measured = Variant("durable", "W", bench.server.ingress_url, proc.pid, bench.server.pid)
            stats = asyncio.run(measure_latency([measured], turns=args.turns, warmup=0))["durable"]
            recorder.send_signal(2)
            recorder.wait(60)
            cpu = stats["cpu_ms_per_turn"]
            print(f"agent {cpu_seconds(proc.pid):.1f} s CPU so far; per turn: {cpu}")
        finally:
            proc.stop()
    text = summarize(out)
    out.with_suffix(".summary.txt").write_text(text + "\n")
    print(text)
    print(f"collapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(_cli_summary() if sys.argv[1:2] == ["--summarize"] else main())
