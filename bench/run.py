"""Run the benchmark: `make bench`, or `python bench/run.py [--quick] [--notebooks] [--figures ...]`.

Starts a private Restate server on free ports in a temp dir (never 8080/9070), serves the
agents with AgentProcess, measures with the offline model, and writes
bench/results/latest.json, the table in docs/PERFORMANCE.md and plots in docs/img/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from agent_lib.agents import FINISHED  # noqa: E402
from agent_lib.server import free_port  # noqa: E402
from agent_lib.serving import AgentProcess  # noqa: E402
from bench.common import machine, private_server  # noqa: E402

FIGURES = ("latency", "throughput", "growth", "recovery", "notebooks")
ALL_TUNINGS = "ledger-cache,uvloop,h2,quiet,warm"

# label -> (agent target, service, BENCH_TUNING); None tuning means the agent module as shipped.
DURABLE = {
    "durable (as shipped)": ("agent_lib.agents.weather:weather_service", "WeatherAgent", None),
    "durable + ledger kept open": ("bench.tuned:weather_service", "WeatherAgentLedger", "ledger-cache"),
    "durable + ledger kept open + uvloop": ("bench.tuned:weather_service", "WeatherAgentUvloop", "ledger-cache,uvloop"),
    "durable, all tunings": ("bench.tuned:weather_service", "WeatherAgentTuned", ALL_TUNINGS),
    "durable, no ledger at all": ("bench.tuned:weather_service", "WeatherAgentNoLedger", "no-ledger"),
}
if importlib.util.find_spec("uvloop") is None:
    # uvloop is not pinned in requirements.txt (it measured no gain worth a dependency): skip its variants.
    ALL_TUNINGS = ALL_TUNINGS.replace("uvloop,", "")
    DURABLE = {label: spec for label, spec in DURABLE.items() if "uvloop" not in label}
    DURABLE["durable, all tunings"] = ("bench.tuned:weather_service", "WeatherAgentTuned", ALL_TUNINGS)
PLAIN = "plain ADK (as shipped)"
PLAIN_TUNED = "plain ADK + ledger kept open"

SIZES = {
    "full": {
        "latency_turns": 100,
        "latency_warmup": 10,
        "levels": [10, 100, 1000],
        "max_turns": 300,
        "max_seconds": 20.0,
        "checkpoints": [1, 10, 50, 100, 200],
        "kills": 10,
    },
    "quick": {
        "latency_turns": 4,
        "latency_warmup": 1,
        "levels": [2, 4],
        "max_turns": 6,
        "max_seconds": 3.0,
        "checkpoints": [1, 2, 3],
        "kills": 1,
    },
}


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _durable_process(bench: Any, label: str, extra: list[str] | None = None) -> AgentProcess:
    target, service, tuning = DURABLE[label]
    env = {"BENCH_SERVICE": service, "BENCH_TUNING": tuning or ""}
    return AgentProcess([target, *(extra or [])], admin=bench.admin, env=env, name=service)


def run(figures: list[str], size: str) -> dict[str, Any]:
    """Run the chosen figures at the chosen size on a private server; return the results."""
    from bench.growth import measure_growth_figure
    from bench.latency import Variant, measure_latency
    from bench.recovery import measure_recovery
    from bench.throughput import measure_throughput
    from bench.tuned import chat_services, ledger_kept_open

    sizes = SIZES[size]
    results: dict[str, Any] = {"machine": machine(), "size": size, "sizes": sizes, "started": time.time()}
    with private_server() as bench, contextlib.ExitStack() as stack:
        results["server"] = {"settings": "agent_lib.server.server_env (4 partitions, 512 MiB rocksdb)"}
        procs: dict[str, AgentProcess] = {}
        need_durable = {"latency": list(DURABLE), "throughput": ["durable (as shipped)", "durable, all tunings"]}
        labels = sorted({lab for f in figures for lab in need_durable.get(f, [])}, key=list(DURABLE).index)
        if "growth" in figures and "durable, all tunings" not in labels:
            labels.append("durable, all tunings")
        for label in labels:
            extra = chat_services() if label == "durable, all tunings" and "growth" in figures else None
            _log(f"starting {label}")
            procs[label] = _durable_process(bench, label, extra).start(timeout=180)
            stack.callback(procs[label].stop)
        url, server_pid = bench.server.ingress_url, bench.server.pid

        if "latency" in figures:
            _log("figure 1: turn latency")
            variants = [Variant(PLAIN), Variant(PLAIN_TUNED, around=ledger_kept_open)]
            variants += [Variant(lab, DURABLE[lab][1], url, procs[lab].pid, server_pid) for lab in DURABLE]
            baselines = {lab: PLAIN_TUNED for lab in DURABLE if lab != "durable (as shipped)"}
            baselines[PLAIN_TUNED] = PLAIN
            baselines["durable (as shipped)"] = PLAIN
            results["latency"] = asyncio.run(
                measure_latency(
                    variants, turns=sizes["latency_turns"], warmup=sizes["latency_warmup"], baselines=baselines
                )
            )

        if "throughput" in figures:
            _log("figure 2: throughput")
            targets = {PLAIN: (None, None)}
            targets |= {lab: (DURABLE[lab][1], url) for lab in ("durable (as shipped)", "durable, all tunings")}
            results["throughput"] = asyncio.run(
                measure_throughput(
                    targets, sizes["levels"], max_turns=sizes["max_turns"], max_seconds=sizes["max_seconds"]
                )
            )

        if "growth" in figures:
            _log("figure 3: session growth")
            if chat_services():
                results["growth"] = measure_growth_figure(bench.ingress, bench.admin, sizes["checkpoints"])
            else:
                results["growth"] = {"skipped": "agent_lib.agents.chat does not exist yet"}

        if "recovery" in figures:
            _log("figure 4: recovery after SIGKILL")
            targets = ["bench.agents:recovery_service", "bench.agents:fast_recovery_service"]
            cold = AgentProcess(targets, admin=bench.admin, name="recovery-cold").start(timeout=180)
            stack.callback(cold.stop)
            warm = AgentProcess(
                ["bench.tuned:weather_service", *targets],
                admin=bench.admin,
                name="recovery-warm",
                env={"BENCH_RECOVERY_SUFFIX": "Warm", "BENCH_SERVICE": "WeatherAgentRecovery", "BENCH_TUNING": "warm"},
            ).start(timeout=180)
            stack.callback(warm.stop)
            results["recovery"] = measure_recovery(
                {"cold": cold, "warm": warm}, bench.ingress, bench.admin, sizes["kills"]
            )

        if "notebooks" in figures:
            from bench.notebooks import measure_notebooks

            _log("figure 5: notebooks under nbmake")
            agents_port = free_port()
            finished = AgentProcess(FINISHED, port=agents_port, admin=bench.admin, name="finished-agents")
            finished.start(timeout=180)
            stack.callback(finished.stop)
            env = {
                "RESTATE_INGRESS_URL": bench.server.ingress_url,
                "RESTATE_ADMIN_URL": bench.server.admin_url,
                "AGENTS_PORT": str(agents_port),
                "RESTATE_KIT_DATA": os.environ["RESTATE_KIT_DATA"],
                "AGENT_LEDGER": os.environ["AGENT_LEDGER"],
            }
            results["notebooks"] = measure_notebooks(env, bench.data)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["finished"] = time.time()
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run, and write the JSON, the markdown table and the plots."""
    from bench.report import write_report

    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench runs (seconds to minutes)")
    parser.add_argument("--notebooks", action="store_true", help="also time every notebook under nbmake (slow)")
    parser.add_argument(
        "--figures", default=None, help=f"comma list from {','.join(FIGURES)} (default: all but notebooks)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.json")
    parser.add_argument(
        "--doc", type=Path, default=None, help="markdown for the tables (default docs/PERFORMANCE.md; none if --quick)"
    )
    parser.add_argument("--img", type=Path, default=None, help="directory for the plots (default: docs/img)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --figures notebooks: re-measure figure 5 only, keep figures 1-4 of --out, and say so in the report",
    )
    args = parser.parse_args(argv)
    figures = args.figures.split(",") if args.figures else [f for f in FIGURES if f != "notebooks"]
    if args.notebooks and "notebooks" not in figures:
        figures.append("notebooks")
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figures {unknown}: choose from {', '.join(FIGURES)}")
    if args.merge and (figures != ["notebooks"] or not args.out.exists()):
        parser.error(f"--merge re-measures the notebooks alone (--figures notebooks) into an existing {args.out}")
    results = run(figures, "quick" if args.quick else "full")
    if args.merge:
        kept = json.loads(args.out.read_text())
        kept["notebooks"] = {**results["notebooks"], "measured_on": results["machine"]}
        results = kept
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    _log(f"wrote {args.out}")
    doc = args.doc or (None if args.quick else REPO_ROOT / "docs" / "PERFORMANCE.md")
    img = args.img or (args.out.parent / "img" if args.quick else REPO_ROOT / "docs" / "img")
    write_report(results, doc=doc, img=img)
    if doc:
        _log(f"wrote {doc}")
    _log(f"wrote plots in {img}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
