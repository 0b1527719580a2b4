"""Run the benchmark: `make bench`, or `python bench/run.py [--quick] [--notebooks] [--figures ...]`.

Starts a private Restate server on free ports in a temp dir (never 8080/9070), serves the
agents with AgentProcess, measures with the offline model, and writes
bench/results/latest.json, the table in docs/PERFORMANCE.md and plots in docs/img/.

It prints the load average at the start and warns when it exceeds the number of cores: the
figures are then not valid (other programs took the CPU), and the report says so.
`--wait-quiet 1800` waits up to 30 minutes for the load to drop first.
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
from bench.throughput import gc_tuned  # noqa: E402

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
PLAIN_GC = "plain ADK + tune_gc"
"""Plain ADK with the garbage collector tuned as the kit's agent processes tune theirs (serving.tune_gc)."""
SHIPPED = "durable (as shipped)"
TWO_WORKERS = "durable, 2 workers"
WORKERS = 2

SIZES = {
    "full": {
        "latency_turns": 100,
        "latency_warmup": 10,
        "levels": [10, 100, 1000],
        "max_turns": 1000,
        "max_seconds": 30.0,
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


def wait_quiet(max_load: float, patience: float, every: float = 30.0) -> list[float]:
    """Wait up to `patience` seconds for the 1-minute load average to drop to `max_load`; return the load."""
    deadline = time.monotonic() + patience
    load = list(os.getloadavg())
    while load[0] > max_load and time.monotonic() < deadline:
        _log(f"load average {load[0]:.1f} > {max_load:g}: waiting {every:.0f}s for a quieter machine")
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
        load = list(os.getloadavg())
    return load


def check_load(cores: int | None) -> dict[str, Any]:
    """Print the load average now, warn if it exceeds the core count, and return what the report says about it."""
    load = list(os.getloadavg())
    cores = cores or 1
    _log(f"load average at the start: {', '.join(f'{x:.2f}' for x in load)} on {cores} cores")
    if load[0] > cores:
        _log(
            f"WARNING: the load ({load[0]:.1f}) exceeds the {cores} cores: other programs take the CPU, so these "
            "figures are NOT valid (docs/PERFORMANCE.md refuses them). Run again on a quiet machine, "
            "or with --wait-quiet 1800."
        )
    return {"load_average": load, "load_exceeds_cores": load[0] > cores}


def run(figures: list[str], size: str) -> dict[str, Any]:
    """Run the chosen figures at the chosen size on a private server; return the results."""
    from bench.growth import measure_growth_figure
    from bench.latency import Variant, measure_latency
    from bench.recovery import measure_recovery
    from bench.throughput import Target, measure_throughput
    from bench.tuned import chat_services, ledger_kept_open

    sizes = SIZES[size]
    results: dict[str, Any] = {"machine": machine(), "size": size, "sizes": sizes, "started": time.time()}
    results["machine"].update(check_load(results["machine"]["cores"]))
    _log(f"bytecode: {results['machine']['bytecode']}")
    with private_server() as bench, contextlib.ExitStack() as stack:
        results["server"] = {"settings": "agent_lib.server.server_env (4 partitions, 512 MiB rocksdb)"}
        procs: dict[str, AgentProcess] = {}
        need_durable = {"latency": list(DURABLE), "throughput": [SHIPPED]}
        labels = sorted({lab for f in figures for lab in need_durable.get(f, [])}, key=list(DURABLE).index)
        if "growth" in figures and "durable, all tunings" not in labels:
            labels.append("durable, all tunings")
        for label in labels:
            extra = chat_services() if label == "durable, all tunings" and "growth" in figures else None
            _log(f"starting {label}")
            procs[label] = _durable_process(bench, label, extra).start(timeout=180)
            stack.callback(procs[label].stop)
        if "throughput" in figures:
            _log(f"starting {TWO_WORKERS}")
            env = {"WEATHER_SERVICE_NAME": "WeatherAgentWorkers"}
            two = AgentProcess(DURABLE[SHIPPED][0], admin=bench.admin, env=env, name="workers", workers=WORKERS)
            procs[TWO_WORKERS] = two.start(timeout=180)
            stack.callback(two.stop)
        url, server_pid = bench.server.ingress_url, bench.server.pid

        if "latency" in figures:
            _log("figure 1: turn latency")
            variants = [Variant(PLAIN), Variant(PLAIN_TUNED, around=ledger_kept_open)]
            variants.append(Variant(PLAIN_GC, around=gc_tuned))
            variants += [Variant(lab, DURABLE[lab][1], url, procs[lab].pid, server_pid) for lab in DURABLE]
            baselines = {lab: PLAIN_TUNED for lab in DURABLE if lab != "durable (as shipped)"}
            baselines[PLAIN_TUNED] = PLAIN
            baselines[PLAIN_GC] = PLAIN
            baselines["durable (as shipped)"] = PLAIN
            results["latency"] = asyncio.run(
                measure_latency(
                    variants, turns=sizes["latency_turns"], warmup=sizes["latency_warmup"], baselines=baselines
                )
            )

        if "throughput" in figures:
            _log("figure 2: throughput")
            one, two = procs[SHIPPED], procs[TWO_WORKERS]
            targets = {
                PLAIN: Target(),
                PLAIN_GC: Target(around=gc_tuned),
                SHIPPED: Target(DURABLE[SHIPPED][1], url, lambda: [p for p in [one.pid] if p], server_pid),
                TWO_WORKERS: Target(
                    "WeatherAgentWorkers", url, lambda: [p for p in [two.pid] if p] + two.worker_pids, server_pid
                ),
            }
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
    results["targets"] = target_ratios(results)
    return results


def _at(rows: list[dict[str, Any]], sessions: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["concurrency"] == sessions), None)


def target_ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the issue's three ratios, each next to its target, from whatever figures the results hold.

    Throughput ratios compare the largest level with the one below it (1000 and 100 sessions at full size).
    The ratios to plain ADK are given against plain ADK as shipped (the issue's) and, where it was measured,
    against plain ADK with the same garbage collector tuning as the agent processes.
    """
    out: list[dict[str, Any]] = []
    tp = results.get("throughput", {})
    latency = results.get("latency", {})
    levels = sorted({r["concurrency"] for rows in tp.values() for r in rows})
    plains = [p for p in (PLAIN, PLAIN_GC) if p in tp or p in latency]
    if len(levels) >= 2:
        low, high = levels[-2], levels[-1]
        for label in (SHIPPED, TWO_WORKERS):
            a, b = _at(tp.get(label, []), low), _at(tp.get(label, []), high)
            if a and b and a["turns_per_s"]:
                name = f"{label}: turns/s at {high} sessions ÷ at {low}"
                out.append(_target(name, b["turns_per_s"] / a["turns_per_s"], ">=", 0.9, b, a, "turns_per_s"))
        for plain_label in plains:
            plain = _at(tp.get(plain_label, []), low)
            for label in (SHIPPED, TWO_WORKERS):
                a = _at(tp.get(label, []), low)
                if a and plain and plain["turns_per_s"]:
                    name = f"{label} ÷ {plain_label}, turns/s at {low} sessions"
                    ratio = a["turns_per_s"] / plain["turns_per_s"]
                    out.append(_target(name, ratio, ">=", 0.6, a, plain, "turns_per_s"))
    for plain_label in plains:
        if SHIPPED in latency and plain_label in latency:
            d, p = latency[SHIPPED]["cpu_ms_per_turn"], latency[plain_label]["cpu_ms_per_turn"]
            name = f"CPU per turn, {SHIPPED} ÷ {plain_label} (one turn at a time)"
            out.append(_target(name, d["total"] / p["total"], "<=", 2.5, d, p, "total"))
    if len(levels) >= 2:
        for label in (SHIPPED, TWO_WORKERS):
            d, p = _at(tp.get(label, []), levels[-2]), _at(tp.get(PLAIN, []), levels[-2])
            if d and p and d.get("cpu_ms_per_turn") and p.get("cpu_ms_per_turn", {}).get("total"):
                ratio = d["cpu_ms_per_turn"]["total"] / p["cpu_ms_per_turn"]["total"]
                name = f"CPU per turn, {label} ÷ {PLAIN} ({levels[-2]} sessions at once)"
                out.append(_target(name, ratio, "<=", 2.5, d["cpu_ms_per_turn"], p["cpu_ms_per_turn"], "total"))
    return out


def _target(
    name: str, value: float, op: str, goal: float, mine: dict[str, Any], base: dict[str, Any], key: str
) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    return {"name": name, "value": value, "op": op, "target": goal, "met": met, "of": [mine[key], base[key]]}


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
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the 1-minute load average to drop to --max-load",
    )
    parser.add_argument("--max-load", type=float, default=None, help="for --wait-quiet (default: the core count)")
    args = parser.parse_args(argv)
    figures = args.figures.split(",") if args.figures else [f for f in FIGURES if f != "notebooks"]
    if args.notebooks and "notebooks" not in figures:
        figures.append("notebooks")
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figures {unknown}: choose from {', '.join(FIGURES)}")
    if args.merge and (figures != ["notebooks"] or not args.out.exists()):
        parser.error(f"--merge re-measures the notebooks alone (--figures notebooks) into an existing {args.out}")
    if args.wait_quiet:
        wait_quiet(args.max_load or float(os.cpu_count() or 1), args.wait_quiet)
    results = run(figures, "quick" if args.quick else "full")
    if args.merge:
        kept = json.loads(args.out.read_text())
        kept["notebooks"] = {**results["notebooks"], "measured_on": results["machine"]}
        results = kept
    elif "notebooks" not in results and not args.quick and args.out.exists():
        earlier = json.loads(args.out.read_text())
        if "notebooks" in earlier:  # figure 5 is slow: keep the last one, under the machine line it was measured on
            results["notebooks"] = {"measured_on": earlier["machine"], **earlier["notebooks"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    _log(f"wrote {args.out}")
    doc = args.doc or (None if args.quick else REPO_ROOT / "docs" / "PERFORMANCE.md")
    img = args.img or (args.out.parent / "img" if args.quick else REPO_ROOT / "docs" / "img")
    write_report(results, doc=doc, img=img)
    if doc:
        _log(f"wrote {doc}")
    _log(f"wrote plots in {img}")
    for t in results.get("targets", []):
        verdict = "met" if t["met"] else "NOT met"
        _log(f"{t['name']}: {t['value']:.2f} (target {t['op']} {t['target']}): {verdict}")
    load = results["machine"]["load_average"][0]
    if results["machine"].get("load_exceeds_cores"):
        _log(f"WARNING: the load at the start ({load:.1f}) exceeded the core count: these figures are NOT valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
