"""What signed requests cost per turn: the same turns on a lab that signs and on one that does not, side by side.

    .venv/bin/python bench/signing.py             # 200 turns on each, about two minutes
    .venv/bin/python bench/signing.py --turns 400

Two labs run at once, each a private server on free ports with lesson 01's weather agent in a process of its own:
one signs (the server holds the kit's private key, the agent verifies with `identity_keys`), one does not
(`LabConfig(sign=False)`). The turns alternate between them (signed, plain, plain, signed, ...), so a change in the
machine's load falls on both alike. It prints, for each lab, the median and p95 of a turn as the client sees it, and
the CPU the server and the agent process spent per turn (Linux /proc), then the ratios, and the load average before
and after: the figures mean little above a load of 2 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent_lib.clients import Ingress  # noqa: E402
from agent_lib.lab import Lab, LabConfig  # noqa: E402
from bench.common import summary  # noqa: E402
from bench.latency import cpu_seconds  # noqa: E402

WEATHER = "agent_lib.agents.weather:weather_service"
QUESTION = "What is the weather in Paris?"


def _pids(lab: Lab) -> tuple[int, int]:
    assert lab.server is not None and lab.agents is not None
    server, agents = getattr(lab.server, "pid", None), lab.agents.pid
    if server is None or agents is None:
        raise SystemExit(f"{lab} does not run")
    return server, agents


def main() -> int:
    """Run the turns and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=200, help="turns on each lab (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="turns on each lab before measuring (default 10)")
    args = parser.parse_args()
    if args.turns < 10:
        parser.error("--turns: at least 10, or the medians mean nothing")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp, ExitStack() as stack:
        labs = {
            name: stack.enter_context(Lab(LabConfig(data=Path(tmp) / name, agents=(WEATHER,), sign=sign)))
            for name, sign in (("signed", True), ("plain", False))
        }
        assert labs["signed"].public_key and labs["plain"].public_key is None
        ingress = {name: stack.enter_context(Ingress(lab.ingress_url, timeout=120)) for name, lab in labs.items()}
        for name in labs:
            for _ in range(args.warmup):
                ingress[name].call("WeatherAgent", "run", QUESTION, key=uuid.uuid4().hex)
        cpu = {name: [cpu_seconds(p) for p in _pids(lab)] for name, lab in labs.items()}
        seconds: dict[str, list[float]] = {name: [] for name in labs}
        for i in range(args.turns):
            for name in ("signed", "plain") if i % 2 == 0 else ("plain", "signed"):
                started = time.perf_counter()
                answer = ingress[name].call("WeatherAgent", "run", QUESTION, key=uuid.uuid4().hex)
                seconds[name].append(time.perf_counter() - started)
                if "Paris" not in str(answer):
                    raise SystemExit(f"the {name} lab answered {answer!r}")
        spent = {
            name: [
                (cpu_seconds(p) - before) / args.turns * 1000 for p, before in zip(_pids(lab), cpu[name], strict=True)
            ]
            for name, lab in labs.items()
        }
    load_after = os.getloadavg()
    stats = {name: summary(s) for name, s in seconds.items()}
    loads = " / ".join(" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"{args.turns} turns on each lab, alternating; load average (1, 5, 15 min) before / after: {loads}")
    print(f"{'':8}{'median ms':>11}{'p95 ms':>9}{'server CPU ms/turn':>20}{'agent CPU ms/turn':>19}")
    for name in ("plain", "signed"):
        s, (server, agent) = stats[name], spent[name]
        print(f"{name:8}{s['median_ms']:11.2f}{s['p95_ms']:9.2f}{server:20.2f}{agent:19.2f}")
    ratio = stats["signed"]["median_ms"] / stats["plain"]["median_ms"]
    extra = stats["signed"]["median_ms"] - stats["plain"]["median_ms"]
    cpu_extra = sum(spent["signed"]) - sum(spent["plain"])
    print(
        f"signed / plain, median turn: {ratio:.3f} ({extra:+.2f} ms); CPU per turn, server + agent: {cpu_extra:+.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
